// The tandem model's constraints, checked on real documents with both validators: the libyang
// WebAssembly binding the agent uses, and native yanglint as a cross-check. The seeds' own examples
// validate; each invalid fixture breaks exactly one rule and must fail with the expected error.
import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BindingValidator, YanglintValidator, fixturesDir, moduleFiles, repoRoot, yanglintAvailable,
  type DocumentKind, type DocumentValidator,
} from './yang-validators.js';
import { loadYin, mustTags } from './yin-model.js';

interface Violation {
  file: string;
  rule: string;
  kind?: DocumentKind;
  /** The error message starts with this (the binding appends the line number). */
  message: string;
  /** error-app-tag: the must's own, or libyang's built-in one (only the binding reports app-tags). */
  appTag?: string;
  /** True when the app-tag comes from a `must` of the model (yanglint runs check it against the model). */
  fromMust: boolean;
  path: string;
  type?: 'syntax' | 'validation';
}

const VRF_MAIN = "/tandem-vrf:vrf[name='main']";

const VIOLATIONS: Violation[] = [
  {
    file: 'invalid-connection-mirror-on-tcp-proxy.xml', rule: 'connection-mirror only on tcp-fast-path (tcp-proxy)', fromMust: true,
    message: 'connection-mirror is supported only on a tcp-fast-path network profile, not on tcp-proxy or udp-fast-path',
    appTag: 'connection-mirror-requires-tcp-fast-path',
    path: "/tandem-network-profile:network-profile[name='System-TCP-Proxy']/tcp-fast-path/connection-mirror",
  },
  {
    file: 'invalid-connection-mirror-on-udp-fast-path.xml', rule: 'connection-mirror only on tcp-fast-path (udp-fast-path)', fromMust: true,
    message: 'connection-mirror is supported only on a tcp-fast-path network profile, not on tcp-proxy or udp-fast-path',
    appTag: 'connection-mirror-requires-tcp-fast-path',
    path: "/tandem-network-profile:network-profile[name='System-UDP-Fast-Path']/tcp-fast-path/connection-mirror",
  },
  {
    file: 'invalid-persistence-client-ip-with-mirror.xml', rule: 'no client-ip persistence with a mirroring profile', fromMust: true,
    message: 'client-ip persistence is not supported with a network profile that has connection-mirror true',
    appTag: 'persistence-conflicts-with-connection-mirror',
    path: `${VRF_MAIN}/tandem-virtual-service:virtual-service[name='vs_conn_mirror']/persistence`,
  },
  {
    file: 'invalid-listen-ha-group-unknown.xml', rule: 'listen-ha-group names an existing group', fromMust: true,
    message: 'listen-ha-group must name an existing HA group (/ha/group)',
    appTag: 'ha-group-not-found',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/listen-ha-group`,
  },
  {
    file: 'invalid-listen-ha-group-absent.xml', rule: 'listen-ha-group is mandatory', fromMust: false,
    message: 'Mandatory node "listen-ha-group" instance does not exist.',
    path: '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/listen-ha-group',
  },
  {
    file: 'invalid-shared-secret-missing.xml', rule: 'shared-secret is mandatory while ha-fp-conntrack is enabled', fromMust: true,
    message: 'shared-secret is mandatory when ha-fp-conntrack is enabled (generate one with: openssl rand -base64 32)',
    appTag: 'shared-secret-missing',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack`,
  },
  {
    file: 'invalid-shared-secret-repeated.xml', rule: 'shared-secret is not one character repeated (16 x a)', fromMust: true,
    message: 'shared-secret is one character repeated: use a random secret (generate one with: openssl rand -base64 32)',
    appTag: 'shared-secret-too-weak',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret`,
  },
  {
    file: 'invalid-shared-secret-spaces.xml', rule: 'shared-secret is not one character repeated (16 spaces)', fromMust: true,
    message: 'shared-secret is one character repeated: use a random secret (generate one with: openssl rand -base64 32)',
    appTag: 'shared-secret-too-weak',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret`,
  },
  {
    file: 'invalid-shared-secret-short.xml', rule: 'shared-secret has at least 16 characters', fromMust: false,
    message: 'shared-secret must have 16 to 256 characters (generate one with: openssl rand -base64 32)',
    appTag: 'shared-secret-too-weak',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret`,
  },
  {
    file: 'invalid-ha-group-static-and-vrrp.xml', rule: 'one controller per group (static state and VRRP)', fromMust: true,
    message: 'HA group already has a static state; a group has at most one controller (static state or one VRRP instance)',
    appTag: 'ha-group-controller-conflict',
    path: `${VRF_MAIN}/interface/vrrp[name='vrrp1']/ha-group`,
  },
  {
    file: 'invalid-ha-group-two-vrrp.xml', rule: 'one controller per group (two VRRP instances in two VRFs)', fromMust: true,
    message: 'HA group is already controlled by another VRRP instance; a group has at most one controller',
    appTag: 'ha-group-controller-conflict',
    path: `${VRF_MAIN}/interface/vrrp[name='vrrp1']/ha-group`,
  },
  {
    file: 'invalid-vrrp-ha-group-unknown.xml', rule: 'a VRRP instance drives an existing group', fromMust: true,
    message: 'ha-group must name an existing HA group (/ha/group)',
    appTag: 'ha-group-not-found',
    path: `${VRF_MAIN}/interface/vrrp[name='vrrp1']/ha-group`,
  },
  {
    file: 'invalid-vrrp-duplicate-vrid.xml', rule: 'unique vrid per link', fromMust: false,
    message: 'Unique data leaf(s) "link-interface vrid" not satisfied',
    appTag: 'data-not-unique',
    path: `${VRF_MAIN}/interface/vrrp[name='vrrp2']`,
  },
  {
    file: 'invalid-peer-address-family-mismatch.xml', rule: 'peer source and address of one family', fromMust: true,
    message: 'peer source and address must be of the same address family (both IPv4 or both IPv6)',
    appTag: 'peer-address-family-mismatch',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='peer1']/address`,
  },
  {
    file: 'invalid-firewall-port-range-inverted.xml', rule: 'firewall port range start <= end', fromMust: true,
    message: 'port range end must not be lower than its start',
    appTag: 'port-range-inverted',
    path: `${VRF_MAIN}/tandem-firewall:firewall/rule[name='r1']/destination-port/end`,
  },
  {
    file: 'invalid-firewall-port-without-tcp-udp.xml', rule: 'firewall port match only with tcp or udp', fromMust: true,
    message: 'a port match needs protocol tcp or udp',
    appTag: 'port-match-requires-tcp-or-udp',
    path: `${VRF_MAIN}/tandem-firewall:firewall/rule[name='r1']/destination-port`,
  },
  {
    file: 'invalid-firewall-address-family-mismatch.xml', rule: 'firewall prefixes of one family', fromMust: true,
    message: 'source-prefix and destination-prefix of a rule must be of the same address family',
    appTag: 'rule-address-family-mismatch',
    path: `${VRF_MAIN}/tandem-firewall:firewall/rule[name='r1']/destination-prefix`,
  },
  {
    file: 'invalid-cg-nat-port-range-inverted.xml', rule: 'CG-NAT port range start <= end', fromMust: true,
    message: 'port-range end must not be lower than its start',
    appTag: 'port-range-inverted',
    path: `${VRF_MAIN}/tandem-cg-nat:cg-nat/pool[name='public1']/port-range/end`,
  },
  {
    file: 'invalid-cg-nat-port-block-too-large.xml', rule: 'CG-NAT port block fits in the port range', fromMust: true,
    message: "port-block-size is larger than the pool's port range",
    appTag: 'port-block-too-large',
    path: `${VRF_MAIN}/tandem-cg-nat:cg-nat/pool[name='public1']/port-block-size`,
  },
  {
    file: 'invalid-cg-nat-rule-pool-unknown.xml', rule: 'CG-NAT rule names an existing pool', fromMust: false,
    message: 'Invalid leafref value "public9" - no target instance "../../pool/name" with the same value.',
    appTag: 'instance-required',
    path: `${VRF_MAIN}/tandem-cg-nat:cg-nat/rule[name='subscribers']/pool`,
  },
  {
    file: 'invalid-virtual-service-profile-unknown.xml', rule: 'virtual service names an existing profile', fromMust: true,
    message: 'network-profile must name an existing network profile',
    appTag: 'network-profile-not-found',
    path: `${VRF_MAIN}/tandem-virtual-service:virtual-service[name='vs1']/network-profile`,
  },
  {
    file: 'invalid-virtual-service-profile-protocol-mismatch.xml', rule: 'virtual service protocol matches its profile', fromMust: true,
    message: 'a udp virtual service needs a udp-fast-path profile, a tcp one a tcp-fast-path or tcp-proxy profile',
    appTag: 'network-profile-protocol-mismatch',
    path: `${VRF_MAIN}/tandem-virtual-service:virtual-service[name='dns']/network-profile`,
  },
  {
    file: 'invalid-virtual-service-member-family-mismatch.xml', rule: 'pool member of the vip family', fromMust: true,
    message: "a pool member must be of the same address family as the virtual service's vip",
    appTag: 'pool-member-address-family-mismatch',
    path: `${VRF_MAIN}/tandem-virtual-service:virtual-service[name='vs1']/pool-member[address='2001:db8::11'][port='8080']/address`,
  },
  {
    file: 'invalid-virtual-service-duplicate-vip.xml', rule: 'unique vip, port and protocol', fromMust: false,
    message: 'Unique data leaf(s) "vip port protocol" not satisfied',
    appTag: 'data-not-unique',
    path: `${VRF_MAIN}/tandem-virtual-service:virtual-service[name='vs2']`,
  },
  {
    file: 'invalid-nb-event-threads-out-of-range.xml', rule: 'nb-event-threads in 1..32', fromMust: false,
    message: 'Unsatisfied range - value "33" is out of the allowed range.',
    path: '/tandem-system:system/fast-path/limits/cg-nat/nb-event-threads',
  },
  {
    file: 'invalid-rpc-synchronization-without-vrf.xml', rule: 'the synchronization RPC needs a vrf', kind: 'rpc', fromMust: false,
    message: 'Mandatory node "vrf" instance does not exist.',
    path: '/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization/vrf',
  },
  {
    file: 'invalid-state-in-config.xml', rule: 'no state data in configuration', fromMust: false,
    message: 'Unexpected data state node "tcpstat" found.',
    path: `${VRF_MAIN}/tandem-virtual-service:virtual-service[name='vs1']/tcpstat`,
  },
  {
    file: 'invalid-state-client-name.xml', rule: 'sync clients are named npf_eventN', kind: 'data', fromMust: false,
    message: 'Unsatisfied pattern - "worker0" does not conform to "npf_event[0-9]+".',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='peer1']/client/name`,
  },
  {
    file: 'invalid-bad-xml.xml', rule: 'well-formed XML', fromMust: false, type: 'syntax',
    message: 'Opening ("vrf") and closing ("vfr") elements tag mismatch.',
    path: '/tandem-vrf:vrf/name',
  },
  {
    file: 'invalid-unknown-element.xml', rule: 'no unknown element', fromMust: false,
    message: 'Node "colour" not found as a child of "peer" node.',
    path: `${VRF_MAIN}/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='peer1']`,
  },
];

const SYNC_RPC = '/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization';

const VALID: { file: string; kind: DocumentKind; what: string; rpcPath?: string }[] = [
  { file: 'valid-seed-ha1.xml', kind: 'config', what: "ha1 of the seed, with the System-TCP-Fast-Path mirroring profile" },
  { file: 'valid-seed-ha2-vrrp.xml', kind: 'config', what: 'ha2 of the seed driven by VRRP, an IPv6 peer, firewall and CG-NAT' },
  { file: 'valid-grace-period-above-established.xml', kind: 'config', what: 'undefined-grace-period above the established timeout (accepted)' },
  { file: 'rpc-synchronization-main.xml', kind: 'rpc', what: 'the seed\'s "cmd ha-fp-conntrack synchronization vrf main"' },
  { file: 'reply-synchronization-main.xml', kind: 'reply', rpcPath: SYNC_RPC, what: 'the synchronization RPC\'s reply' },
  { file: 'state-seed-ha1.xml', kind: 'data', what: 'state data as the seed shows it (peer clients, local-node, tcpstat, HA group)' },
  { file: 'notification-sync-connection-down.xml', kind: 'notification', what: 'a sync-connection-down notification' },
  { file: 'notification-group-state-change.xml', kind: 'notification', what: 'a group-state-change notification' },
];

const fixture = (f: string): string => path.join(fixturesDir, f);

/** A member of RFC 7951 JSON by names; list entries are chosen by their 'name' key. */
function member(doc: unknown, ...steps: string[]): unknown {
  let at: unknown = doc;
  for (const step of steps) {
    const [name, key] = step.split('=');
    at = (at as Record<string, unknown> | undefined)?.[name];
    if (key !== undefined) at = (at as { name?: string }[] | undefined)?.find((e) => e.name === key);
  }
  return at;
}

const CONNTRACK = ['tandem-vrf:vrf=main', 'tandem-conntrack:network-stack', 'fast-path', 'conntrack'];

/** [document, path, expected value]: the seeds' and Linux's defaults, and values the seeds set. */
const DEFAULTS: [string, string[], unknown][] = [
  ['valid-grace-period-above-established.xml', ['tandem-system:system', 'fast-path', 'engine'], 'soft'],
  ['valid-grace-period-above-established.xml', ['tandem-system:system', 'fast-path', 'limits', 'cg-nat', 'nb-event-threads'], 2],
  ['valid-grace-period-above-established.xml', ['tandem-system:system', 'fast-path', 'limits', 'conntrack', 'max'], 1048576],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'timeouts', 'tcp', 'undefined'], 10],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'timeouts', 'tcp', 'syn-sent'], 120],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'timeouts', 'tcp', 'established'], 600],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'timeouts', 'udp'], 120],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'timeouts', 'icmp'], 30],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'ha-delays', 'tcp', 'synchronization'], 0],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'ha-delays', 'tcp', 'undefined-grace-period'], 3600],
  ['valid-grace-period-above-established.xml', [...CONNTRACK, 'ha-delays', 'udp', 'undefined-grace-period'], undefined],
  ['valid-grace-period-above-established.xml', ['tandem-vrf:vrf=main', 'tandem-firewall:firewall', 'drop-invalid'], true],
  ['valid-seed-ha1.xml', [...CONNTRACK, 'timeouts', 'tcp', 'undefined'], 20],
  ['valid-seed-ha1.xml', [...CONNTRACK, 'ha-delays', 'tcp', 'synchronization'], 1],
  ['valid-seed-ha1.xml', [...CONNTRACK, 'ha-delays', 'tcp', 'undefined-grace-period'], 10],
  ['valid-seed-ha1.xml', ['tandem-vrf:vrf=main', 'tandem-ha-fp-conntrack:ha-fp-conntrack', 'enabled'], true],
  ['valid-seed-ha1.xml', ['tandem-vrf:vrf=main', 'tandem-ha-fp-conntrack:ha-fp-conntrack', 'peer=peer1', 'port'], 3781],
  ['valid-seed-ha1.xml', ['tandem-vrf:vrf=main', 'tandem-ha-fp-conntrack:ha-fp-conntrack', 'listen-ha-group'], 'ha-group1'],
  ['valid-seed-ha1.xml', ['tandem-network-profile:network-profile=System-TCP-Fast-Path', 'tcp-fast-path', 'session-idle-timeout'], 300],
  ['valid-seed-ha1.xml', ['tandem-network-profile:network-profile=System-TCP-Fast-Path', 'tcp-fast-path', 'connection-mirror'], true],
  ['valid-seed-ha1.xml', ['tandem-vrf:vrf=main', 'tandem-virtual-service:virtual-service=vs_conn_mirror', 'protocol'], 'tcp'],
  ['valid-seed-ha2-vrrp.xml', ['tandem-vrf:vrf=main', 'interface', 'vrrp=vrrp1', 'advert-interval'], 5], // default 0.05 s since issue 11 item 5 (0.1 s before: its master-down interval alone exceeds 0.3 s)
  ['valid-seed-ha2-vrrp.xml', ['tandem-vrf:vrf=main', 'interface', 'vrrp=vrrp1', 'preempt'], true],
  ['valid-seed-ha2-vrrp.xml', ['tandem-vrf:vrf=main', 'tandem-cg-nat:cg-nat', 'pool=public1', 'port-block-size'], 256],
];

describe('tandem YANG constraints: fixtures', () => {
  it('has one expectation per invalid fixture and one per valid fixture', () => {
    const files = readdirSync(fixturesDir).filter((f) => f.endsWith('.xml')).sort();
    expect(files.filter((f) => f.startsWith('invalid-'))).to.deep.equal(VIOLATIONS.map((v) => v.file).sort());
    expect(files.filter((f) => !f.startsWith('invalid-'))).to.deep.equal(VALID.map((v) => v.file).sort());
  });
});

/** The <config> content of the first edit-config example of docs/yang.md. */
function docsEditConfigExample(): string {
  const doc = readFileSync(path.join(repoRoot, 'docs/yang.md'), 'utf8');
  const block = /```xml\n([\s\S]*?<edit-config>[\s\S]*?)```/.exec(doc);
  const config = block && /<config>([\s\S]*)<\/config>/.exec(block[1]);
  if (!config) throw new Error('docs/yang.md has no edit-config example with a <config> element');
  return config[1];
}

function constraintSuite(title: string, open: () => Promise<DocumentValidator | string>): void {
  describe(`tandem YANG constraints with ${title}`, function () {
    let validator: DocumentValidator | undefined;
    let tagOfMessage: Map<string, string | undefined> | undefined;
    let tmp: string | undefined;

    after(() => {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('accepts the edit-config example of docs/yang.md', () => {
      tmp = mkdtempSync(path.join(os.tmpdir(), 'tandem-docs-'));
      const file = path.join(tmp, 'docs-example.xml');
      writeFileSync(file, docsEditConfigExample());
      const outcome = (validator as DocumentValidator).validate(file, 'config');
      expect(outcome.errors).to.deep.equal([]);
      expect(outcome.valid).to.equal(true);
    });

    before(async function () {
      const v = await open();
      if (typeof v === 'string') {
        console.log(`      skipped: ${v}`);
        this.skip();
      }
      validator = v as DocumentValidator;
      if (validator instanceof YanglintValidator) tagOfMessage = mustTags(moduleFiles().map(loadYin));
    });
    after(() => validator?.close());

    for (const v of VALID) {
      it(`accepts ${v.what}`, () => {
        const outcome = (validator as DocumentValidator).validate(fixture(v.file), v.kind, v.rpcPath);
        expect(outcome.errors).to.deep.equal([]);
        expect(outcome.valid).to.equal(true);
      });
    }

    it('fills in the seeds\' defaults and keeps the values the seeds set', () => {
      const docs = new Map<string, Record<string, unknown>>();
      const wrong: string[] = [];
      for (const [file, steps, expected] of DEFAULTS) {
        if (!docs.has(file)) docs.set(file, (validator as DocumentValidator).configWithDefaults(fixture(file)));
        const actual = member(docs.get(file), ...steps);
        if (actual !== expected) wrong.push(`${file} ${steps.join('/')}: ${JSON.stringify(actual)} instead of ${JSON.stringify(expected)}`);
      }
      expect(wrong).to.deep.equal([]);
    });

    for (const v of VIOLATIONS) {
      it(`rejects a document breaking: ${v.rule}`, () => {
        const outcome = (validator as DocumentValidator).validate(fixture(v.file), v.kind ?? 'config');
        expect(outcome.valid, v.file).to.equal(false);
        const first = outcome.errors[0];
        expect(first, `${v.file}: no error reported`).to.not.equal(undefined);
        expect(first.message.startsWith(v.message), `message '${first.message}'`).to.equal(true);
        expect(first.path).to.equal(v.path);
        if (validator instanceof BindingValidator) {
          expect(first.appTag).to.equal(v.appTag);
          expect(first.type).to.equal(v.type ?? 'validation');
        } else if (v.fromMust) {
          // yanglint does not print app-tags: the model's must with this message carries the expected one.
          expect(tagOfMessage?.get(v.message), 'app-tag of the must with this error-message').to.equal(v.appTag);
        }
      });
    }
  });
}

constraintSuite('the libyang WebAssembly binding', () => BindingValidator.load());
constraintSuite('native yanglint', async () => (yanglintAvailable()
  ? new YanglintValidator()
  : 'yanglint is not installed (apt-get install libyang-tools; CI installs it)'));
