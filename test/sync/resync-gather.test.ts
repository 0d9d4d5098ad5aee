// Issue 11 item 4 (resync latency): when the sync link returns, every connection of the peer comes
// up within a few milliseconds; one full resync, with one dump of the master's table, serves all
// of them (sync-sender.ts, gatherConnections). Before, the first connection's resync dumped the
// whole table for its worker's share and the second one dumped it again once the first was done.
// Two sync stacks over real TCP on loopback (127.0.0.1 <-> 127.0.0.2), 2 connections each way.
import { expect } from 'chai';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { flow, Pair, startNode, waitFor } from './two-nodes.js';

describe('sync: a full resync after the link returns serves every connection with one dump', function () {
  this.timeout(60_000);
  let p: Pair | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('dumps the master\'s table once for the connections that come back together, and the peer ends complete', async () => {
    p = await new Pair().start({ workers: 2 });
    const pair = p;
    // ha1 started as a master holding nothing: it asked ha2 for its table first (sync-sender.ts).
    // That exchange ends before the test, or its end would start a second resync in the middle of it.
    const sender = (pair.ha1.service.vrfs.get('main') as unknown as { sender: { pullPending: boolean } }).sender;
    await waitFor(() => !sender.pullPending, 'ha1 has the peer\'s (empty) table');
    for (let i = 0; i < 3000; i++) pair.ha1.engine.open('main', flow());
    await waitFor(() => pair.ha2.engine.counters('main').conntracks === 3000, 'all 3000 conntracks on ha2', 20000);
    // Counts the dumps of ha1's table from here on.
    let dumps = 0;
    const dump = pair.ha1.engine.dump.bind(pair.ha1.engine);
    pair.ha1.engine.dump = (vrf: string, batch: (entries: ConntrackEntry[]) => void | Promise<void>) => {
      dumps++;
      return dump(vrf, batch);
    };
    // The link goes: ha2's sync stops (its engine keeps the 3000); then it comes back.
    await pair.ha2.service.close();
    await waitFor(() => (pair.ha1.service.vrfs.get('main')?.clientStats() ?? []).every((c) => c.status !== 'established'), 'ha1 sees ha2 down');
    pair.ha2 = await startNode('ha2', pair.ha2.engine, pair.clock, pair.ha2Config());
    await waitFor(() => pair.ha1.service.ready() && pair.ha2.service.ready(), 'connections back');
    const vs = pair.ha1.service.vrfs.get('main');
    await vs?.resyncIdle();
    expect(dumps, 'dumps of ha1\'s table for the resync').to.equal(1);
    expect(vs?.lastFullResync?.count, 'the resync carried the whole table').to.equal(3000);
    expect(vs?.clientStats().map((c) => c.status)).to.deep.equal(['established', 'established']);
    expect(pair.ha2.engine.counters('main').conntracks).to.equal(3000);
  });
});
