// Planes that cannot starve each other (issue 8 item 3): a real `tandem start` pair keeps both sync
// connections of both nodes, and keeps sending conntracks, while ha1 parses, validates and commits
// a firewall edit large enough to keep its main thread busy for several seconds (the sync
// keepalive gives up after 3 s of silence). The dataplane, sync included, runs in the plane worker.
import { expect } from 'chai';
import { runPairUnderEdit } from './pair-under-edit.js';

describe('plane worker: a synced pair of tandem start keeps its sync connections during a large edit on ha1', function () {
  this.timeout(600_000);

  it('no sync connection goes down or reconnects; conntracks keep arriving on ha2; the edit is committed', async () => {
    const f = await runPairUnderEdit({ rules: 50_000, plane: 'worker' });
    process.stderr.write(`      figures: ${JSON.stringify(f)}\n`);
    // The main thread really was busy for longer than the sync keepalive allows (3 s): else this proves nothing.
    expect(f.editMs + f.commitMs, 'edit + commit time (ms)').to.be.above(3000);
    expect(f.syncDownHa1, 'sync connections lost on ha1').to.equal(0);
    expect(f.syncDownHa2, 'sync connections lost on ha2').to.equal(0);
    expect(f.syncReconnectsHa1, 'sync connections re-established on ha1').to.equal(0);
    expect(f.syncReconnectsHa2, 'sync connections re-established on ha2').to.equal(0);
    expect(f.clientsHa1, 'sync clients on ha1').to.be.above(0);
    expect(f.establishedHa1, 'established sync clients on ha1').to.equal(f.clientsHa1);
    expect(f.establishedHa2, 'established sync clients on ha2').to.equal(f.clientsHa2);
    expect(f.ha2SyncedAfter, 'conntracks synced to ha2 kept growing').to.be.above(f.ha2SyncedBefore);
    expect(f.reads, 'the other session was answered during the edit').to.be.above(0);
  });
});
