// What one sync connection's peer has not received since it last held all of this worker's synced
// conntracks (issue #11 item 4: a resync of 10^5 after the link returns, without dumping the
// kernel). Armed when the peer acknowledges a full (or delta) resync on the connection, with the
// peer's table epoch (handshake.ts Welcome); while armed it keeps, per conntrack, the last live
// message the sender routed to this connection and the connection could not deliver: sent while
// the connection was down, or written and never acknowledged, or queued when it went down. When
// the connection comes back to a peer with the same epoch, these messages are the delta resync.
// Anything that makes the record incomplete disarms it (the next resync is a full one): a message
// that is not a live one lost with the connection (a resync's frames, anti-entropy), a queue
// overflow, records the peer refused, more changes than DELTA_LIMIT, and the sender's reasons
// (kernel events lost, a role switch).
import type { FlowTuple } from '../fastpath/engine.js';
import type { SyncRecord } from './conntrack-codec.js';
import { ctKey } from './conntrack-key.js';
import { FrameType } from './protocol.js';

/** A live conntrack message, as the sender routes it to a connection. */
export type LiveOp =
  | { t: FrameType.CtNew | FrameType.CtUpdate; rec: SyncRecord; fresh?: boolean }
  | { t: FrameType.CtDelete; tuple: FlowTuple };

/** One conntrack's change while apart: its last message, when it was routed, and whether it ended before. */
export interface DeltaChange {
  op: LiveOp;
  /** Clock ms when the message was routed (the record's timeout counts from then). */
  at: number;
  /**
   * The conntrack was destroyed (and then created again) while apart: the peer gets the delete
   * first, so a new NAT binding replaces the old one (a kernel update keeps the old reply tuple).
   */
  deletedBefore: boolean;
}

/** Changes kept per connection at most; beyond, a full resync is cheaper to reason about (and bounded in memory). */
export const DELTA_LIMIT = 262_144;

export function opTuple(op: LiveOp): FlowTuple {
  return op.t === FrameType.CtDelete ? op.tuple : op.rec.entry.orig;
}

export class DeltaLog {
  private changes: Map<string, DeltaChange> | undefined;
  /** The peer's table epoch the record is relative to. */
  private epoch: Buffer | undefined;
  /** Why the record was last disarmed (logged when a full resync follows). */
  disarmedBecause = 'no resync acknowledged on this connection yet';

  /** The peer acknowledged holding everything sent on this connection so far, under `epoch`. */
  arm(epoch: Buffer | undefined): void {
    if (epoch === undefined) return;
    this.changes = new Map();
    this.epoch = epoch;
  }

  disarm(reason: string): void {
    if (this.changes === undefined && this.epoch === undefined) return;
    this.changes = undefined;
    this.epoch = undefined;
    this.disarmedBecause = reason;
  }

  get armed(): boolean {
    return this.changes !== undefined;
  }

  get size(): number {
    return this.changes?.size ?? 0;
  }

  /** The peer that answered with `epoch` still holds what it acknowledged, and we know every change since. */
  usableWith(epoch: Buffer): boolean {
    if (this.changes === undefined || this.epoch === undefined) return false;
    if (!this.epoch.equals(epoch)) {
      this.disarm('the peer\'s table epoch changed (it restarted, switched role or lost a delete)');
      return false;
    }
    return true;
  }

  record(op: LiveOp, at: number): void {
    const changes = this.changes;
    if (changes === undefined) return;
    put(changes, op, at);
    if (changes.size > DELTA_LIMIT) this.disarm(`more than ${DELTA_LIMIT} conntracks changed while apart`);
  }

  /**
   * Messages lost with the connection (written and not acknowledged, then queued), older than
   * the changes recorded since: they go in first, the recorded ones stay the latest.
   */
  recordLost(ops: LiveOp[], at: number): void {
    const changes = this.changes;
    if (changes === undefined || ops.length === 0) return;
    const merged = new Map<string, DeltaChange>();
    for (const op of ops) put(merged, op, at);
    for (const [key, c] of changes) {
      const before = merged.get(key);
      if (before) c.deletedBefore ||= before.deletedBefore || before.op.t === FrameType.CtDelete;
      merged.set(key, c);
    }
    this.changes = merged;
    if (merged.size > DELTA_LIMIT) this.disarm(`more than ${DELTA_LIMIT} conntracks changed while apart`);
  }

  /** Hands the changes over for a delta resync; the record is disarmed until the peer acknowledges it. */
  take(): Map<string, DeltaChange> {
    const changes = this.changes ?? new Map<string, DeltaChange>();
    this.changes = undefined;
    this.epoch = undefined;
    this.disarmedBecause = 'a delta resync is not acknowledged yet';
    return changes;
  }
}

function put(changes: Map<string, DeltaChange>, op: LiveOp, at: number): void {
  const key = ctKey(opTuple(op));
  const before = changes.get(key);
  const deletedBefore = before !== undefined && (before.deletedBefore || before.op.t === FrameType.CtDelete);
  if (before) changes.delete(key); // insertion order follows the latest change
  changes.set(key, { op, at, deletedBefore });
}
