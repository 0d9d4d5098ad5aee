// A batch of the soft engine's dump as DataplaneEngine.dumpPacked hands it out: the packed records
// the worker wrote, read field by field, so sync can encode a full resync without an entry object
// (and its four address strings) per conntrack.
import type { ConntrackEntry, PackedConntrackBatch } from '../engine.js';
import { PackedReader, R_ALG, R_NO_SYNC, R_SYNCED, type PackedEntries } from './entry-codec.js';

const PROTO_INDEX: Record<number, number> = { 6: 0, 17: 1, 1: 2 };

export class PackedDumpBatch implements PackedConntrackBatch {
  private readonly r: PackedReader;

  constructor(packed: PackedEntries, private readonly vrf: string) {
    this.r = new PackedReader(packed);
  }

  get count(): number {
    return this.r.count;
  }

  entry(i: number): ConntrackEntry {
    return this.r.entry(i, this.vrf);
  }

  isPlainIPv4(i: number): boolean {
    const r = this.r;
    return typeof r.addr(i, 0) === 'number' && typeof r.addr(i, 1) === 'number' && typeof r.addr(i, 2) === 'number'
      && typeof r.addr(i, 3) === 'number' && r.virtualService(i) === undefined && PROTO_INDEX[r.proto(i)] !== undefined;
  }

  protoIndex(i: number): number {
    return PROTO_INDEX[this.r.proto(i)] ?? -1;
  }

  stateIndex(i: number): number {
    return this.r.state(i);
  }

  alg(i: number): boolean {
    return (this.r.flags(i) & R_ALG) !== 0;
  }

  synced(i: number): boolean {
    return (this.r.flags(i) & R_SYNCED) !== 0;
  }

  noSync(i: number): boolean {
    return (this.r.flags(i) & R_NO_SYNC) !== 0;
  }

  timeout(i: number): number {
    return this.r.timeout(i);
  }

  establishedAt(i: number): number {
    return this.r.establishedAt(i);
  }

  lastActivity(i: number): number {
    return this.r.lastActivity(i);
  }

  ipv4(i: number, k: number): number {
    return this.r.addr(i, k) as number;
  }

  port(i: number, k: number): number {
    return this.r.port(i, k);
  }
}
