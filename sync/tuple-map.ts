// A map from a conntrack's original tuple to a small integer (0..7), cheap enough for every
// synchronised conntrack. IPv4 tuples live in an open-addressing hash table over typed arrays
// (linear probing, backward-shift deletion): no string is built, no object or boxed number is
// allocated per tuple, so 10^6 of them cost 16-32 bytes each (half to a quarter full) and no garbage collection work
// (a JS Map keyed by 48-bit numbers spent most of a full resync boxing keys and collecting them).
// IPv6 tuples go to a string-keyed Map.
import type { FlowTuple, L4Proto } from '../fastpath/engine.js';

const PROTO: Record<L4Proto, number> = { tcp: 0, udp: 1, icmp: 2 };
const MIN_CAPACITY = 1024;

/** IPv4 dotted quad to its 32-bit value, or -1 for anything else (IPv6). */
function ip4(s: string): number {
  let v = 0;
  let part = 0;
  let dots = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      digits++;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 && part < 256 ? v * 256 + part : -1;
}

function stringKey(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

/** 32-bit mix of an IPv4 tuple (murmur3-style finaliser over the three words). */
function hash4(src: number, dst: number, ports: number, meta: number): number {
  let h = Math.imul(src ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ dst, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ ports, 0x85ebca6b);
  h ^= meta;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export class TupleMap {
  // IPv4 table, 4 words per slot (one cache line holds whole slots): source, destination,
  // sport << 16 | dport, and meta = (proto << 3 | value) + 1, 0 meaning an empty slot.
  private slots = new Uint32Array(MIN_CAPACITY * 4);
  private capacity = MIN_CAPACITY;
  private used = 0;
  private other = new Map<string, number>();

  get size(): number {
    return this.used + this.other.size;
  }

  clear(): void {
    this.slots = new Uint32Array(MIN_CAPACITY * 4);
    this.capacity = MIN_CAPACITY;
    this.used = 0;
    this.other.clear();
  }

  /** The value stored for the tuple, or undefined. */
  get(t: FlowTuple): number | undefined {
    const s = ip4(t.src);
    const d = s < 0 ? -1 : ip4(t.dst);
    if (d < 0) return this.other.size > 0 ? this.other.get(stringKey(t)) : undefined;
    const i = this.find(s, d, ((t.sport << 16) | t.dport) >>> 0, PROTO[t.proto]);
    return i < 0 ? undefined : ((this.slots[i + 3] as number) - 1) & 7;
  }

  has(t: FlowTuple): boolean {
    return this.get(t) !== undefined;
  }

  set(t: FlowTuple, value: number): void {
    if (!(Number.isInteger(value) && value >= 0 && value < 8)) throw new RangeError(`TupleMap values are 0..7, got ${value}`);
    const s = ip4(t.src);
    const d = s < 0 ? -1 : ip4(t.dst);
    if (d < 0) {
      this.other.set(stringKey(t), value);
      return;
    }
    this.setRaw(PROTO[t.proto], s, d, ((t.sport << 16) | t.dport) >>> 0, value);
  }

  private setRaw(proto: number, s: number, d: number, ports: number, value: number): void {
    if (!(Number.isInteger(value) && value >= 0 && value < 8)) throw new RangeError(`TupleMap values are 0..7, got ${value}`);
    const slots = this.slots;
    const mask = this.capacity - 1;
    let i = (hash4(s, d, ports, proto) & mask) * 4;
    for (;;) {
      const m = slots[i + 3] as number;
      if (m === 0) break;
      if (slots[i] === s && slots[i + 1] === d && slots[i + 2] === ports && ((m - 1) >> 3) === proto) {
        slots[i + 3] = ((proto << 3) | value) + 1;
        return;
      }
      i = ((i / 4 + 1) & mask) * 4;
    }
    slots[i] = s;
    slots[i + 1] = d;
    slots[i + 2] = ports;
    slots[i + 3] = ((proto << 3) | value) + 1;
    this.used++;
    if (this.used * 2 > this.capacity) this.resize(this.capacity * 2);
  }

  /** Make room for n IPv4 tuples at once (a full resync knows its size): no step-by-step growth. */
  reserve(n: number): void {
    let capacity = this.capacity;
    while (n * 2 > capacity) capacity *= 2;
    if (capacity > this.capacity) this.resize(capacity);
  }

  /** get() for an IPv4 tuple given as numbers (proto: 0 tcp, 1 udp, 2 icmp). */
  getIPv4(proto: number, src: number, dst: number, sport: number, dport: number): number | undefined {
    const i = this.find(src >>> 0, dst >>> 0, ((sport << 16) | dport) >>> 0, proto);
    return i < 0 ? undefined : ((this.slots[i + 3] as number) - 1) & 7;
  }

  /** set() for an IPv4 tuple given as numbers (proto: 0 tcp, 1 udp, 2 icmp), as packed records carry it. */
  setIPv4(proto: number, src: number, dst: number, sport: number, dport: number, value: number): void {
    if (!(Number.isInteger(proto) && proto >= 0 && proto <= 2)) throw new RangeError(`TupleMap protocol index is 0..2, got ${proto}`);
    this.setRaw(proto, src >>> 0, dst >>> 0, ((sport << 16) | dport) >>> 0, value);
  }

  delete(t: FlowTuple): boolean {
    const s = ip4(t.src);
    const d = s < 0 ? -1 : ip4(t.dst);
    if (d < 0) return this.other.size > 0 ? this.other.delete(stringKey(t)) : false;
    const found = this.find(s, d, ((t.sport << 16) | t.dport) >>> 0, PROTO[t.proto]);
    if (found < 0) return false;
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
      const home = hash4(slots[o] as number, slots[o + 1] as number, slots[o + 2] as number, (m - 1) >> 3) & mask;
      // j may fill hole i unless its home lies cyclically in (i, j].
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (between) continue;
      slots.copyWithin(i * 4, o, o + 4);
      i = j;
    }
    slots[i * 4 + 3] = 0;
    this.used--;
    if (this.capacity > MIN_CAPACITY && this.used * 8 < this.capacity) this.resize(this.capacity / 2);
    return true;
  }

  /** Offset of the tuple's slot in `slots`, or -1. */
  private find(s: number, d: number, ports: number, proto: number): number {
    const slots = this.slots;
    const mask = this.capacity - 1;
    let i = (hash4(s, d, ports, proto) & mask) * 4;
    for (;;) {
      const m = slots[i + 3] as number;
      if (m === 0) return -1;
      if (slots[i] === s && slots[i + 1] === d && slots[i + 2] === ports && ((m - 1) >> 3) === proto) return i;
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
      let i = (hash4(old[k] as number, old[k + 1] as number, old[k + 2] as number, (m - 1) >> 3) & mask) * 4;
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
