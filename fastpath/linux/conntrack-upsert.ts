// Create-or-update of conntracks in two batches: ctnetlink has no "upsert", so entries are created,
// and those the kernel refuses with EEXIST are sent again as updates.
import type { ConntrackWrite } from './ctnetlink-codec.js';
import type { BatchResult } from './conntrack-netlink.js';

const EEXIST = 17;

export type ConntrackBatchWriter = (writes: ConntrackWrite[]) => Promise<BatchResult>;

/** `written` counts created and updated entries, `created` the new ones; failures index `writes`. */
export async function upsertConntracks(
  writes: ConntrackWrite[], create: ConntrackBatchWriter, update: ConntrackBatchWriter,
): Promise<BatchResult & { created: number }> {
  const created = await create(writes);
  const existing = created.failures.filter((f) => f.errno === EEXIST).map((f) => f.index);
  const failures = created.failures.filter((f) => f.errno !== EEXIST);
  if (existing.length === 0) return { ...created, created: created.written };
  const updated = await update(existing.map((i) => writes[i]));
  for (const f of updated.failures) failures.push({ index: existing[f.index], errno: f.errno });
  failures.sort((a, b) => a.index - b.index);
  return { written: created.written + updated.written, failures, created: created.written };
}
