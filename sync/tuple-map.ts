// A map from a conntrack's original tuple to a small integer (below 2^29), cheap enough for every
// synchronised conntrack: IPv4 tuples in a packed open-addressing table (fastpath/ipv4-tuple-table.ts:
// 16 bytes a slot, 20-43 bytes a tuple, no object, string or boxed number per tuple, no garbage
// collection work; a JS Map keyed by 48-bit numbers spent most of a full resync boxing keys and
// collecting them). IPv6 tuples go to a string-keyed Map.
import type { FlowTuple } from '../fastpath/engine.js';
import { IPV4_TUPLE_VALUE_LIMIT, Ipv4TupleTable, ipv4Fields } from '../fastpath/ipv4-tuple-table.js';

function stringKey(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

function checkValue(value: number): void {
  if (!(Number.isInteger(value) && value >= 0 && value < IPV4_TUPLE_VALUE_LIMIT)) throw new RangeError(`TupleMap values are 0..2^29-1, got ${value}`);
}

export class TupleMap {
  private ipv4 = new Ipv4TupleTable();
  private other = new Map<string, number>();

  get size(): number {
    return this.ipv4.size + this.other.size;
  }

  clear(): void {
    this.ipv4.clear();
    this.other.clear();
  }

  /** The value stored for the tuple, or undefined. */
  get(t: FlowTuple): number | undefined {
    const f = ipv4Fields(t);
    if (!f) return this.other.size > 0 ? this.other.get(stringKey(t)) : undefined;
    return this.ipv4.get(f.proto, f.src, f.dst, f.sport, f.dport);
  }

  has(t: FlowTuple): boolean {
    return this.get(t) !== undefined;
  }

  /** Stores the value; returns the one it replaced (undefined for a new tuple). */
  set(t: FlowTuple, value: number): number | undefined {
    checkValue(value);
    const f = ipv4Fields(t);
    if (!f) {
      const k = stringKey(t);
      const prev = this.other.get(k);
      this.other.set(k, value);
      return prev;
    }
    return this.ipv4.set(f.proto, f.src, f.dst, f.sport, f.dport, value);
  }

  /** Make room for n IPv4 tuples at once (a full resync knows its size): no step-by-step growth. */
  reserve(n: number): void {
    this.ipv4.reserve(n);
  }

  /** get() for an IPv4 tuple given as numbers (proto: 0 tcp, 1 udp, 2 icmp). */
  getIPv4(proto: number, src: number, dst: number, sport: number, dport: number): number | undefined {
    return this.ipv4.get(proto, src, dst, sport, dport);
  }

  /** set() for an IPv4 tuple given as numbers (proto: 0 tcp, 1 udp, 2 icmp), as packed records carry it. */
  /** set() for an IPv4 tuple given as numbers; returns the value it replaced. */
  setIPv4(proto: number, src: number, dst: number, sport: number, dport: number, value: number): number | undefined {
    if (!(Number.isInteger(proto) && proto >= 0 && proto <= 2)) throw new RangeError(`TupleMap protocol index is 0..2, got ${proto}`);
    checkValue(value);
    return this.ipv4.set(proto, src, dst, sport, dport, value);
  }

  delete(t: FlowTuple): boolean {
    return this.take(t) !== undefined;
  }

  /** Removes the tuple; returns the value it had (undefined when absent). */
  take(t: FlowTuple): number | undefined {
    const f = ipv4Fields(t);
    if (!f) {
      if (this.other.size === 0) return undefined;
      const k = stringKey(t);
      const v = this.other.get(k);
      this.other.delete(k);
      return v;
    }
    return this.ipv4.take(f.proto, f.src, f.dst, f.sport, f.dport);
  }
}
