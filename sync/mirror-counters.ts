// Conntracks per virtual service with connection mirroring: on the master the synced ones
// (mirror-conn-list-on-active), on the standby the received ones (mirrored-connections-on-standby).
// A conntrack counts once, under the service it was last seen with. Which service each conntrack is
// counted under is kept by original tuple in a packed table (fastpath/ipv4-tuple-table.ts: no
// string or object per conntrack; the service as an index into the names seen); IPv6 tuples by text.
import type { FlowTuple } from '../fastpath/engine.js';
import { Ipv4TupleTable, IPV4_TUPLE_VALUE_LIMIT, ipv4Fields } from '../fastpath/ipv4-tuple-table.js';
import { ctKey } from './conntrack-key.js';

export class MirrorCounters {
  private readonly ipv4 = new Ipv4TupleTable();
  private readonly other = new Map<string, number>();
  /** Service names by index (an index per name ever counted, until clear()). */
  private names: string[] = [];
  private indexOf = new Map<string, number>();
  private readonly counts = new Map<string, number>();

  /** Counts the conntrack of original tuple `t` under `service` (moving it if it was counted under another). */
  set(t: FlowTuple, service: string): void {
    let index = this.indexOf.get(service);
    if (index === undefined) {
      if (this.names.length >= IPV4_TUPLE_VALUE_LIMIT) throw new RangeError('too many virtual service names');
      index = this.names.length;
      this.names.push(service);
      this.indexOf.set(service, index);
    }
    const f = ipv4Fields(t);
    const old = f ? this.ipv4.get(f.proto, f.src, f.dst, f.sport, f.dport) : this.other.get(ctKey(t));
    if (old === index) return;
    if (old !== undefined) this.bump(this.names[old], -1);
    if (f) this.ipv4.set(f.proto, f.src, f.dst, f.sport, f.dport, index);
    else this.other.set(ctKey(t), index);
    this.bump(service, 1);
  }

  delete(t: FlowTuple): void {
    if (this.ipv4.size === 0 && this.other.size === 0) return;
    const f = ipv4Fields(t);
    let old: number | undefined;
    if (f) {
      old = this.ipv4.get(f.proto, f.src, f.dst, f.sport, f.dport);
      if (old !== undefined) this.ipv4.delete(f.proto, f.src, f.dst, f.sport, f.dport);
    } else {
      const key = ctKey(t);
      old = this.other.get(key);
      if (old !== undefined) this.other.delete(key);
    }
    if (old !== undefined) this.bump(this.names[old], -1);
  }

  clear(): void {
    this.ipv4.clear();
    this.other.clear();
    this.names = [];
    this.indexOf = new Map();
    this.counts.clear();
  }

  count(service: string): number {
    return this.counts.get(service) ?? 0;
  }

  entries(): IterableIterator<[string, number]> {
    return this.counts.entries();
  }

  private bump(service: string | undefined, by: number): void {
    if (service === undefined) return;
    const n = (this.counts.get(service) ?? 0) + by;
    if (n <= 0) this.counts.delete(service);
    else this.counts.set(service, n);
  }
}
