// The failover of the product: both routers run `tandem start --engine linux` in their namespaces,
// configured over NETCONF (VRRP driving HA group g1, firewall dropping mid-stream packets of
// unknown connections, CG-NAT to the shared pool, ha-fp-conntrack over the sync link with a shared
// secret). 1,000 long-lived TCP connections through ha1; ha2's agent syncs them; ha1 is killed
// (links down, agent SIGKILLed); VRRP moves the gateways to ha2; every connection keeps carrying
// data both ways, none reset. The control run (ha-fp-conntrack enabled false) must lose them all.
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from './agent-lab-prerequisites.js';
import { agentFailoverRun } from '../../lab/agent-failover-run.js';

const CONNECTIONS = Number(process.env.TANDEM_FAILOVER_CONNECTIONS ?? 1000);

describe('lab: failover through the real agents and their conntrack sync', function () {
  this.timeout(180_000);

  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it(`keeps ${CONNECTIONS} NATed connections carrying data after the master's agent is killed`, async () => {
    const r = await agentFailoverRun({ sync: true, connections: CONNECTIONS });
    console.log(`      failover: ${JSON.stringify(r)}`);
    expect(r.before).to.equal(CONNECTIONS);
    expect(r.syncedInKernel, 'conntracks in ha2\'s kernel table').to.be.at.least(CONNECTIONS);
    expect(Number(r.ha1SyncedReported), 'ha1\'s agent: conntracks/synced').to.be.at.least(CONNECTIONS);
    expect(Number(r.ha2ReceiveReported), 'ha2\'s agent: local-node/statistics/receive').to.be.at.least(CONNECTIONS);
    expect(r.ha2GroupState).to.equal('master');
    expect(r.after, 'connections answered after the failover').to.equal(CONNECTIONS);
    expect(r.resets).to.equal(0);
  });

  it('control run: with ha-fp-conntrack disabled the same connections die', async () => {
    const r = await agentFailoverRun({ sync: false, connections: CONNECTIONS });
    console.log(`      control: ${JSON.stringify(r)}`);
    expect(r.before).to.equal(CONNECTIONS);
    expect(r.syncedInKernel).to.equal(0);
    expect(r.ha1SyncedReported).to.equal('0');
    expect(r.ha2GroupState).to.equal('master');
    expect(r.after).to.equal(0);
  });
});
