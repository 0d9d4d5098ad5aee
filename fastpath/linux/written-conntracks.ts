// What a backup's engine last wrote into its kernel table for each synced IPv4 conntrack, so that
// a full resync record identical to it is not written again (a backup's table changes only by its
// own writes: no traffic reaches synced conntracks there, and they do not expire).
//
// "Identical" is everything the write puts into the kernel: the original tuple (the key), the
// reply tuple (the NAT binding: addresses and ports), the state, and the timeout the mark carries
// (the one the new master counts from the switch). A record whose timeout is not above the one
// held counts as identical: the master reports the time its conntrack has left, which shrinks
// between two syncs of an unchanged conntrack; the backup keeps the longer of the two (as live
// sync does, which sends no update when a timeout only runs down). A longer timeout (traffic, or
// a new configuration) is written.
//
// Packed: the tuple index (fastpath/ipv4-tuple-table.ts) maps the original tuple to a row of four
// words (reply source, reply destination, reply ports, state << 28 | timeout): no object per conntrack.
import type { FlowTuple } from '../engine.js';
import { Ipv4TupleTable, ipv4Fields } from '../ipv4-tuple-table.js';
import { IPV4_RECORD_BYTES } from './ctnetlink-codec.js';

/** Timeouts from here up are not remembered (such a record is always written). */
const TIMEOUT_LIMIT = 1 << 28;
const WORDS = 4;

function u32At(r: Uint8Array, at: number): number {
  return ((r[at] as number) * 0x1000000) + (((r[at + 1] as number) << 16) | ((r[at + 2] as number) << 8) | (r[at + 3] as number));
}

function u16At(r: Uint8Array, at: number): number {
  return ((r[at] as number) << 8) | (r[at + 1] as number);
}

/** What WrittenConntracks.compare found. */
export const enum Held {
  Other = 0,
  Same = 1,
  Rebound = 2,
}

export class WrittenConntracks {
  private readonly index = new Ipv4TupleTable();
  private rows = new Uint32Array(1024 * WORDS);
  private rowCount = 0;
  private readonly freeRows: number[] = [];

  get size(): number {
    return this.index.size;
  }

  /** Bytes of the packed arrays. */
  get bytes(): number {
    return this.index.bytes + this.rows.byteLength;
  }

  clear(): void {
    this.index.clear();
    this.rows = new Uint32Array(1024 * WORDS);
    this.rowCount = 0;
    this.freeRows.length = 0;
  }

  /**
   * How record i (sync's packed IPv4 layout) compares with what the kernel holds for its original
   * tuple: SAME (nothing to write), REBOUND (held with another reply tuple, i.e. another NAT
   * binding, which the kernel cannot change in place: the conntrack must be deleted and created),
   * or OTHER (not known, or another state or a longer timeout: written as usual).
   */
  compare(records: Uint8Array, i: number): Held {
    if (this.index.size === 0) return Held.Other;
    const o = i * IPV4_RECORD_BYTES;
    const row = this.index.get((records[o] as number) & 0x03, u32At(records, o + 10), u32At(records, o + 14), u16At(records, o + 18), u16At(records, o + 20));
    if (row === undefined) return Held.Other;
    const r = row * WORDS;
    const rows = this.rows;
    if (rows[r] !== u32At(records, o + 22) || rows[r + 1] !== u32At(records, o + 26)) return Held.Rebound;
    if (rows[r + 2] !== ((u16At(records, o + 30) << 16) | u16At(records, o + 32)) >>> 0) return Held.Rebound;
    const held = rows[r + 3] as number;
    const timeout = u32At(records, o + 2);
    return held >>> 28 === (records[o + 1] as number) && timeout <= (held & (TIMEOUT_LIMIT - 1)) ? Held.Same : Held.Other;
  }

  /** Record i was written into the kernel as it is. */
  record(records: Uint8Array, i: number): void {
    const o = i * IPV4_RECORD_BYTES;
    this.set((records[o] as number) & 0x03, u32At(records, o + 10), u32At(records, o + 14), u16At(records, o + 18), u16At(records, o + 20),
      u32At(records, o + 22), u32At(records, o + 26), (u16At(records, o + 30) << 16) | u16At(records, o + 32), records[o + 1] as number, u32At(records, o + 2));
  }

  /**
   * The kernel holds this conntrack (original tuple; reply addresses, ports as sport << 16 | dport;
   * state index; the timeout its mark carries). `onlyNew`: keep what is known already (a dump read
   * before a write that landed since must not overwrite what that write recorded).
   */
  set(proto: number, src: number, dst: number, sport: number, dport: number,
    rsrc: number, rdst: number, rports: number, state: number, timeout: number, onlyNew = false): void {
    if (timeout >= TIMEOUT_LIMIT || state > 15) {
      this.forgetIPv4(proto, src, dst, sport, dport);
      return;
    }
    let row = this.index.get(proto, src, dst, sport, dport);
    if (row === undefined) {
      row = this.freeRows.pop() ?? this.newRow();
      this.index.set(proto, src, dst, sport, dport, row);
    } else if (onlyNew) {
      return;
    }
    const r = row * WORDS;
    const rows = this.rows;
    rows[r] = rsrc >>> 0;
    rows[r + 1] = rdst >>> 0;
    rows[r + 2] = rports >>> 0;
    rows[r + 3] = ((state << 28) | timeout) >>> 0;
  }

  /** Record i may no longer be in the kernel as it was written (a refused write). */
  forgetRecord(records: Uint8Array, i: number): void {
    const o = i * IPV4_RECORD_BYTES;
    this.forgetIPv4((records[o] as number) & 0x03, u32At(records, o + 10), u32At(records, o + 14), u16At(records, o + 18), u16At(records, o + 20));
  }

  /** The conntrack was removed or written another way: nothing is known of it. */
  forget(t: FlowTuple): void {
    if (this.index.size === 0) return;
    const f = ipv4Fields(t);
    if (f) this.forgetIPv4(f.proto, f.src, f.dst, f.sport, f.dport);
  }

  private forgetIPv4(proto: number, src: number, dst: number, sport: number, dport: number): void {
    const row = this.index.get(proto, src, dst, sport, dport);
    if (row === undefined) return;
    this.index.delete(proto, src, dst, sport, dport);
    if (this.index.size === 0) this.clear(); // all gone (e.g. a flush): the rows are given back
    else this.freeRows.push(row);
  }

  private newRow(): number {
    if ((this.rowCount + 1) * WORDS > this.rows.length) {
      const grown = new Uint32Array(this.rows.length * 2);
      grown.set(this.rows);
      this.rows = grown;
    }
    return this.rowCount++;
  }
}
