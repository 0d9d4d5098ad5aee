// All or nothing (issue 8 item 2), through NETCONF on the soft engine: a sync port already taken
// refuses the commit at prepare; an apply that fails (test-only fault hook of the transaction,
// not reachable from NETCONF) undoes the subsystems already applied. In both cases the client
// gets operation-failed naming the subsystem and path, running is unchanged, and the dataplane
// still enforces the old configuration.
import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import { TCP_SYN, Verdict } from '../../fastpath/soft/vrf-dataplane.js';
import { freePort } from '../sync/two-nodes.js';
import { editAndCommit, haConfig, startTestAgent, stopTestAgent, type TestAgent } from './netconf-agent.js';

const RUNNING = '<get-config><source><running/></source></get-config>';

function dropSsh(): string {
  return `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall">
    <rule><name>no-ssh</name><action>drop</action><protocol>tcp</protocol><destination-port><start>22</start></destination-port></rule>
  </firewall></vrf></config>`;
}

describe('commit faults over NETCONF (soft engine): refused, undone, running and dataplane unchanged', function () {
  this.timeout(60000);
  let agent: TestAgent | undefined;
  let squatter: Server | undefined;
  let failSync = false;

  before(async () => {
    agent = await startTestAgent('faults', {
      beforeApply: (subsystem) => {
        if (failSync && subsystem === 'sync') throw new Error('injected apply failure');
      },
    });
  });
  after(async () => {
    await stopTestAgent(agent);
    await new Promise<void>((r) => (squatter ? squatter.close(() => r()) : r()));
  });

  it('a sync port already taken refuses the commit at prepare', async () => {
    const a = agent as TestAgent;
    const port = await freePort();
    squatter = createServer();
    await new Promise<void>((r) => squatter!.listen(port, '127.0.0.1', r));
    const reply = await editAndCommit(a, haConfig('master', '127.0.0.1', '127.0.0.2', port));
    expect(reply).to.include('<error-tag>operation-failed</error-tag>');
    expect(reply).to.include('sync: cannot listen for peer peer1 on 127.0.0.1 port').and.include('EADDRINUSE');
    expect(reply).to.match(/<error-path[^>]*>\/tandem-vrf:vrf\[name='main'\]\/tandem-ha-fp-conntrack:ha-fp-conntrack\/peer\[name='peer1'\]\/source<\/error-path>/);
    expect(await a.client.rpc(RUNNING)).to.not.include('ha-fp-conntrack');
    expect(a.engine.vrfNames()).to.not.include('main'); // fastpath prepared it, then aborted
    expect(a.parts.service.vrfs.size).to.equal(0);
    await a.client.rpc('<discard-changes/>');
    await new Promise<void>((r) => squatter!.close(() => r()));
    squatter = undefined;
    // Once the port is free the same commit goes through.
    expect(await editAndCommit(a, haConfig('master', '127.0.0.1', '127.0.0.2', port))).to.include('<ok/>');
    expect(a.parts.service.vrfs.has('main')).to.equal(true);
  });

  it('an apply that fails undoes the subsystems applied before it', async () => {
    const a = agent as TestAgent;
    const before = await a.client.rpc(RUNNING);
    const ssh = { proto: 'tcp' as const, src: '10.0.0.1', dst: '192.0.2.1', sport: 40000, dport: 22 };
    failSync = true;
    let reply: string;
    try {
      // Firewall (fastpath, applied first) and a delay (sync, whose apply fails) in one commit.
      reply = await editAndCommit(a, dropSsh().replace('</vrf>', `<network-stack xmlns="urn:tandem:yang:tandem-conntrack"><fast-path><conntrack>
        <ha-delays><tcp><synchronization>3</synchronization></tcp></ha-delays></conntrack></fast-path></network-stack></vrf>`));
    } finally {
      failSync = false;
    }
    expect(reply).to.include('<error-tag>operation-failed</error-tag>');
    expect(reply).to.include('sync: apply failed').and.include('injected apply failure').and.include('the previous configuration is back in place');
    const data = (reply: string): string => reply.replace(/message-id="[^"]*"/, '');
    expect(data(await a.client.rpc(RUNNING))).to.equal(data(before));
    expect(before).to.not.include('no-ssh');
    // The fastpath's apply was undone: ssh is still forwarded.
    const [verdict] = await a.engine.inject('main', [{ flow: { ...ssh, sport: 40001 }, flags: TCP_SYN }]);
    expect(verdict).to.equal(Verdict.Forward);
    await a.client.rpc('<discard-changes/>');
    // Without the fault the same change applies, and ssh is dropped.
    expect(await editAndCommit(a, dropSsh())).to.include('<ok/>');
    const [after] = await a.engine.inject('main', [{ flow: { ...ssh, sport: 40002 }, flags: TCP_SYN }]);
    expect(after).to.equal(Verdict.DropFirewall);
  });
});
