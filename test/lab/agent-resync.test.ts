// The sync link between the two real agents is cut and restored: while it is down ha2 misses the
// end of 1,000 synchronised connections (closed, their conntracks gone from ha1) and the opening
// of 500 new ones; when it is back the
// resync brings ha2's kernel table back to ha1's count (new ones added, stale ones removed): a
// delta resync since protocol v4, a full one when the delta is not possible.
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

  it(`the resync brings ha2 back to ha1's count (${FIRST} closed and ${SECOND} opened while cut)`, async () => {
    const r = await agentResyncRun(FIRST, SECOND);
    console.log(`      resync: ${JSON.stringify(r)}`);
    expect(r.ha2BeforeCut).to.equal(FIRST);
    // While cut ha2 diverged: it still holds the closed first batch and none of the second.
    expect(r.ha1WhileCut).to.equal(SECOND);
    expect(r.ha2WhileCut).to.equal(FIRST);
    expect(r.ha1After).to.equal(SECOND);
    expect(r.ha2After).to.equal(SECOND);
    // The repair is a delta resync (only what changed while cut: docs/ha-sync.md § Full resync), or
    // a full one carrying the whole table when the delta was not possible (e.g. events lost on ha1).
    if (r.deltaResyncs === 0) expect(Number(r.lastFullResyncCount)).to.be.at.least(SECOND);
  });
});
