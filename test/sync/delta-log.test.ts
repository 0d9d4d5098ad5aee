// The delta record of one sync connection (sync/delta-log.ts): the last message per conntrack,
// a conntrack ended and created again keeps its delete, lost messages are older than recorded
// ones, and anything that makes the record incomplete disarms it.
import { expect } from 'chai';
import type { ConntrackEntry, FlowTuple } from '../../fastpath/engine.js';
import { DELTA_LIMIT, DeltaLog, type LiveOp } from '../../sync/delta-log.js';
import { FrameType } from '../../sync/protocol.js';

const tuple = (i: number): FlowTuple => ({ proto: 'tcp', src: `10.0.${i >> 8}.${i & 255}`, dst: '198.51.100.1', sport: 1000 + (i % 60000), dport: 443 });
const upsert = (i: number, state: ConntrackEntry['state'] = 'established', t: FrameType.CtNew | FrameType.CtUpdate = FrameType.CtNew): LiveOp =>
  ({ t, rec: { entry: { orig: tuple(i), state } as ConntrackEntry, withActivity: false, timeout: 100 } });
const del = (i: number): LiveOp => ({ t: FrameType.CtDelete, tuple: tuple(i) });
const epoch = (b: number): Buffer => Buffer.alloc(8, b);

describe('sync delta record (delta-log.ts)', () => {
  it('records nothing until armed, then the last message of each conntrack', () => {
    const d = new DeltaLog();
    d.record(upsert(1), 0);
    expect(d.armed).to.equal(false);
    d.arm(epoch(1));
    d.record(upsert(1), 0);
    d.record(upsert(1, 'close-wait', FrameType.CtUpdate), 5);
    d.record(upsert(2), 6);
    d.record(del(3), 7);
    expect(d.size).to.equal(3);
    expect(d.usableWith(epoch(1))).to.equal(true);
    const changes = d.take();
    expect(d.armed, 'disarmed until the delta is acknowledged').to.equal(false);
    const one = changes.get('tcp|10.0.0.1|1001|198.51.100.1|443');
    expect(one?.op.t).to.equal(FrameType.CtUpdate);
    expect(one?.at).to.equal(5);
    expect(one?.deletedBefore).to.equal(false);
    expect([...changes.values()].map((c) => c.op.t)).to.deep.equal([FrameType.CtUpdate, FrameType.CtNew, FrameType.CtDelete]);
  });

  it('a conntrack ended and created again keeps its delete (a new NAT binding must replace the old one)', () => {
    const d = new DeltaLog();
    d.arm(epoch(1));
    d.record(del(1), 0);
    d.record(upsert(1), 1);
    d.record(upsert(1, 'established', FrameType.CtUpdate), 2);
    expect(d.take().get('tcp|10.0.0.1|1001|198.51.100.1|443')?.deletedBefore).to.equal(true);
  });

  it('messages lost with the connection are older than those recorded since', () => {
    const d = new DeltaLog();
    d.arm(epoch(1));
    d.record(upsert(1, 'close-wait', FrameType.CtUpdate), 10);
    d.recordLost([upsert(1), del(2), upsert(2), upsert(3)], 5);
    const c = d.take();
    expect(c.get('tcp|10.0.0.1|1001|198.51.100.1|443')?.op.t, 'the recorded update stays the latest').to.equal(FrameType.CtUpdate);
    expect(c.get('tcp|10.0.0.2|1002|198.51.100.1|443')?.deletedBefore).to.equal(true);
    expect(c.size).to.equal(3);
  });

  it('another table epoch, a disarm or too many changes: no delta', () => {
    const d = new DeltaLog();
    d.arm(epoch(1));
    d.record(upsert(1), 0);
    expect(d.usableWith(epoch(2))).to.equal(false);
    expect(d.armed).to.equal(false);
    expect(d.disarmedBecause).to.match(/epoch/);
    d.arm(epoch(1));
    d.disarm('conntrack events lost on this master');
    expect(d.usableWith(epoch(1))).to.equal(false);
    d.arm(epoch(1));
    for (let i = 0; i <= DELTA_LIMIT; i++) d.record(del(i), 0);
    expect(d.armed).to.equal(false);
    expect(d.disarmedBecause).to.match(/more than/);
  });
});
