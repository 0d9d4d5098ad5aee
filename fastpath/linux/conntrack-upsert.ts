// Create-or-update of conntracks: ctnetlink has no "upsert", so entries are written in one form,
// and those the kernel refuses are sent again in the other form, a few rounds at most:
//  - EEXIST on create: the conntrack exists, send an update;
//  - ENOENT on update: no conntrack has this original tuple (it was removed in between, or the
//    EEXIST came from another conntrack holding the same reply tuple, e.g. a stale one whose delete
//    travels on another sync connection): create it, after a short pause when it is a retry that
//    lets such a delete land.
// Which form goes first adapts (UpsertOrder): creates while most writes are new conntracks (live
// sync), updates while most already exist (a resync into a table that holds them): a refusal costs
// the kernel more than a create, so a resync of 10^5 known conntracks as creates would cost two
// kernel operations each, and the first of them the dearest.
// The messages of one conntrack are sequential (the next form is sent after the answer to the
// previous one), so its create/update/delete order holds. What still fails after the last round is
// returned with the kernel's errno.
import type { ConntrackWrite } from './ctnetlink-codec.js';
import type { BatchResult } from './conntrack-netlink.js';

export const EEXIST = 17;
export const ENOENT = 2;

/** Create/update rounds before a refusal is final, and the pause before each create retry (ms). */
const RETRY_PAUSES_MS = [0, 10, 50];

/** Writes a batch in one form; T is what a write is (a ConntrackWrite, or the index of a packed record). */
export type ConntrackBatchWriter<T = ConntrackWrite> = (writes: T[]) => Promise<BatchResult>;
export type WriteForm = 'create' | 'update';

export interface UpsertResult extends BatchResult {
  /** New conntracks (a subset of `written`). */
  created: number;
  /** Writes sent again in the other form (create after ENOENT, update after EEXIST). */
  retried: number;
  /** The form the writes were sent in first. */
  first: WriteForm;
}

/**
 * The form to send first, learnt from the last upsert: the other one once more than half of a
 * batch's first form was refused as "exists" (creates) or "missing" (updates).
 */
export class UpsertOrder {
  first: WriteForm = 'create';

  /** Records how many of `sent` first-form writes came back for the other form. */
  learn(sent: number, refusedForOther: number): void {
    if (sent > 0 && refusedForOther * 2 > sent) this.first = this.first === 'create' ? 'update' : 'create';
  }
}

/** `written` counts created and updated entries, `created` the new ones; failures index `writes`. */
export async function upsertConntracks<T = ConntrackWrite>(
  writes: T[], create: ConntrackBatchWriter<T>, update: ConntrackBatchWriter<T>,
  pausesMs: readonly number[] = RETRY_PAUSES_MS, order?: UpsertOrder,
): Promise<UpsertResult> {
  const first = order?.first ?? 'create';
  const failures: { index: number; errno: number }[] = [];
  let written = 0;
  let created = 0;
  let retried = 0;
  // Indexes (into `writes`) to send in this step; undefined: all of them (the first step).
  let indexes: number[] | undefined;
  const steps = 2 * pausesMs.length;
  for (let step = 0; step < steps; step++) {
    const form: WriteForm = (step % 2 === 0) === (first === 'create') ? 'create' : 'update';
    // A create that follows EEXIST then ENOENT (not the first create) waits for a racing delete.
    const pause = form === 'create' && step >= 2 ? pausesMs[Math.floor(step / 2)] ?? 0 : 0;
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
    const batch = indexes ? indexes.map((i) => writes[i] as T) : writes;
    const r = await (form === 'create' ? create(batch) : update(batch));
    written += r.written;
    if (form === 'create') created += r.written;
    const otherErrno = form === 'create' ? EEXIST : ENOENT;
    const last = step === steps - 1;
    const again: number[] = [];
    for (const f of r.failures) {
      const index = indexes ? (indexes[f.index] as number) : f.index;
      if (f.errno === otherErrno && !last) again.push(index);
      else failures.push({ index, errno: f.errno });
    }
    if (step === 0) order?.learn(batch.length, again.length);
    if (again.length === 0) break;
    retried += again.length;
    indexes = again;
  }
  failures.sort((a, b) => a.index - b.index);
  return { written, failures, created, retried, first };
}

/** Refusals per errno, for a log line: { "2": 1, "12": 40 }. */
export function errnoCounts(failures: readonly { errno: number }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of failures) out[f.errno] = (out[f.errno] ?? 0) + 1;
  return out;
}
