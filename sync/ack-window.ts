// What one sync connection has sent and its peer has not yet acknowledged (the sender's side of
// the Ack frame). Kept cheap: per written frame that carries conntrack records, its sequence
// number, how many records it carried and how many of them were conntracks new to the synced set
// (no copy of a conntrack). An ack moves the frames it covers out of flight; the records the peer
// refused are counted, so the synced count can leave them out.
import { type Ack, wrapDelta } from './ack-frame.js';
import { SyncProtocolError } from './protocol.js';

/** The outcome of a bulk (full resync, manual synchronisation) on one connection. */
export interface BulkAck {
  /** The peer acknowledged the bulk's end: everything it carried was applied (or refused). */
  acknowledged: boolean;
  /**
   * Records the peer refused from the bulk's start to its acknowledged end (an upper bound: a
   * refusal of a frame sent just before the bulk counts too). 0 when not acknowledged.
   */
  refused: number;
}

interface BulkWaiter {
  frame: number;
  refusedAtStart: number;
  resolve: (r: BulkAck) => void;
}

export class AckWindow {
  /** Data frames written on this connection (the receiver counts the same frames, in order). */
  private written: number;
  /** Data frames the peer acknowledged. */
  private acked: number;
  /** The last ack's counters as they were on the wire (32-bit, wrapping). */
  private wireFrames: number;
  private wireRefused = 0;
  /** Frames with records in flight: parallel FIFO arrays (sequence, records, new conntracks). */
  private seq: number[] = [];
  private records: number[] = [];
  private fresh: number[] = [];
  private head = 0;
  /** Conntrack records written and not yet acknowledged. */
  inFlight = 0;
  /** Of those, conntracks that were not in the synced set before (the synced count leaves them out). */
  inFlightFresh = 0;
  /**
   * Records the peer refused since the last bulk (full resync or manual synchronisation) began on
   * this connection: both re-send every synced conntrack, so older refusals are superseded.
   */
  refusedSinceBulk = 0;
  /** Records the peer refused since this window was created (peer-refused). */
  refusedTotal = 0;
  /** Records the peer acknowledged as written since this window was created. */
  ackedTotal = 0;
  private bulkRefusedStart = 0;
  private waiters: BulkWaiter[] = [];

  /** `start` is the first sequence number (tests start near 2^32 to see the wrap). */
  constructor(private readonly start = 0) {
    this.written = this.acked = start;
    this.wireFrames = start >>> 0;
  }

  /** A new connection: both sides count from the start again; whatever was in flight is lost. */
  reset(): void {
    this.lost();
    this.written = this.acked = this.start;
    this.wireFrames = this.start >>> 0;
    this.wireRefused = 0;
    this.refusedSinceBulk = 0;
  }

  /** One data frame written, carrying `records` conntrack records (`fresh` new to the synced set); its sequence. */
  wrote(records = 0, fresh = 0): number {
    const s = ++this.written;
    if (records > 0) {
      this.seq.push(s);
      this.records.push(records);
      this.fresh.push(fresh);
      this.inFlight += records;
      this.inFlightFresh += fresh;
    }
    return s;
  }

  /** A bulk's start frame was written: it re-sends what the peer refused before. */
  bulkStarted(): void {
    this.refusedSinceBulk = 0;
    this.bulkRefusedStart = this.refusedTotal;
  }

  /** Resolves when the frame `frame` (a bulk's end) is acknowledged, or the connection is lost first. */
  waitFor(frame: number): Promise<BulkAck> {
    if (frame <= this.acked) return Promise.resolve({ acknowledged: true, refused: 0 });
    return new Promise((resolve) => this.waiters.push({ frame, refusedAtStart: this.bulkRefusedStart, resolve }));
  }

  /** Sequence number of the last data frame the peer acknowledged. */
  acknowledgedUpTo(): number {
    return this.acked;
  }

  /** Frames written and not yet acknowledged. */
  unacknowledgedFrames(): number {
    return this.written - this.acked;
  }

  /** The peer's cumulative ack; an ack of frames never sent (or of more refusals than records) is a protocol error. */
  onAck(a: Ack): void {
    const frames = wrapDelta(this.wireFrames, a.frames);
    if (frames > this.written - this.acked) {
      throw new SyncProtocolError(`ack of ${frames} frames, only ${this.written - this.acked} unacknowledged`);
    }
    const refused = wrapDelta(this.wireRefused, a.refused);
    const upTo = this.acked + frames;
    let records = 0;
    let fresh = 0;
    let head = this.head;
    for (; head < this.seq.length && (this.seq[head] as number) <= upTo; head++) {
      records += this.records[head] as number;
      fresh += this.fresh[head] as number;
    }
    if (refused > records) throw new SyncProtocolError(`ack refuses ${refused} records of the ${records} it acknowledges`);
    this.head = head;
    this.inFlight -= records;
    this.inFlightFresh -= fresh;
    this.compact();
    this.acked = upTo;
    this.wireFrames = a.frames >>> 0;
    this.wireRefused = a.refused >>> 0;
    this.refusedSinceBulk += refused;
    this.refusedTotal += refused;
    this.ackedTotal += records - refused;
    if (this.waiters.length === 0) return;
    const still: BulkWaiter[] = [];
    for (const w of this.waiters) {
      if (w.frame <= upTo) w.resolve({ acknowledged: true, refused: this.refusedTotal - w.refusedAtStart });
      else still.push(w);
    }
    this.waiters = still;
  }

  /** The connection is gone: nothing in flight will be acknowledged, no bulk end either. */
  lost(): { records: number; fresh: number } {
    const out = { records: this.inFlight, fresh: this.inFlightFresh };
    this.seq = [];
    this.records = [];
    this.fresh = [];
    this.head = 0;
    this.inFlight = 0;
    this.inFlightFresh = 0;
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.resolve({ acknowledged: false, refused: 0 });
    return out;
  }

  private compact(): void {
    if (this.head === this.seq.length) {
      this.seq = [];
      this.records = [];
      this.fresh = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.seq.length) {
      this.seq = this.seq.slice(this.head);
      this.records = this.records.slice(this.head);
      this.fresh = this.fresh.slice(this.head);
      this.head = 0;
    }
  }
}
