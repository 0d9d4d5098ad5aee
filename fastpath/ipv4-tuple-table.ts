// A map from a conntrack's IPv4 original tuple to a small number (below 2^29), cheap enough for
// every conntrack of a table of 10^6: open addressing over one Uint32Array (linear probing,
// backward-shift deletion), 4 words a slot (one cache line holds whole slots): source, destination,
// sport << 16 | dport, and meta = value * 4 + proto + 1 (0: an empty slot). No string is built and no
// object or boxed number is allocated per tuple: 16 bytes a slot, 20-43 bytes a tuple (the table
// doubles beyond 80 % full), and no garbage collection work.
import type { FlowTuple, L4Proto } from './engine.js';

export const PROTO_INDEX: Record<L4Proto, number> = { tcp: 0, udp: 1, icmp: 2 };
/** Values are below this. */
export const IPV4_TUPLE_VALUE_LIMIT = 2 ** 29;
const MIN_CAPACITY = 1024;
const MAX_LOAD = 0.8;

/**
 * IPv4 dotted quad to its 32-bit value, or -1 for anything else (IPv6, a leading zero, a part over
 * 255). The one parser of address text on the per-conntrack paths (tuple tables, ctnetlink records,
 * sync records): no regular expression, no allocation.
 */
export function parseIPv4(s: string): number {
  let v = 0;
  let part = 0;
  let dots = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // leading zero (node:net refuses it too)
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? v * 256 + part : -1;
}

/** 32-bit mix of an IPv4 tuple (murmur3-style finaliser over the three words; ports: sport << 16 | dport). */
export function hash4(src: number, dst: number, ports: number, proto: number): number {
  let h = Math.imul(src ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ dst, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ ports, 0x85ebca6b);
  h ^= proto;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The IPv4 form of a tuple, or undefined for IPv6 (or an unknown protocol). */
export function ipv4Fields(t: FlowTuple): { proto: number; src: number; dst: number; sport: number; dport: number } | undefined {
  const proto = PROTO_INDEX[t.proto];
  if (proto === undefined) return undefined;
  const src = parseIPv4(t.src);
  const dst = src < 0 ? -1 : parseIPv4(t.dst);
  return dst < 0 ? undefined : { proto, src, dst, sport: t.sport, dport: t.dport };
}

export class Ipv4TupleTable {
  private slots = new Uint32Array(MIN_CAPACITY * 4);
  private capacity = MIN_CAPACITY;
  private used = 0;

  get size(): number {
    return this.used;
  }

  /** Bytes of the slot array (what the table costs, whatever it holds). */
  get bytes(): number {
    return this.slots.byteLength;
  }

  clear(): void {
    this.slots = new Uint32Array(MIN_CAPACITY * 4);
    this.capacity = MIN_CAPACITY;
    this.used = 0;
  }

  /** The value stored for the tuple (proto: 0 tcp, 1 udp, 2 icmp), or undefined. */
  get(proto: number, src: number, dst: number, sport: number, dport: number): number | undefined {
    const i = this.find(proto, src >>> 0, dst >>> 0, ((sport << 16) | dport) >>> 0);
    return i < 0 ? undefined : ((this.slots[i + 3] as number) - 1 - proto) / 4;
  }

  /** Stores the value; returns the one it replaced (undefined for a new tuple). */
  set(proto: number, src: number, dst: number, sport: number, dport: number, value: number): number | undefined {
    if (!(Number.isInteger(proto) && proto >= 0 && proto <= 2)) throw new RangeError(`protocol index is 0..2, got ${proto}`);
    if (!(Number.isInteger(value) && value >= 0 && value < IPV4_TUPLE_VALUE_LIMIT)) throw new RangeError(`values are 0..2^29-1, got ${value}`);
    const s = src >>> 0;
    const d = dst >>> 0;
    const ports = ((sport << 16) | dport) >>> 0;
    const meta = value * 4 + proto + 1;
    const slots = this.slots;
    const mask = this.capacity - 1;
    let i = (hash4(s, d, ports, proto) & mask) * 4;
    for (;;) {
      const m = slots[i + 3] as number;
      if (m === 0) break;
      if (slots[i] === s && slots[i + 1] === d && slots[i + 2] === ports && ((m - 1) & 3) === proto) {
        slots[i + 3] = meta;
        return (m - 1 - proto) / 4;
      }
      i = ((i / 4 + 1) & mask) * 4;
    }
    slots[i] = s;
    slots[i + 1] = d;
    slots[i + 2] = ports;
    slots[i + 3] = meta;
    this.used++;
    if (this.used > this.capacity * MAX_LOAD) this.resize(this.capacity * 2);
    return undefined;
  }

  /** Make room for n tuples at once (a full resync knows its size): no step-by-step growth. */
  reserve(n: number): void {
    let capacity = this.capacity;
    while (n > capacity * MAX_LOAD) capacity *= 2;
    if (capacity > this.capacity) this.resize(capacity);
  }

  delete(proto: number, src: number, dst: number, sport: number, dport: number): boolean {
    return this.take(proto, src, dst, sport, dport) !== undefined;
  }

  /** Removes the tuple; returns the value it had (undefined when absent). */
  take(proto: number, src: number, dst: number, sport: number, dport: number): number | undefined {
    const found = this.find(proto, src >>> 0, dst >>> 0, ((sport << 16) | dport) >>> 0);
    if (found < 0) return undefined;
    const value = ((this.slots[found + 3] as number) - 1 - proto) / 4;
    // Backward-shift deletion: move later members of the probe run into the hole.
    const slots = this.slots;
    const mask = this.capacity - 1;
    let i = found / 4;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const o = j * 4;
      const m = slots[o + 3] as number;
      if (m === 0) break;
      const home = hash4(slots[o] as number, slots[o + 1] as number, slots[o + 2] as number, (m - 1) & 3) & mask;
      // j may fill hole i unless its home lies cyclically in (i, j].
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (between) continue;
      slots.copyWithin(i * 4, o, o + 4);
      i = j;
    }
    slots[i * 4 + 3] = 0;
    this.used--;
    if (this.capacity > MIN_CAPACITY && this.used * 8 < this.capacity) this.resize(this.capacity / 2);
    return value;
  }

  /** Offset of the tuple's slot in `slots`, or -1. */
  private find(proto: number, s: number, d: number, ports: number): number {
    const slots = this.slots;
    const mask = this.capacity - 1;
    let i = (hash4(s, d, ports, proto) & mask) * 4;
    for (;;) {
      const m = slots[i + 3] as number;
      if (m === 0) return -1;
      if (slots[i] === s && slots[i + 1] === d && slots[i + 2] === ports && ((m - 1) & 3) === proto) return i;
      i = ((i / 4 + 1) & mask) * 4;
    }
  }

  private resize(capacity: number): void {
    const old = this.slots;
    const slots = new Uint32Array(capacity * 4);
    const mask = capacity - 1;
    for (let k = 0; k < old.length; k += 4) {
      const m = old[k + 3] as number;
      if (m === 0) continue;
      let i = (hash4(old[k] as number, old[k + 1] as number, old[k + 2] as number, (m - 1) & 3) & mask) * 4;
      while (slots[i + 3] !== 0) i = ((i / 4 + 1) & mask) * 4;
      slots[i] = old[k] as number;
      slots[i + 1] = old[k + 1] as number;
      slots[i + 2] = old[k + 2] as number;
      slots[i + 3] = m;
    }
    this.slots = slots;
    this.capacity = capacity;
  }
}
