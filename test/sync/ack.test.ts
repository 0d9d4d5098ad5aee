// The sync acknowledgement's bookkeeping (Ack frame, type 14): the sender's window of what is in
// flight per connection (sequence wrap, partial refusal, loss of the connection mid-flight, acks
// that acknowledge what was never sent) and the receiver's emitter (acks only the unbroken run of
// finished frames, every N frames, after T ms, at once after a bulk's end).
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import { ACK_BYTES, decodeAck, encodeAck } from '../../sync/ack-frame.js';
import { AckEmitter } from '../../sync/ack-emitter.js';
import { AckWindow } from '../../sync/ack-window.js';
import { FrameType, isFrameType, SyncProtocolError } from '../../sync/protocol.js';

const WRAP = 2 ** 32;

describe('sync acknowledgements: the Ack frame', () => {
  it('is a frame type the decoder accepts, 9 bytes, counters modulo 2^32', () => {
    expect(isFrameType(FrameType.Ack)).to.equal(true);
    const b = encodeAck({ frames: WRAP + 5, refused: WRAP - 1 });
    expect(b.length).to.equal(ACK_BYTES).and.equal(9);
    expect(decodeAck(b)).to.deep.equal({ frames: 5, refused: WRAP - 1 });
    expect(decodeAck(encodeAck({ frames: 1, refused: 0, wantTable: true }))).to.deep.equal({ frames: 1, refused: 0, wantTable: true });
    const bad = Buffer.from(b);
    bad.writeUInt8(2, 8);
    expect(() => decodeAck(bad)).to.throw(SyncProtocolError, /unknown flags/);
    expect(() => decodeAck(Buffer.alloc(7))).to.throw(SyncProtocolError, /ack of 7 bytes/);
  });
});

describe('sync acknowledgements: the sender window', () => {
  it('moves frames out of flight only as far as the ack goes', () => {
    const w = new AckWindow();
    w.wrote(100, 100); // frame 1: 100 new conntracks
    w.wrote(); // frame 2: a bulk start (no records)
    w.wrote(50, 10); // frame 3: 50 records, 10 of them new
    expect(w.inFlight).to.equal(150);
    expect(w.inFlightFresh).to.equal(110);
    w.onAck({ frames: 2, refused: 0 });
    expect(w.inFlight).to.equal(50);
    expect(w.inFlightFresh).to.equal(10);
    expect(w.ackedTotal).to.equal(100);
    w.onAck({ frames: 3, refused: 0 });
    expect(w.inFlight).to.equal(0);
    expect(w.unacknowledgedFrames()).to.equal(0);
  });

  it('counts what the peer refused, not as acknowledged', () => {
    const w = new AckWindow();
    w.wrote(10, 10);
    w.wrote(10, 5);
    w.onAck({ frames: 2, refused: 3 });
    expect(w.inFlight).to.equal(0);
    expect(w.refusedTotal).to.equal(3);
    expect(w.refusedSinceBulk).to.equal(3);
    expect(w.ackedTotal).to.equal(17);
    // The counter is cumulative: the next ack's refusals are the difference.
    w.wrote(4, 4);
    w.onAck({ frames: 3, refused: 4 });
    expect(w.refusedTotal).to.equal(4);
    expect(w.ackedTotal).to.equal(20);
    // A bulk re-sends every synced conntrack: earlier refusals no longer count against synced.
    w.bulkStarted();
    expect(w.refusedSinceBulk).to.equal(0);
    expect(w.refusedTotal).to.equal(4);
  });

  it('follows the 32-bit sequence and refusal counters across their wrap', () => {
    const start = WRAP - 3;
    const w = new AckWindow(start);
    for (let i = 0; i < 5; i++) w.wrote(2, 1); // frames start+1 .. start+5 (the last two past 2^32)
    w.onAck({ frames: (start + 3) >>> 0, refused: 0 });
    expect(w.inFlight).to.equal(4);
    w.onAck({ frames: (start + 5) >>> 0, refused: 1 }); // wire value 2
    expect(w.inFlight).to.equal(0);
    expect(w.ackedTotal).to.equal(9);
    // The refusal counter wraps too.
    const r = new AckWindow();
    r.wrote(3, 3);
    r.onAck({ frames: 1, refused: 0 });
    (r as unknown as { wireRefused: number }).wireRefused = WRAP - 1;
    r.wrote(3, 3);
    r.onAck({ frames: 2, refused: 1 }); // from 2^32-1 to 1: 2 refused
    expect(r.refusedTotal).to.equal(2);
  });

  it('refuses an ack of frames never sent, or of more refusals than records', () => {
    const w = new AckWindow();
    w.wrote(1, 1);
    expect(() => w.onAck({ frames: 2, refused: 0 })).to.throw(SyncProtocolError, /only 1 unacknowledged/);
    expect(() => w.onAck({ frames: 1, refused: 2 })).to.throw(SyncProtocolError, /refuses 2 records of the 1/);
    // Nothing was taken from a refused ack.
    expect(w.inFlight).to.equal(1);
    w.onAck({ frames: 1, refused: 1 });
    expect(w.refusedTotal).to.equal(1);
  });

  it('on a connection lost mid-flight: nothing in flight stays, a waited bulk end is not acknowledged', async () => {
    const w = new AckWindow();
    w.bulkStarted();
    w.wrote(); // bulk start
    w.wrote(100, 60);
    const end = w.wrote(); // bulk end
    const waited = w.waitFor(end);
    w.onAck({ frames: 2, refused: 5 }); // the records, not the end yet
    w.wrote(7, 7); // live records after it
    expect(w.lost()).to.deep.equal({ records: 7, fresh: 7 });
    expect(await waited).to.deep.equal({ acknowledged: false, refused: 0 });
    expect(w.inFlight).to.equal(0);
    expect(w.inFlightFresh).to.equal(0);
    // The next connection counts from the start again; the refusals stay counted in total.
    w.reset();
    expect(w.refusedTotal).to.equal(5);
    expect(w.refusedSinceBulk).to.equal(0);
    w.wrote(1, 1);
    w.onAck({ frames: 1, refused: 0 });
    expect(w.inFlight).to.equal(0);
  });

  it('resolves a bulk end with the refusals from its start when the ack covers it', async () => {
    const w = new AckWindow();
    w.wrote(3, 3);
    w.onAck({ frames: 1, refused: 1 }); // before the bulk: not the bulk's
    w.bulkStarted();
    w.wrote();
    w.wrote(10, 0);
    const end = w.wrote();
    const waited = w.waitFor(end);
    w.onAck({ frames: end, refused: 3 });
    expect(await waited).to.deep.equal({ acknowledged: true, refused: 2 });
  });
});

describe('sync acknowledgements: the receiver emitter', () => {
  function emitter(every: number, delayMs: number): { e: AckEmitter; sent: Array<{ frames: number; refused: number }>; clock: ManualClock } {
    const clock = new ManualClock(0);
    const sent: Array<{ frames: number; refused: number }> = [];
    const e = new AckEmitter(every, delayMs);
    e.attach({
      netClock: clock,
      reply: (type, payload) => {
        expect(type).to.equal(FrameType.Ack);
        sent.push(decodeAck(payload));
      },
    });
    return { e, sent, clock };
  }

  it('acknowledges only the unbroken run of finished frames', () => {
    const { e, sent } = emitter(2, 1000);
    const [a, b, c] = [e.begin(), e.begin(), e.begin()];
    e.end(b, 1, false);
    e.end(c, 0, false);
    expect(sent, 'frame 1 is not finished').to.deep.equal([]);
    e.end(a, 2, false);
    expect(sent).to.deep.equal([{ frames: 3, refused: 3 }]);
  });

  it('acknowledges after T ms when fewer than N frames finished, and at once after a bulk end', () => {
    const { e, sent, clock } = emitter(32, 25);
    e.end(e.begin(), 0, false);
    expect(sent).to.deep.equal([]);
    clock.advance(25);
    expect(sent).to.deep.equal([{ frames: 1, refused: 0 }]);
    e.end(e.begin(), 4, false);
    e.end(e.begin(), 0, true); // a bulk end
    expect(sent).to.deep.equal([{ frames: 1, refused: 0 }, { frames: 3, refused: 4 }]);
    clock.advance(100);
    expect(sent.length, 'nothing new to acknowledge').to.equal(2);
    e.close();
    e.end(e.begin(), 0, true);
    expect(sent.length, 'nothing goes out once closed').to.equal(2);
  });

  it('asks for the peer\'s table with an ack of what is done so far, never of more', () => {
    const { e, sent } = emitter(32, 25);
    const first = e.begin();
    e.begin(); // still being written
    e.end(first, 1, false);
    expect(e.requestTable()).to.equal(true);
    expect(sent).to.deep.equal([{ frames: 1, refused: 1, wantTable: true }]);
    e.close();
    expect(e.requestTable(), 'not connected').to.equal(false);
  });
});
