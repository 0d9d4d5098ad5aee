// Issue 8 item 1, through NETCONF on a real soft engine: a commit that changes firewall rules only
// sends those rules to the workers (counted by the engine, not timed), every worker then evaluates
// the rules in running's order (inserts before/after/first, moves, deletes), and a refused commit
// leaves every worker's rules as they were.
import { expect } from 'chai';
import { TCP_SYN, Verdict } from '../../fastpath/soft/vrf-dataplane.js';
import { editAndCommit, startTestAgent, stopTestAgent, type TestAgent } from '../ha/netconf-agent.js';

const FW = 'urn:tandem:yang:tandem-firewall';
const YANG = 'urn:ietf:params:xml:ns:yang:1';
const RUNNING = '<get-config><source><running/></source></get-config>';

function rule(name: string, action: string, port: number, attrs = ''): string {
  return `<rule${attrs}><name>${name}</name><action>${action}</action><protocol>tcp</protocol><destination-port><start>${port}</start></destination-port></rule>`;
}

function vrf(body: string): string {
  return `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="${FW}" xmlns:yang="${YANG}">${body}</firewall></vrf></config>`;
}

/** Running's rules of VRF main, in order, as "name:action". */
async function runningRules(a: TestAgent): Promise<string[]> {
  const xml = /<firewall[\s>][\s\S]*?<\/firewall>/.exec(await a.client.rpc(RUNNING))?.[0] ?? '';
  return [...xml.matchAll(/<rule>([\s\S]*?)<\/rule>/g)].map((m) => {
    const name = /<name>([^<]*)<\/name>/.exec(m[1]!)?.[1];
    const action = /<action>([^<]*)<\/action>/.exec(m[1]!)?.[1];
    return `${name}:${action}`;
  });
}

/** Every worker evaluates exactly running's rules, in running's order. */
async function expectWorkersMatchRunning(a: TestAgent): Promise<string[]> {
  const running = await runningRules(a);
  const perWorker = await a.engine.firewallRuleOrder('main');
  expect(perWorker).to.have.length(2);
  for (const w of perWorker) expect(w).to.deep.equal(running);
  return running;
}

async function ok(a: TestAgent, config: string): Promise<void> {
  expect(await editAndCommit(a, config)).to.include('<ok/>');
}

describe('fastpath: firewall rule deltas to the soft engine workers (issue 8)', function () {
  this.timeout(60000);
  let agent: TestAgent | undefined;
  let failSync = false;

  before(async () => {
    agent = await startTestAgent('rule-delta', {
      beforeApply: (subsystem) => {
        if (failSync && subsystem === 'sync') throw new Error('injected apply failure');
      },
    });
    const rules = Array.from({ length: 50 }, (_, i) => rule(`r${i}`, 'accept', 1000 + i)).join('');
    await ok(agent, vrf(`<default-action>accept</default-action>${rules}`));
  });
  after(async () => {
    await stopTestAgent(agent);
  });

  it('a commit that changes one rule sends one rule to each worker, no whole configuration', async () => {
    const a = agent as TestAgent;
    const before = a.engine.configMessageStats();
    await ok(a, vrf(rule('r17', 'drop', 1017)));
    const after = a.engine.configMessageStats();
    expect(after.vrfConfigs - before.vrfConfigs, 'whole VRF configurations sent').to.equal(0);
    expect(after.ruleDeltas - before.ruleDeltas, 'rule deltas sent (one per worker)').to.equal(2);
    expect(after.rulesSent - before.rulesSent, 'rules sent (one per worker)').to.equal(2);
    const running = await expectWorkersMatchRunning(a);
    expect(running[17]).to.equal('r17:drop');
    expect(running).to.have.length(50);
  });

  it('keeps running\'s order after inserts before/after/first, a move, a delete and a default-action change', async () => {
    const a = agent as TestAgent;
    const before = a.engine.configMessageStats();
    const edits = [
      vrf(rule('new-before-r10', 'drop', 2000, ` yang:insert="before" yang:key="[name='r10']"`)),
      vrf(rule('new-after-r3', 'accept', 2001, ` yang:insert="after" yang:key="[name='r3']"`)),
      vrf(rule('new-first', 'drop', 2002, ' yang:insert="first"')),
      vrf(rule('new-last', 'drop', 2003)),
      // A move of an existing rule (its content unchanged) and one whose action changes as it moves.
      vrf(rule('r40', 'accept', 1040, ` yang:insert="before" yang:key="[name='r0']"`)),
      vrf(rule('r5', 'drop', 1005, ` yang:insert="after" yang:key="[name='r45']"`)),
      vrf(`<rule xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>r20</name></rule>`),
      vrf(`<default-action>drop</default-action>${rule('r21', 'drop', 1021)}`),
    ];
    for (const e of edits) {
      await ok(a, e);
      await expectWorkersMatchRunning(a);
    }
    const running = await runningRules(a);
    expect(running.slice(0, 2)).to.deep.equal(['new-first:drop', 'r40:accept']);
    expect(running.indexOf('new-before-r10:drop')).to.equal(running.indexOf('r10:accept') - 1);
    expect(running.indexOf('new-after-r3:accept')).to.equal(running.indexOf('r3:accept') + 1);
    expect(running.indexOf('r5:drop')).to.equal(running.indexOf('r45:accept') + 1);
    expect(running.at(-1)).to.equal('new-last:drop');
    expect(running.some((r) => r.startsWith('r20:'))).to.equal(false);
    const after = a.engine.configMessageStats();
    expect(after.vrfConfigs - before.vrfConfigs, 'whole VRF configurations sent').to.equal(0);
    expect(after.ruleDeltas - before.ruleDeltas).to.equal(2 * edits.length);
    // The order is what the packets see: first match decides.
    const syn = (dport: number) => [{ flow: { proto: 'tcp' as const, src: '10.1.0.1', dst: '10.2.0.1', sport: 40000 + dport, dport }, flags: TCP_SYN }];
    expect(await a.engine.inject('main', syn(1040))).to.deep.equal([Verdict.Forward]);
    expect(await a.engine.inject('main', syn(2000))).to.deep.equal([Verdict.DropFirewall]);
    expect(await a.engine.inject('main', syn(1005))).to.deep.equal([Verdict.DropFirewall]);
    expect(await a.engine.inject('main', syn(9999))).to.deep.equal([Verdict.DropFirewall], 'default-action drop');
  });

  it('two rules on the same port: moving the drop rule before the accept rule changes the verdict', async () => {
    const a = agent as TestAgent;
    await ok(a, vrf(`<default-action>accept</default-action>${rule('web-ok', 'accept', 8080)}${rule('web-no', 'drop', 8080)}`));
    const syn = (sport: number) => [{ flow: { proto: 'tcp' as const, src: '10.1.0.2', dst: '10.2.0.2', sport, dport: 8080 }, flags: TCP_SYN }];
    expect(await a.engine.inject('main', syn(50001))).to.deep.equal([Verdict.Forward]);
    await ok(a, vrf(rule('web-no', 'drop', 8080, ` yang:insert="before" yang:key="[name='web-ok']"`)));
    await expectWorkersMatchRunning(a);
    expect(await a.engine.inject('main', syn(50002))).to.deep.equal([Verdict.DropFirewall]);
  });

  it('a refused commit leaves every worker\'s rules unchanged', async () => {
    const a = agent as TestAgent;
    const before = await expectWorkersMatchRunning(a);
    // Refused by libyang (a port on an ICMP rule breaks a must): nothing reaches the engine.
    const stats = a.engine.configMessageStats();
    const bad = await editAndCommit(a, vrf(`<rule><name>r30</name><action>drop</action><protocol>icmp</protocol><destination-port><start>7</start></destination-port></rule>`));
    expect(bad).to.include('<rpc-error>');
    expect(a.engine.configMessageStats()).to.deep.equal(stats);
    expect(await a.client.rpc('<discard-changes/>')).to.include('<ok/>');
    expect(await expectWorkersMatchRunning(a)).to.deep.equal(before);
    // Applied to the workers, then a later subsystem's apply fails: the delta is undone.
    failSync = true;
    try {
      const reply = await editAndCommit(a, vrf(`${rule('r31', 'drop', 1031)}${rule('fresh', 'drop', 3000, ' yang:insert="first"')}`));
      expect(reply).to.include('<error-tag>operation-failed</error-tag>').and.include('injected apply failure');
    } finally {
      failSync = false;
    }
    expect(await a.client.rpc('<discard-changes/>')).to.include('<ok/>');
    expect(await expectWorkersMatchRunning(a)).to.deep.equal(before);
  });
});
