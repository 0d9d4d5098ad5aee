// Connection mirroring through the real agents: 1,000 connections to a virtual service (VIP, DNAT
// to the server, CG-NAT of the clients) whose tcp-fast-path profile has `connection-mirror true`:
// the mirrored counters match on both nodes (ha1's mirror-conn-list-on-active, ha2's
// mirrored-connections-on-standby), ha2's kernel holds the flows, and they survive ha1's death.
// With `connection-mirror false` nothing is mirrored (sync itself on), and the connections die.
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from './agent-lab-prerequisites.js';
import { agentFailoverRun } from '../../lab/agent-failover-run.js';

const CONNECTIONS = Number(process.env.TANDEM_FAILOVER_CONNECTIONS ?? 1000);

describe('lab: virtual service connection mirroring through the real agents', function () {
  this.timeout(180_000);

  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it(`connection-mirror true: ${CONNECTIONS} mirrored on both nodes, and they survive the failover`, async () => {
    const r = await agentFailoverRun({ sync: true, connections: CONNECTIONS, virtualService: { mirror: true } });
    console.log(`      mirror: ${JSON.stringify(r)}`);
    expect(r.before).to.equal(CONNECTIONS);
    expect(Number(r.mirrorOnActive), 'ha1 mirror-conn-list-on-active').to.equal(CONNECTIONS);
    expect(Number(r.mirroredOnStandby), 'ha2 mirrored-connections-on-standby').to.equal(CONNECTIONS);
    expect(r.syncedInKernel).to.equal(CONNECTIONS);
    // The sync state is still there next to the virtual service's tcpstat (one VRF, two providers).
    expect(Number(r.ha1SyncedReported), 'ha1\'s agent: conntracks/synced').to.be.at.least(CONNECTIONS);
    expect(r.ha2GroupState).to.equal('master');
    expect(r.after).to.equal(CONNECTIONS);
    expect(r.resets).to.equal(0);
  });

  it('connection-mirror false: nothing mirrored, and the same connections die', async () => {
    const r = await agentFailoverRun({ sync: true, connections: CONNECTIONS, virtualService: { mirror: false } });
    console.log(`      no mirror: ${JSON.stringify(r)}`);
    expect(r.before).to.equal(CONNECTIONS);
    expect(r.mirrorOnActive).to.equal('0');
    expect(r.mirroredOnStandby).to.equal('0');
    expect(Number(r.ha1SyncedReported)).to.be.below(CONNECTIONS);
    expect(r.syncedInKernel).to.equal(0);
    expect(r.ha2GroupState).to.equal('master');
    expect(r.after).to.equal(0);
  });
});
