// A map from a conntrack's original tuple to a small integer (0..7), cheap enough for every
// synchronised conntrack: IPv4 tuples are two numbers (source address and port in one, the rest
// and the value in the other, both exact below 2^53), so no string is built or hashed. Tuples that
// share a source address and port with another one, and IPv6 tuples, go to a string-keyed map.
import type { FlowTuple, L4Proto } from '../fastpath/engine.js';

const PROTO: Record<L4Proto, number> = { tcp: 0, udp: 1, icmp: 2 };

/** IPv4 dotted quad to its 32-bit value, or -1 for anything else (IPv6). */
function ip4(s: string): number {
  let v = 0;
  let part = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      v = v * 256 + part;
      part = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
    } else {
      return -1;
    }
  }
  return dots === 3 && part < 256 ? v * 256 + part : -1;
}

function stringKey(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

export class TupleMap {
  /** (src << 16 | sport) -> ((dst << 21) | (dport << 5) | (proto << 3) | value). */
  private primary = new Map<number, number>();
  private other = new Map<string, number>();

  get size(): number {
    return this.primary.size + this.other.size;
  }

  clear(): void {
    this.primary.clear();
    this.other.clear();
  }

  /** The value stored for the tuple, or undefined. */
  get(t: FlowTuple): number | undefined {
    const k = this.key(t);
    if (k >= 0) {
      const r = this.primary.get(k);
      if (r !== undefined && this.sameRest(r, t)) return r % 8;
    }
    return this.other.size > 0 ? this.other.get(stringKey(t)) : undefined;
  }

  has(t: FlowTuple): boolean {
    return this.get(t) !== undefined;
  }

  set(t: FlowTuple, value: number): void {
    if (!(value >= 0 && value < 8)) throw new RangeError(`TupleMap values are 0..7, got ${value}`);
    const k = this.key(t);
    const rest = k >= 0 ? this.rest(t) : -1;
    if (rest >= 0) {
      const r = this.primary.get(k);
      if (r === undefined || r - (r % 8) === rest) {
        if (r === undefined && this.other.size > 0 && this.other.has(stringKey(t))) {
          this.other.set(stringKey(t), value);
          return;
        }
        this.primary.set(k, rest + value);
        return;
      }
    }
    this.other.set(stringKey(t), value);
  }

  delete(t: FlowTuple): boolean {
    const k = this.key(t);
    if (k >= 0) {
      const r = this.primary.get(k);
      if (r !== undefined && this.sameRest(r, t)) return this.primary.delete(k);
    }
    return this.other.size > 0 ? this.other.delete(stringKey(t)) : false;
  }

  private key(t: FlowTuple): number {
    const src = ip4(t.src);
    return src < 0 ? -1 : src * 65536 + t.sport;
  }

  /** Everything but the value (low 3 bits); -1 when the destination is not IPv4. */
  private rest(t: FlowTuple): number {
    const dst = ip4(t.dst);
    return dst < 0 ? -1 : dst * 2097152 + t.dport * 32 + PROTO[t.proto] * 8;
  }

  private sameRest(stored: number, t: FlowTuple): boolean {
    const r = this.rest(t);
    return r >= 0 && stored - (stored % 8) === r;
  }
}
