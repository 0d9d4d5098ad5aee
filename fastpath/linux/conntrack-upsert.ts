// Create-or-update of conntracks: ctnetlink has no "upsert", so entries are created, and those the
// kernel refuses are sent again in the other form, a few rounds at most:
//  - EEXIST on create: the conntrack exists, send an update;
//  - ENOENT on update: no conntrack has this original tuple after all (it was removed in between,
//    or the EEXIST came from another conntrack holding the same reply tuple, e.g. a stale one whose
//    delete travels on another sync connection): create it again, after a short pause that lets
//    such a delete land.
// What still fails after the last round is returned with the kernel's errno.
import type { ConntrackWrite } from './ctnetlink-codec.js';
import type { BatchResult } from './conntrack-netlink.js';

export const EEXIST = 17;
export const ENOENT = 2;

/** Create/update rounds before a refusal is final, and the pause before each create retry (ms). */
const RETRY_PAUSES_MS = [0, 10, 50];

export type ConntrackBatchWriter = (writes: ConntrackWrite[]) => Promise<BatchResult>;

export interface UpsertResult extends BatchResult {
  /** New conntracks (a subset of `written`). */
  created: number;
  /** Writes sent again in the other form (create after ENOENT, update after EEXIST). */
  retried: number;
}

/** `written` counts created and updated entries, `created` the new ones; failures index `writes`. */
export async function upsertConntracks(
  writes: ConntrackWrite[], create: ConntrackBatchWriter, update: ConntrackBatchWriter,
  pausesMs: readonly number[] = RETRY_PAUSES_MS,
): Promise<UpsertResult> {
  const failures: { index: number; errno: number }[] = [];
  let written = 0;
  let created = 0;
  let retried = 0;
  // Indexes (into `writes`) to create in this round.
  let toCreate: number[] | undefined; // undefined: all of them, first round
  for (let round = 0; round < pausesMs.length; round++) {
    const last = round === pausesMs.length - 1;
    if (round > 0) {
      const pause = pausesMs[round] ?? 0;
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
    }
    const indexes = toCreate;
    const c = await create(indexes ? indexes.map((i) => writes[i] as ConntrackWrite) : writes);
    written += c.written;
    created += c.written;
    const existing: number[] = [];
    for (const f of c.failures) {
      const index = indexes ? (indexes[f.index] as number) : f.index;
      if (f.errno === EEXIST) existing.push(index);
      else failures.push({ index, errno: f.errno });
    }
    if (existing.length === 0) break;
    retried += existing.length;
    const u = await update(existing.map((i) => writes[i] as ConntrackWrite));
    written += u.written;
    toCreate = [];
    for (const f of u.failures) {
      const index = existing[f.index] as number;
      if (f.errno === ENOENT && !last) toCreate.push(index);
      else failures.push({ index, errno: f.errno });
    }
    if (toCreate.length === 0) break;
    retried += toCreate.length;
  }
  failures.sort((a, b) => a.index - b.index);
  return { written, failures, created, retried };
}

/** Refusals per errno, for a log line: { "2": 1, "12": 40 }. */
export function errnoCounts(failures: readonly { errno: number }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of failures) out[f.errno] = (out[f.errno] ?? 0) + 1;
  return out;
}
