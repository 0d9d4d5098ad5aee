// Reading a VRF's table for anti-entropy: the digests of every (worker, range), and the entries of
// chosen ranges. Both walk the engine's dump (dumpPacked when it has one, so plain IPv4 entries
// are hashed on their fields without an object). Cost: one pass over the VRF's table; on the
// linux engine that is a ctnetlink dump of the zone (see docs/ha-sync.md § Anti-entropy).
import type { ConntrackEntry, DataplaneEngine } from '../../fastpath/engine.js';
import { ipv4TupleHash, tupleHash } from '../../fastpath/tuple-hash.js';
import { type DigestFilter, entryHash, entryHashIPv4, laneB, RangeDigests, rangeOf } from './range-digest.js';

/** Digests of a VRF's covered entries, per (worker, range). */
export async function digestTable(engine: DataplaneEngine, vrf: string, workers: number, ranges: number, filter: DigestFilter): Promise<RangeDigests> {
  const d = new RangeDigests(workers, ranges);
  const addEntry = (e: ConntrackEntry): void => {
    const state = filter.entry(e);
    if (state < 0) return;
    const a = entryHash(e, state);
    d.add(tupleHash(e.orig), a, laneB);
  };
  if (engine.dumpPacked) {
    await engine.dumpPacked(vrf, (b) => {
      for (let i = 0; i < b.count; i++) {
        if (!b.isPlainIPv4(i)) {
          addEntry(b.entry(i));
          continue;
        }
        const state = filter.packed(b, i);
        if (state < 0) continue;
        const src = b.ipv4(i, 0);
        const a = entryHashIPv4(b.protoIndex(i), state, src, b.ipv4(i, 1), b.port(i, 0), b.port(i, 1), b.ipv4(i, 2), b.ipv4(i, 3), b.port(i, 2), b.port(i, 3));
        d.add(ipv4TupleHash(src), a, laneB);
      }
    });
  } else {
    await engine.dump(vrf, (batch) => {
      for (const e of batch) addEntry(e);
    });
  }
  return d;
}

/** A covered entry of a wanted range, with the state index the filter gave it. */
export interface RangeEntry {
  entry: ConntrackEntry;
  state: number;
  worker: number;
  range: number;
}

/** The covered entries of the (worker, range) pairs `wanted` accepts. */
export async function entriesInRanges(
  engine: DataplaneEngine, vrf: string, workers: number, ranges: number, wanted: (worker: number, range: number) => boolean, filter: DigestFilter,
): Promise<RangeEntry[]> {
  const out: RangeEntry[] = [];
  const take = (e: ConntrackEntry, srcHash: number): void => {
    const worker = srcHash % workers;
    const range = rangeOf(srcHash, workers, ranges);
    if (!wanted(worker, range)) return;
    const state = filter.entry(e);
    if (state >= 0) out.push({ entry: e, state, worker, range });
  };
  if (engine.dumpPacked) {
    await engine.dumpPacked(vrf, (b) => {
      for (let i = 0; i < b.count; i++) {
        const h = b.isPlainIPv4(i) ? ipv4TupleHash(b.ipv4(i, 0)) : -1;
        if (h >= 0 && !wanted(h % workers, rangeOf(h, workers, ranges))) continue; // no object for the rest
        const e = b.entry(i);
        take(e, h >= 0 ? h : tupleHash(e.orig));
      }
    });
  } else {
    await engine.dump(vrf, (batch) => {
      for (const e of batch) take(e, tupleHash(e.orig));
    });
  }
  return out;
}
