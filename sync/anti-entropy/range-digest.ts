// The digest anti-entropy compares: a VRF's synced conntracks split per owning worker (the worker
// the sync connection belongs to) and, inside a worker, into R hash ranges by the same tuple hash
// the engines route with (fastpath/tuple-hash.ts), so a range never spans two connections. Each
// range is a count and an order-independent 64-bit sum (two 32-bit lanes, each a sum mod 2^32) of
// a 64-bit hash of what sync carries and the peer must hold alike: protocol, original and reply
// tuples (the NAT binding), TCP state and virtual service. Timers (timeout, activity) are left
// out: they legitimately differ between the nodes. Sums, not XOR, so that two equal entries
// could never cancel each other out.
import type { ConntrackEntry, PackedConntrackBatch } from '../../fastpath/engine.js';
import { fnv1a, tupleHash } from '../../fastpath/tuple-hash.js';
import { STATE_INDEX } from '../conntrack-key.js';
import { writeIPv4, writeIPv6 } from '../ip-bytes.js';

/** Ranges per worker unless configured otherwise. */
export const DEFAULT_RANGES = 64;
/** Words per range in a digest: count, lane A, lane B. */
export const RANGE_WORDS = 3;

const PROTO_INDEX: Record<string, number> = { tcp: 0, udp: 1, icmp: 2 };
const SEED_A = 0x5eed0001;
const SEED_B = 0x7a6d9e3b;

function step(h: number, w: number): number {
  let k = Math.imul(w, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, words: number): number {
  h ^= words;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Lane B of the last entryHash* call (lane A is returned; no tuple object per entry). */
export let laneB = 0;

function hashWords(words: ArrayLike<number>, n: number): number {
  let a = SEED_A;
  let b = SEED_B;
  for (let i = 0; i < n; i++) {
    const w = words[i] as number;
    a = step(a, w);
    b = step(b, w ^ 0x9e3779b9);
  }
  laneB = finish(b, n);
  return finish(a, n);
}

const words7 = new Uint32Array(7);

/** Hash of a plain IPv4 conntrack (no virtual service) from its fields; `state` is the TCP state index. */
export function entryHashIPv4(proto: number, state: number, os: number, od: number, sport: number, dport: number, rs: number, rd: number, rsport: number, rdport: number): number {
  words7[0] = proto | (state << 8);
  words7[1] = os;
  words7[2] = od;
  words7[3] = ((sport << 16) | dport) >>> 0;
  words7[4] = rs;
  words7[5] = rd;
  words7[6] = ((rsport << 16) | rdport) >>> 0;
  return hashWords(words7, 7);
}

const addrBuf = Buffer.alloc(16);
const wordsAny = new Uint32Array(32);

function pushAddress(ip: string, v6: boolean, n: number): number {
  if (v6) {
    writeIPv6(ip, addrBuf, 0);
    for (let k = 0; k < 4; k++) wordsAny[n++] = addrBuf.readUInt32BE(k * 4);
  } else {
    writeIPv4(ip, addrBuf, 0);
    wordsAny[n++] = addrBuf.readUInt32BE(0);
  }
  return n;
}

/**
 * Hash of any conntrack; `state` overrides the entry's (the master hashes the state it last sent).
 * For a plain IPv4 entry it equals entryHashIPv4 of the same fields.
 */
export function entryHash(e: ConntrackEntry, state = STATE_INDEX.get(e.state) as number): number {
  const v6 = e.orig.src.includes(':');
  let n = 0;
  wordsAny[n++] = (PROTO_INDEX[e.orig.proto] as number) | (state << 8) | (v6 ? 1 << 16 : 0) | (e.virtualService !== undefined ? 1 << 17 : 0);
  n = pushAddress(e.orig.src, v6, n);
  n = pushAddress(e.orig.dst, v6, n);
  wordsAny[n++] = ((e.orig.sport << 16) | e.orig.dport) >>> 0;
  n = pushAddress(e.reply.src, v6, n);
  n = pushAddress(e.reply.dst, v6, n);
  wordsAny[n++] = ((e.reply.sport << 16) | e.reply.dport) >>> 0;
  if (e.virtualService !== undefined) wordsAny[n++] = fnv1a(e.virtualService);
  return hashWords(wordsAny, n);
}

/** Range (0..ranges-1) inside its worker of a conntrack whose source hashes to `srcHash` (tupleHash). */
export function rangeOf(srcHash: number, workers: number, ranges: number): number {
  return Math.floor(srcHash / workers) % ranges;
}

/** Worker and range of an entry. */
export function placeOf(e: ConntrackEntry, workers: number, ranges: number): { worker: number; range: number } {
  const h = tupleHash(e.orig);
  return { worker: h % workers, range: rangeOf(h, workers, ranges) };
}

/** Digests of every (worker, range): count, lane A, lane B as uint32. */
export class RangeDigests {
  readonly data: Uint32Array;

  constructor(readonly workers: number, readonly ranges: number) {
    this.data = new Uint32Array(workers * ranges * RANGE_WORDS);
  }

  /** Adds one entry: its source's tupleHash, and lanes A (the returned value of entryHash*) and B (laneB). */
  add(srcHash: number, a: number, b: number): void {
    const w = srcHash % this.workers;
    const o = (w * this.ranges + rangeOf(srcHash, this.workers, this.ranges)) * RANGE_WORDS;
    const d = this.data;
    d[o] = (d[o] as number) + 1;
    d[o + 1] = ((d[o + 1] as number) + a) >>> 0;
    d[o + 2] = ((d[o + 2] as number) + b) >>> 0;
  }

  /** The ranges of one worker (a view: ranges x RANGE_WORDS words). */
  ofWorker(worker: number): Uint32Array {
    return this.data.subarray(worker * this.ranges * RANGE_WORDS, (worker + 1) * this.ranges * RANGE_WORDS);
  }

  count(worker: number, range: number): number {
    return this.data[(worker * this.ranges + range) * RANGE_WORDS] as number;
  }
}

/** Ranges whose digests differ between two views of one worker (same length). */
export function differingRanges(a: Uint32Array, b: Uint32Array): number[] {
  const out: number[] = [];
  for (let r = 0; r * RANGE_WORDS < a.length; r++) {
    const o = r * RANGE_WORDS;
    if (a[o] !== b[o] || a[o + 1] !== b[o + 1] || a[o + 2] !== b[o + 2]) out.push(r);
  }
  return out;
}

/**
 * Which entries a digest covers and with which state index (-1: not covered). Both the object and
 * the packed form, so a walk over dumpPacked builds no object for plain IPv4 entries.
 */
export interface DigestFilter {
  entry(e: ConntrackEntry): number;
  packed(b: PackedConntrackBatch, i: number): number;
}
