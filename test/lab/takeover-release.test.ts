// No per-conntrack work gates forwarding at a takeover (issue 11 item 1): the agents run with
// TANDEM_TEST_RELEASE_HOLD_MS, which holds back the release of synced conntracks (their timeouts
// and marks, fastpath/linux/linux-engine.ts) for 60 s after ha2 becomes master. ha1 is killed as in
// agent-failover.test.ts; every connection must answer through ha2 while ha2's kernel still holds
// every one of them with the synced mark, i.e. while not one conntrack has been touched.
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from './agent-lab-prerequisites.js';
import { agentFailoverRun } from '../../lab/agent-failover-run.js';
import { syncedMarkConntracks } from '../../lab/lab-agent-pair.js';

const CONNECTIONS = 1000;
const HOLD_MS = 60_000;

describe('lab: takeover forwards before any synced conntrack is released', function () {
  this.timeout(180_000);
  let saved: string | undefined;

  before(function () {
    skipUnlessAgentLabCanRun(this);
    saved = process.env.TANDEM_TEST_RELEASE_HOLD_MS;
    process.env.TANDEM_TEST_RELEASE_HOLD_MS = String(HOLD_MS); // inherited by the lab's agents
  });

  after(() => {
    if (saved === undefined) delete process.env.TANDEM_TEST_RELEASE_HOLD_MS;
    else process.env.TANDEM_TEST_RELEASE_HOLD_MS = saved;
  });

  it(`${CONNECTIONS} NATed connections answer through the new master while all their conntracks are still unreleased`, async () => {
    let markedBefore = -1;
    let markedAfter = -1;
    let killedAt = 0;
    let checkedAt = 0;
    const r = await agentFailoverRun({
      sync: true, connections: CONNECTIONS,
      observe: {
        beforeKill: (lab) => { markedBefore = syncedMarkConntracks(lab, 'ha2'); killedAt = Date.now(); },
        after: (lab) => { markedAfter = syncedMarkConntracks(lab, 'ha2'); checkedAt = Date.now(); },
      },
    });
    console.log(`      takeover with the release held back: ${JSON.stringify({ ...r, markedBefore, markedAfter, checkedAfterKillMs: checkedAt - killedAt })}`);
    expect(markedBefore, 'synced (marked) conntracks in ha2 before the kill').to.be.at.least(CONNECTIONS);
    expect(r.ha2GroupState).to.equal('master');
    expect(r.after, 'connections answered after the failover').to.equal(CONNECTIONS);
    expect(r.resets).to.equal(0);
    // Checked after the answers, well inside the hold: the release had not started.
    expect(checkedAt - killedAt).to.be.below(HOLD_MS);
    expect(markedAfter, 'conntracks still unreleased when every connection had answered').to.be.at.least(CONNECTIONS);
  });
});
