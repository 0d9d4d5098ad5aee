// Failover of the linux engine on the lab topology, with the agent's sync replaced by its simplest
// form (every established conntrack of ha1's engine upserted into ha2's engine): 1,000 long-lived
// TCP connections from the client to the server through ha1's firewall and CG-NAT; ha1 dies (its
// engine closed, its links down); ha2 takes the gateway addresses and becomes master; every
// connection keeps carrying data both ways, none is reset. The control run without the conntrack
// transfer must lose them all (drop-invalid + SNAT to the shared pool address make that so).
import { expect } from 'chai';
import { ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { failoverRun } from '../../lab/failover-run.js';

const CONNECTIONS = Number(process.env.TANDEM_FAILOVER_CONNECTIONS ?? 1000);

describe('lab: linux engine failover with real connections', function () {
  this.timeout(180_000);

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
  });

  it(`keeps ${CONNECTIONS} NATed connections carrying data after the master dies`, async () => {
    const r = await failoverRun(true, CONNECTIONS);
    console.log(`      failover: ${JSON.stringify(r)}`);
    expect(r.before).to.equal(CONNECTIONS);
    expect(r.synced).to.be.at.least(CONNECTIONS);
    expect(r.after).to.equal(CONNECTIONS);
    expect(r.resets).to.equal(0);
  });

  it('control run: without the conntrack transfer the same connections die', async () => {
    const r = await failoverRun(false, CONNECTIONS);
    console.log(`      control: ${JSON.stringify(r)}`);
    expect(r.before).to.equal(CONNECTIONS);
    expect(r.synced).to.equal(0);
    expect(r.after).to.equal(0);
  });
});
