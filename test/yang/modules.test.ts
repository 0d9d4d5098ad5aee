// The tandem YANG modules themselves: yanglint accepts them with no warning (yang/check.sh), the schema
// tree document is current, every path other parts code against exists, and the modelling rules hold
// (descriptions, ranges, units, must with error-message and error-app-tag, no circular import).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { moduleFiles, repoRoot, yanglintAvailable, modulesDir, ietfDir, yanglintSearchArgs } from './yang-validators.js';
import { child, loadYin, locate, walk, type YinElement } from './yin-model.js';

const checkScript = path.join(repoRoot, 'yang/check.sh');
const REVISION = '2026-11-26';
const EXPECTED_MODULES = [
  'tandem-types', 'tandem-system', 'tandem-ha', 'tandem-network-profile', 'tandem-vrf', 'tandem-firewall',
  'tandem-cg-nat', 'tandem-virtual-service', 'tandem-conntrack', 'tandem-ha-fp-conntrack', 'tandem-traffic', 'tandem-fast-path-counters',
];

/** Schema paths the other parts of tandem code against (see the lead's brief); each must exist. */
const REQUIRED_SCHEMA_PATHS = [
  '/tandem-system:system/fast-path/engine',
  '/tandem-system:system/fast-path/limits/cg-nat/nb-event-threads',
  '/tandem-system:system/fast-path/limits/conntrack/max',
  '/tandem-ha:ha/group/state',
  '/tandem-ha:ha/group/current-state',
  '/tandem-ha:ha/group/controller',
  '/tandem-ha:ha/group/transitions',
  '/tandem-ha:ha/group/last-change',
  '/tandem-network-profile:network-profile/type',
  '/tandem-network-profile:network-profile/tcp-fast-path/session-idle-timeout',
  '/tandem-network-profile:network-profile/tcp-fast-path/enable-syn-protection',
  '/tandem-network-profile:network-profile/tcp-fast-path/connection-mirror',
  '/tandem-vrf:vrf/vrrp/enabled',
  '/tandem-vrf:vrf/vrrp/router-id',
  '/tandem-vrf:vrf/interface/vrrp/link-interface',
  '/tandem-vrf:vrf/interface/vrrp/vrid',
  '/tandem-vrf:vrf/interface/vrrp/priority',
  '/tandem-vrf:vrf/interface/vrrp/virtual-address',
  '/tandem-vrf:vrf/interface/vrrp/advert-interval',
  '/tandem-vrf:vrf/interface/vrrp/preempt',
  '/tandem-vrf:vrf/interface/vrrp/ha-group',
  '/tandem-vrf:vrf/tandem-firewall:firewall/rule/action',
  '/tandem-vrf:vrf/tandem-cg-nat:cg-nat/pool/port-block-size',
  '/tandem-vrf:vrf/tandem-virtual-service:virtual-service/network-profile',
  '/tandem-vrf:vrf/tandem-virtual-service:virtual-service/persistence',
  '/tandem-vrf:vrf/tandem-virtual-service:virtual-service/tcpstat/mirror-conn-list-on-active',
  '/tandem-vrf:vrf/tandem-virtual-service:virtual-service/tcpstat/mirrored-connections-on-standby',
  '/tandem-vrf:vrf/tandem-virtual-service:virtual-service/tcpstat/connections',
  ...['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close', 'undefined']
    .map((s) => `/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/timeouts/tcp/${s}`),
  '/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/timeouts/udp',
  '/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/timeouts/icmp',
  ...['tcp', 'udp', 'icmp'].flatMap((p) => ['synchronization', 'undefined-grace-period', 'undefined-grace-period-effective']
    .map((l) => `/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/ha-delays/${p}/${l}`)),
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/enabled',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/source',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/address',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/port',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/client/statistics/transmit',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/client/statistics/transmit-error',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/client/statistics/build-error',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/peer/client/connection-status',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/listen-ha-group',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/local-node/statistics/receive',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/local-node/statistics/receive-error',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/conntracks/synced',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/conntracks/pending',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/last-full-resync/time',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/last-full-resync/duration',
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/last-full-resync/count',
];

const DATA_NODES = new Set(['container', 'leaf', 'leaf-list', 'list', 'choice', 'case', 'rpc', 'action', 'notification',
  'augment', 'grouping', 'typedef', 'enum', 'must', 'anydata', 'anyxml', 'identity', 'feature', 'module']);
const INTEGER_TYPES = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'decimal64']);
/** Imported numeric typedefs a tandem leaf may use, provided it restricts them with its own range. */
const IMPORTED_NUMERIC = new Set(['inet:port-number', 'inet:dscp', 'inet:ipv6-flow-label']);
/** A leaf named like this holds a time or a size, so it needs units. */
const TIME_OR_SIZE_NAME = /timeout|interval|period|delay|duration|synchronization|size|^max$|threads|syn-sent|syn-recv|established|fin-wait|close-wait|last-ack|time-wait|^close$|^undefined$|^udp$|^icmp$/;

describe('tandem YANG modules', function () {
  const skipReason = 'yanglint is not installed (apt-get install libyang-tools; CI installs it)';
  let yins: Map<string, YinElement>;

  before(function () {
    if (!yanglintAvailable()) {
      console.log(`      skipped: ${skipReason}`);
      this.skip();
    }
    yins = new Map(moduleFiles().map((f) => {
      const yin = loadYin(f);
      return [yin.attrs.name, yin];
    }));
  });

  it('are exactly the ten tandem modules, each in <module>@<revision>.yang with the right namespace', () => {
    expect([...yins.keys()].sort()).to.deep.equal([...EXPECTED_MODULES].sort());
    for (const [name, yin] of yins) {
      expect(child(yin, 'namespace')?.attrs.uri, name).to.equal(`urn:tandem:yang:${name}`);
      expect(child(yin, 'yang-version')?.attrs.value, name).to.equal('1.1');
      const revisions = yin.children.filter((c) => c.name === 'revision').map((c) => c.attrs.date);
      expect(revisions, name).to.include(REVISION);
      expect(moduleFiles().map((f) => path.basename(f))).to.include(`${name}@${REVISION}.yang`);
    }
  });

  it('pass yang/check.sh (yanglint, each module alone and all together, no warning) and yang/MODEL.md is current', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-yang-'));
    try {
      const tree = path.join(dir, 'MODEL.md');
      const r = spawnSync('bash', [checkScript, '--tree', tree], { encoding: 'utf8', timeout: 120_000 });
      expect(r.stderr, 'check.sh stderr').to.equal('');
      expect(r.status, r.stdout).to.equal(0);
      for (const name of EXPECTED_MODULES) expect(r.stdout).to.include(`ok   ${name}@${REVISION} (alone)`);
      expect(r.stdout).to.include(`ok   all ${EXPECTED_MODULES.length} modules together`);
      expect(readFileSync(tree, 'utf8'), 'yang/MODEL.md is stale: run yang/check.sh')
        .to.equal(readFileSync(path.join(repoRoot, 'yang/MODEL.md'), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('check.sh fails on a module that yanglint only warns about', () => {
    // A copy of the script and modules plus one module whose must names a node that does not exist:
    // libyang accepts it with a warning, which check.sh must turn into a failure.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-yang-warn-'));
    try {
      mkdirSync(path.join(dir, 'modules'));
      cpSync(checkScript, path.join(dir, 'check.sh'));
      cpSync(modulesDir, path.join(dir, 'modules'), { recursive: true });
      cpSync(ietfDir, path.join(dir, 'ietf'), { recursive: true });
      writeFileSync(path.join(dir, 'modules', `tandem-zz-warning@${REVISION}.yang`), `module tandem-zz-warning {
  yang-version 1.1; namespace "urn:tandem:yang:tandem-zz-warning"; prefix zz;
  revision ${REVISION} { description "test"; }
  leaf a { type string; must "../no-such-node" ; description "test"; }
}
`);
      const r = spawnSync('bash', [path.join(dir, 'check.sh'), '--no-tree'], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/FAIL tandem-zz-warning@2026-11-26 \(alone\)/);
      expect(r.stderr).to.match(/no-such-node/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('have every path the other parts of tandem code against', () => {
    const missing: string[] = [];
    for (const p of REQUIRED_SCHEMA_PATHS) {
      // '-f info' on a single node (yanglint 2.1.30's tree printer crashes on nodes under an augment).
      const r = spawnSync('yanglint', [...yanglintSearchArgs, '-f', 'info', '-q', '-P', p, ...moduleFiles()], { encoding: 'utf8', timeout: 30_000 });
      const name = p.split('/').pop() as string;
      if (r.status !== 0 || r.stderr !== '' || !new RegExp(`^leaf(-list)? ${name} {`).test(r.stdout)) missing.push(p);
    }
    expect(missing).to.deep.equal([]);
  });

  it('describe every node', () => {
    const undescribed: string[] = [];
    for (const yin of yins.values()) {
      for (const [el, ancestors] of walk(yin)) {
        if (DATA_NODES.has(el.name) && !child(el, 'description')) undescribed.push(locate(el, ancestors));
      }
    }
    expect(undescribed).to.deep.equal([]);
  });

  it('give every must an error-message and an error-app-tag', () => {
    const bare: string[] = [];
    for (const yin of yins.values()) {
      for (const [el, ancestors] of walk(yin)) {
        if (el.name === 'must' && (!child(el, 'error-message') || !child(el, 'error-app-tag'))) bare.push(locate(el, ancestors));
      }
    }
    expect(bare).to.deep.equal([]);
  });

  it('give every numeric leaf a range and every time or size leaf units', () => {
    const typedefs = new Map<string, YinElement>(); // 'module:typedef' -> typedef
    for (const [name, yin] of yins) {
      for (const [el] of walk(yin)) if (el.name === 'typedef') typedefs.set(`${name}:${el.attrs.name}`, el);
    }
    const prefixes = (yin: YinElement): Map<string, string> => new Map([
      [child(yin, 'prefix')?.attrs.value ?? '', yin.attrs.name],
      ...yin.children.filter((c) => c.name === 'import').map((c) => [child(c, 'prefix')?.attrs.value ?? '', c.attrs.module] as [string, string]),
    ]);
    // Follows typedefs within tandem modules: is it numeric, does it (or a typedef on the way) have a range and units?
    const resolve = (type: YinElement, yin: YinElement, depth = 0): { numeric: boolean; range: boolean; units: boolean } => {
      const name = type.attrs.name;
      const own = { range: child(type, 'range') !== undefined };
      if (INTEGER_TYPES.has(name)) return { numeric: true, range: own.range, units: false };
      if (IMPORTED_NUMERIC.has(name)) return { numeric: true, range: own.range, units: false };
      const [pfx, local] = name.includes(':') ? name.split(':') : [child(yin, 'prefix')?.attrs.value ?? '', name];
      const module = prefixes(yin).get(pfx);
      const td = module ? typedefs.get(`${module}:${local}`) : undefined;
      if (!td || depth > 8) return { numeric: false, range: false, units: false };
      const inner = resolve(child(td, 'type') as YinElement, yins.get(module as string) as YinElement, depth + 1);
      return { numeric: inner.numeric, range: own.range || inner.range, units: child(td, 'units') !== undefined || inner.units };
    };
    const noRange: string[] = [];
    const noUnits: string[] = [];
    for (const yin of yins.values()) {
      for (const [el, ancestors] of walk(yin)) {
        if (el.name !== 'leaf' && el.name !== 'leaf-list' && el.name !== 'typedef') continue;
        const type = child(el, 'type');
        if (!type) continue;
        const r = resolve(type, yin);
        if (r.numeric && !r.range) noRange.push(locate(el, ancestors));
        if (el.name !== 'typedef' && TIME_OR_SIZE_NAME.test(el.attrs.name) && r.numeric && !r.units && !child(el, 'units')) {
          noUnits.push(locate(el, ancestors));
        }
      }
    }
    expect(noRange, 'numeric leaves without a range').to.deep.equal([]);
    expect(noUnits, 'time/size leaves without units').to.deep.equal([]);
  });

  it('hide the sync shared-secret from users NACM does not explicitly allow', () => {
    const hfc = yins.get('tandem-ha-fp-conntrack') as YinElement;
    const secret = [...walk(hfc)].map(([el]) => el).find((el) => el.name === 'leaf' && el.attrs.name === 'shared-secret');
    expect(secret, 'leaf shared-secret').to.not.equal(undefined);
    expect(secret?.children.map((c) => c.name)).to.include('default-deny-all');
  });

  it('have no circular imports', () => {
    const imports = new Map<string, string[]>();
    for (const [name, yin] of yins) imports.set(name, yin.children.filter((c) => c.name === 'import').map((c) => c.attrs.module));
    const cycles: string[] = [];
    const visit = (m: string, trail: string[]): void => {
      if (trail.includes(m)) {
        cycles.push([...trail, m].join(' -> '));
        return;
      }
      if (trail.length > imports.size) return;
      for (const dep of imports.get(m) ?? []) visit(dep, [...trail, m]);
    };
    for (const m of imports.keys()) visit(m, []);
    expect(cycles).to.deep.equal([]);
  });
});
