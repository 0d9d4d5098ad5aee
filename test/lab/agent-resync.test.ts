// The sync link between the two real agents is cut and restored: while it is down ha2 misses the
// end of 1,000 synchronised connections (closed, their conntracks gone from ha1) and the opening
// of 500 new ones; when it is back the
// full resync brings ha2's kernel table back to ha1's count (new ones added, stale ones purged).
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from './agent-lab-prerequisites.js';
import { agentResyncRun } from '../../lab/agent-resync-run.js';

const FIRST = Number(process.env.TANDEM_FAILOVER_CONNECTIONS ?? 1000);
const SECOND = Math.ceil(FIRST / 2);

describe('lab: sync link cut and restored between the real agents', function () {
  this.timeout(180_000);

  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it(`the full resync brings ha2 back to ha1's count (${FIRST} closed and ${SECOND} opened while cut)`, async () => {
    const r = await agentResyncRun(FIRST, SECOND);
    console.log(`      resync: ${JSON.stringify(r)}`);
    expect(r.ha2BeforeCut).to.equal(FIRST);
    // While cut ha2 diverged: it still holds the closed first batch and none of the second.
    expect(r.ha1WhileCut).to.equal(SECOND);
    expect(r.ha2WhileCut).to.equal(FIRST);
    expect(r.ha1After).to.equal(SECOND);
    expect(r.ha2After).to.equal(SECOND);
    expect(Number(r.lastFullResyncCount)).to.be.at.least(SECOND);
  });
});
