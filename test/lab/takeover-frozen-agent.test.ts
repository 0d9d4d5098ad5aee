// The backup guard lifts in keepalived's own switch, not the agent's (issue 11 item 1): as in
// agent-failover.test.ts ha1 dies with 1,000 NATed connections synced to ha2, but ha2's agent is
// SIGSTOPped just before the kill and resumed only after every connection was pinged again. ha2's
// keepalived takes the gateways and adds its master rule; ha2's kernel forwards the synced flows
// through the guard chain that the frozen agent never removed.
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from './agent-lab-prerequisites.js';
import { agentFailoverRun } from '../../lab/agent-failover-run.js';

const CONNECTIONS = 1000;

describe('lab: takeover with the new master\'s agent frozen', function () {
  this.timeout(180_000);

  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it(`${CONNECTIONS} NATed connections answer through ha2 while its agent is SIGSTOPped`, async () => {
    const r = await agentFailoverRun({ sync: true, connections: CONNECTIONS, freezeHa2Agent: true });
    console.log(`      takeover with ha2's agent frozen: ${JSON.stringify(r)}`);
    expect(r.syncedInKernel, 'synced conntracks in ha2 before the kill').to.be.at.least(CONNECTIONS);
    expect(r.ha2GuardChainWhileFrozen, 'the guard chain was still loaded: the agent did nothing').to.equal(true);
    expect(r.after, 'connections answered after the failover, agent frozen').to.equal(CONNECTIONS);
    expect(r.resets).to.equal(0);
    // Resumed, the agent catches up: its group is master.
    expect(r.ha2GroupState).to.equal('master');
  });
});
