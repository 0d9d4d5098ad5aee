// Issue 8 item 2: a commit that changes only firewall rules is validated on those rules instead of
// the whole tree (agent/datastore/local-validation.ts). It must be exactly as strict as libyang's
// full validation: every edit here is judged twice, once as an edit of running (the local check,
// falling back to libyang when it finds a problem) and once by <validate> of the same edit on the
// candidate (always libyang's full validation); verdicts and errors must be the same. The
// premises the local check rests on are checked against the YANG modules themselves.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConfigStore } from '../../agent/datastore/config-store.js';
import { firewallModuleIsKnown } from '../../agent/datastore/local-validation.js';
import { projectRoot } from '../../yang/libyang/project-root.js';
import type { NetconfError } from '../../core/netconf-error.js';
import { editCandidate, editRunning, GET_RUNNING, openHarness, yangContext, type Harness, type TestSession } from './ops-harness.js';

const FW = 'urn:tandem:yang:tandem-firewall';
const NC = 'urn:ietf:params:xml:ns:netconf:base:1.0';

function vrf(body: string, name = 'main'): string {
  return `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${name}</name><firewall xmlns="${FW}" xmlns:nc="${NC}">${body}</firewall></vrf>`;
}

function store(h: Harness): ConfigStore {
  return (h.ops as unknown as { svc: { store: ConfigStore } }).svc.store;
}

function describeErrors(errs: NetconfError[]): string[] {
  return errs.map((e) => JSON.stringify({ tag: e.tag, type: e.type, message: e.message, path: e.extra.path, appTag: e.extra.appTag }));
}

describe('netconf-ops: firewall rule edits validated on the changed rules, as strictly as libyang', function () {
  this.timeout(120000);
  let h: Harness;
  let s: TestSession;

  before(async () => {
    h = await openHarness();
    s = h.session(1);
    const rules = Array.from({ length: 20 }, (_, i) => `<rule><name>r${i}</name><action>accept</action><protocol>tcp</protocol><destination-port><start>${100 + i}</start></destination-port></rule>`).join('');
    expect(await h.rpc(s, editRunning(vrf(rules)))).to.equal('<ok/>');
  });
  after(async () => {
    await h.close();
  });

  it('rests on premises the modules hold: nothing else imports tandem-firewall; its constraints are the ones checked', async () => {
    expect(firewallModuleIsKnown(await yangContext()), 'tandem-firewall is the module local-validation.ts mirrors').to.equal(true);
    const root = projectRoot();
    const files = ['yang/modules', 'yang/ietf'].flatMap((d) => readdirSync(join(root, d)).filter((f) => f.endsWith('.yang')).map((f) => join(root, d, f)));
    expect(files.length).to.be.greaterThan(10);
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      if (f.includes('/tandem-firewall@')) continue;
      expect(text, `${f} must not import tandem-firewall (it could point into firewall rules)`).to.not.match(/import\s+tandem-firewall\b/);
    }
    const fw = readFileSync(files.find((f) => f.includes('/tandem-firewall@'))!, 'utf8');
    expect([...fw.matchAll(/\bmust\s+"([^"]*)"/g)].map((m) => m[1])).to.deep.equal([
      '. >= ../start',
      "not(../source-prefix) or contains(../source-prefix, ':') = contains(., ':')",
      "../protocol = 'tcp' or ../protocol = 'udp'",
      "../protocol = 'tcp' or ../protocol = 'udp'",
    ]);
    expect(fw.match(/\bmandatory\s+true/g)).to.have.length(2); // port-match start, rule action
    for (const stmt of ['when', 'unique', 'min-elements', 'max-elements', 'require-instance', 'deviation']) {
      expect(fw, stmt).to.not.match(new RegExp(`^\\s*${stmt}\\s`, 'm'));
    }
    expect(fw).to.not.match(/\btype\s+(leafref|instance-identifier)\b/);
  });

  /** Judge `body` both ways; returns the verdict (errors, [] when accepted). */
  async function judge(body: string): Promise<string[]> {
    expect(await h.rpc(s, editCandidate(vrf(body)))).to.equal('<ok/>');
    let full: string[] = [];
    try {
      await h.rpc(s, '<validate><source><candidate/></source></validate>');
    } catch (err) {
      full = describeErrors((err as { errors?: NetconfError[] }).errors ?? [err as NetconfError]);
    }
    expect(await h.rpc(s, '<discard-changes/>')).to.equal('<ok/>');
    const before = await h.rpc(s, GET_RUNNING);
    let local: string[] = [];
    try {
      await h.rpc(s, editRunning(vrf(body)));
    } catch (err) {
      local = describeErrors((err as { errors?: NetconfError[] }).errors ?? [err as NetconfError]);
    }
    expect(local, `running edit vs full validation of ${body}`).to.deep.equal(full);
    if (local.length) expect(await h.rpc(s, GET_RUNNING), 'a refused edit leaves running as it was').to.equal(before);
    return local;
  }

  it('refuses what libyang refuses, with libyang\'s errors, for every constraint of a rule', async () => {
    const st = store(h);
    const cases: [string, RegExp][] = [
      // must on source-port / destination-port: protocol tcp or udp
      ['<rule><name>r1</name><protocol>icmp</protocol></rule>', /port-match-requires-tcp-or-udp/],
      ['<rule><name>r2</name><protocol nc:operation="delete"/></rule>', /port-match-requires-tcp-or-udp/],
      ['<rule><name>n1</name><action>drop</action><source-port><start>5</start></source-port></rule>', /port-match-requires-tcp-or-udp/],
      // must on end: not lower than start
      ['<rule><name>r3</name><destination-port><end>50</end></destination-port></rule>', /port-range-inverted/],
      ['<rule><name>n2</name><action>drop</action><protocol>udp</protocol><source-port><start>9</start><end>8</end></source-port></rule>', /port-range-inverted/],
      // must on destination-prefix: same family as source-prefix
      ['<rule><name>r4</name><source-prefix>10.0.0.0/8</source-prefix><destination-prefix>2001:db8::/32</destination-prefix></rule>', /rule-address-family-mismatch/],
      // mandatory action, mandatory start
      ['<rule><name>n3</name><protocol>tcp</protocol></rule>', /action/],
      ['<rule><name>r5</name><action nc:operation="delete"/></rule>', /action/],
      ['<rule><name>r6</name><destination-port><start nc:operation="delete"/><end>500</end></destination-port></rule>', /start|port-range-inverted/],
    ];
    for (const [body, expected] of cases) {
      const before = { ...st.validations };
      const errs = await judge(body);
      expect(errs, body).to.have.length.greaterThan(0);
      expect(errs.join('\n'), body).to.match(expected);
      expect(st.validations.full, `${body}: libyang's full validation gave the error`).to.equal(before.full + 1);
    }
  });

  it('accepts what libyang accepts, validating only the changed rules', async () => {
    const st = store(h);
    const goods = [
      '<rule><name>r7</name><action>drop</action></rule>',
      '<default-action>drop</default-action><drop-invalid>false</drop-invalid>',
      '<rule><name>g1</name><action>drop</action><protocol>udp</protocol><source-prefix>2001:db8::/32</source-prefix><destination-prefix>2001:db8:1::/48</destination-prefix><source-port><start>1</start><end>1024</end></source-port></rule>',
      '<rule><name>g2</name><description>any</description><action>accept</action></rule>',
      '<rule><name>r8</name><destination-port nc:operation="delete"/><protocol nc:operation="delete"/></rule>',
      '<rule nc:operation="delete"><name>r9</name></rule>',
      '<rule><name>r10</name><destination-port><end>110</end></destination-port></rule>',
    ];
    for (const body of goods) {
      const before = { ...st.validations };
      expect(await judge(body), body).to.deep.equal([]);
      expect(st.validations, body).to.deep.equal({ full: before.full, localRules: before.localRules + 1 });
    }
    // Not rules only: a new VRF gets libyang's full validation.
    const before = { ...st.validations };
    expect(await h.rpc(s, editRunning(vrf('<rule><name>x</name><action>drop</action></rule>', 'other')))).to.equal('<ok/>');
    expect(st.validations.full).to.equal(before.full + 1);
  });

  it('agrees with libyang on 150 random rule edits', async () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pick = <T>(xs: T[]) => xs[rnd(xs.length)]!;
    let refused = 0;
    const local = store(h).validations.localRules;
    for (let i = 0; i < 150; i++) {
      const name = pick(['r11', 'r12', 'r13', 'r14', `f${i}`]);
      const parts: string[] = [];
      if (rnd(3)) parts.push(pick(['<action>drop</action>', '<action>accept</action>', '<action nc:operation="remove"/>']));
      if (rnd(2)) parts.push(pick(['<protocol>tcp</protocol>', '<protocol>udp</protocol>', '<protocol>icmp</protocol>', '<protocol nc:operation="remove"/>']));
      if (rnd(2)) parts.push(pick(['<source-prefix>10.0.0.0/8</source-prefix>', '<source-prefix>2001:db8::/32</source-prefix>', '<source-prefix nc:operation="remove"/>']));
      if (rnd(2)) parts.push(pick(['<destination-prefix>192.0.2.0/24</destination-prefix>', '<destination-prefix>2001:db8::/64</destination-prefix>', '<destination-prefix nc:operation="remove"/>']));
      for (const port of ['source-port', 'destination-port']) {
        if (!rnd(2)) continue;
        parts.push(pick([
          `<${port}><start>${1 + rnd(100)}</start></${port}>`,
          `<${port}><start>${1 + rnd(100)}</start><end>${1 + rnd(100)}</end></${port}>`,
          `<${port}><end>${1 + rnd(100)}</end></${port}>`,
          `<${port} nc:operation="remove"/>`,
        ]));
      }
      if ((await judge(`<rule><name>${name}</name>${parts.join('')}</rule>`)).length) refused++;
    }
    // Both verdicts occur, so the comparison means something.
    expect(refused).to.be.within(15, 135);
    expect(store(h).validations.localRules - local, 'accepted edits validated on their rules').to.equal(150 - refused);
  });
});
