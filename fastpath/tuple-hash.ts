// Which worker owns a conntrack. The hash covers only the original source address: every flow of
// one subscriber lands in the same worker, so that worker alone holds the subscriber's CG-NAT port
// blocks and no cross-thread locking is needed on the packet path. Sync uses the same function to
// map a conntrack to its connection (npf_event<worker>), so a conntrack always travels on one.
import type { FlowTuple } from './engine.js';

/** 32-bit FNV-1a of a text (UTF-16 code units), its offset basis xor `seed`: stable across processes and nodes. */
export function fnv1a(text: string, seed = 0): number {
  let h = (seed >>> 0) ^ 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** FNV-1a over the text of the original source address (stable across processes and nodes). */
export function tupleHash(orig: Pick<FlowTuple, 'src'>): number {
  return fnv1a(orig.src);
}

/** Index of the worker (0..workers-1) that owns the conntrack whose original tuple is `orig`. */
export function ownerWorker(orig: Pick<FlowTuple, 'src'>, workers: number): number {
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`workers must be an integer >= 1, got ${workers}`);
  return tupleHash(orig) % workers;
}

const FNV_DIGITS: number[][] = Array.from({ length: 256 }, (_, v) => [...String(v)].map((c) => c.charCodeAt(0)));

/**
 * tupleHash of an IPv4 source given as its 32-bit value, without building its text: FNV-1a over
 * the same dotted-quad characters (packed sync records carry addresses as numbers).
 */
export function ipv4TupleHash(value: number): number {
  let h = 0x811c9dc5;
  for (let shift = 24; shift >= 0; shift -= 8) {
    const digits = FNV_DIGITS[(value >>> shift) & 255] as number[];
    for (let i = 0; i < digits.length; i++) {
      h ^= digits[i] as number;
      h = Math.imul(h, 0x01000193);
    }
    if (shift > 0) {
      h ^= 46; // '.'
      h = Math.imul(h, 0x01000193);
    }
  }
  return h >>> 0;
}
