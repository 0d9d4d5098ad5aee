// Conntrack records on the wire. A CT_NEW/CT_UPDATE payload is a u16 count followed by records:
//   u8 flags (bits 0-1 protocol, bit 2 IPv6, bit 3 activity synchronised, bit 4 virtual service)
//   u8 TCP state, u32 timeout (s), u32 age of the last activity (ms),
//   original src, dst, u16 sport, u16 dport; reply src, dst, u16 sport, u16 dport;
//   [u8 length + UTF-8 name of the virtual service]
// (34 bytes for IPv4 without a virtual service). A CT_DELETE payload is a u16 count followed by
// u8 flags and the original tuple. Decoding checks every field and the exact payload length.
import type { ConntrackEntry, FlowTuple, L4Proto, PackedConntrackBatch, TcpState } from '../fastpath/engine.js';
import { dottedQuad, ipFamily, readIPv4, readIPv6, writeIPv4, writeIPv6 } from './ip-bytes.js';
import { MAX_RECORDS_PER_FRAME, SyncProtocolError } from './protocol.js';

const PROTOS: readonly L4Proto[] = ['tcp', 'udp', 'icmp'];
export const STATES: readonly TcpState[] = [
  'syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close',
];
const STATE_INDEX = new Map<TcpState, number>(STATES.map((s, i) => [s, i]));
const PROTO_INDEX = new Map<L4Proto, number>(PROTOS.map((p, i) => [p, i]));

const F_V6 = 0x04;
const F_ACTIVITY = 0x08;
const F_VS = 0x10;
const F_KNOWN = 0x1f;
const MAX_AGE_MS = 0xffffffff;
/** Longest accepted timeout: one year (YANG ranges are far below). */
const MAX_TIMEOUT_S = 366 * 24 * 3600;

/** A conntrack as sync sends it. */
export interface SyncRecord {
  entry: ConntrackEntry;
  /** Send the activity time (manual synchronisation, rule 8). */
  withActivity: boolean;
  /** Timeout to announce (seconds); rule 3 sets the TCP undefined value when leaving established. */
  timeout: number;
}

/** What the receiver reconstructs: vrf, times and flags are filled in by the caller. */
export interface DecodedRecord {
  orig: FlowTuple;
  reply: FlowTuple;
  state: TcpState;
  timeout: number;
  activityAgeMs: number;
  activitySynced: boolean;
  virtualService?: string;
}

function tupleBytes(v6: boolean): number {
  return (v6 ? 32 : 8) + 4;
}

/**
 * The checks every record passes whatever its family (protocol, state, timeout, virtual service
 * name), or throws SyncProtocolError (a build error). Returns the flags' protocol bits, the state's
 * index and the name's byte length (-1 without one).
 */
function checkRecordFields(rec: SyncRecord): { proto: number; state: number; vsBytes: number } {
  const e = rec.entry;
  const proto = PROTO_INDEX.get(e.orig.proto);
  if (proto === undefined) throw new SyncProtocolError(`unknown protocol ${e.orig.proto}`);
  const state = STATE_INDEX.get(e.state);
  if (state === undefined) throw new SyncProtocolError(`unknown state ${e.state}`);
  if (!Number.isInteger(rec.timeout) || rec.timeout < 0 || rec.timeout > MAX_TIMEOUT_S) {
    throw new SyncProtocolError(`timeout out of range: ${rec.timeout}`);
  }
  const vsBytes = e.virtualService === undefined ? -1 : Buffer.byteLength(e.virtualService);
  if (vsBytes > 255) throw new SyncProtocolError('virtual service name longer than 255 bytes');
  return { proto, state, vsBytes };
}

/** Size of a record, or throws SyncProtocolError (a build error) if it cannot be encoded. */
export function recordSize(rec: SyncRecord): number {
  const { orig, reply } = rec.entry;
  const fam = ipFamily(orig.src);
  if (ipFamily(orig.dst) !== fam || ipFamily(reply.src) !== fam || ipFamily(reply.dst) !== fam) {
    throw new SyncProtocolError('mixed address families in one conntrack');
  }
  const { vsBytes } = checkRecordFields(rec);
  return 10 + 2 * tupleBytes(fam === 6) + (vsBytes < 0 ? 0 : 1 + vsBytes);
}

/** A record's first 10 bytes (flags, state, timeout, activity age); returns the offset after them. */
function writeRecordHeader(rec: SyncRecord, flags: number, state: number, buf: Buffer, off: number, now: number): number {
  if (rec.withActivity) flags |= F_ACTIVITY;
  if (rec.entry.virtualService !== undefined) flags |= F_VS;
  buf[off] = flags;
  buf[off + 1] = state;
  buf.writeUInt32BE(rec.timeout, off + 2);
  buf.writeUInt32BE(Math.min(MAX_AGE_MS, Math.max(0, Math.round(now - rec.entry.lastActivity))), off + 6);
  return off + 10;
}

/** A record's virtual service name (length byte + UTF-8), if it has one; returns the offset after it. */
function writeVirtualService(rec: SyncRecord, buf: Buffer, off: number): number {
  const vs = rec.entry.virtualService;
  if (vs === undefined) return off;
  const n = buf.write(vs, off + 1, 'utf8');
  buf[off] = n;
  return off + 1 + n;
}

function writeTuple(t: FlowTuple, v6: boolean, buf: Buffer, off: number): number {
  let o = v6 ? writeIPv6(t.src, buf, off) : writeIPv4(t.src, buf, off);
  o = v6 ? writeIPv6(t.dst, buf, o) : writeIPv4(t.dst, buf, o);
  buf.writeUInt16BE(t.sport, o);
  buf.writeUInt16BE(t.dport, o + 2);
  return o + 4;
}

function readTuple(proto: L4Proto, v6: boolean, buf: Buffer, off: number): [FlowTuple, number] {
  const src = v6 ? readIPv6(buf, off) : readIPv4(buf, off);
  const dst = v6 ? readIPv6(buf, off + (v6 ? 16 : 4)) : readIPv4(buf, off + 4);
  const o = off + (v6 ? 32 : 8);
  return [{ proto, src, dst, sport: buf.readUInt16BE(o), dport: buf.readUInt16BE(o + 2) }, o + 4];
}

/** Encode records whose sizes were computed with recordSize (same order). */
export function encodeRecords(recs: SyncRecord[], sizes: number[], now: number): Buffer {
  let total = 2;
  for (const s of sizes) total += s;
  const buf = Buffer.allocUnsafe(total);
  buf.writeUInt16BE(recs.length, 0);
  let off = 2;
  for (const rec of recs) off = encodeRecord(rec, buf, off, now);
  return buf;
}

/** Writes one record checked by recordSize at `off`; returns the offset after it. */
function encodeRecord(rec: SyncRecord, buf: Buffer, off: number, now: number): number {
  const e = rec.entry;
  const v6 = e.orig.src.includes(':');
  off = writeRecordHeader(rec, (PROTO_INDEX.get(e.orig.proto) as number) | (v6 ? F_V6 : 0), STATE_INDEX.get(e.state) as number, buf, off, now);
  off = writeTuple(e.orig, v6, buf, off);
  off = writeTuple(e.reply, v6, buf, off);
  return writeVirtualService(rec, buf, off);
}

/** Bytes of an IPv4 record without a virtual service. */
const IPV4_RECORD_SIZE = 34;

/**
 * recordSize + encodeRecords in one pass, for the live path (every conntrack of a burst): a record
 * whose four addresses are dotted quads is checked and written with each address read once (the
 * two-step path reads each twice, as text: a tenth of the master's event loop in a burst); any
 * other goes the two-step way. A record that cannot be encoded is left out of the payload and
 * listed in `errors` (recordSize's error), as the caller of recordSize leaves it out.
 */
export function encodeRecordBatch(recs: readonly SyncRecord[], now: number): { payload: Buffer; errors: { index: number; err: unknown }[] } {
  let buf = Buffer.allocUnsafe(2 + recs.length * IPV4_RECORD_SIZE);
  const errors: { index: number; err: unknown }[] = [];
  const room = (n: number): void => {
    if (off + n <= buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, off + n));
    buf.copy(bigger, 0, 0, off);
    buf = bigger;
  };
  let off = 2;
  let count = 0;
  for (let i = 0; i < recs.length; i++) {
    const rec = recs[i] as SyncRecord;
    const e = rec.entry;
    try {
      const os = dottedQuad(e.orig.src);
      const od = os < 0 ? -1 : dottedQuad(e.orig.dst);
      const rs = od < 0 ? -1 : dottedQuad(e.reply.src);
      const rd = rs < 0 ? -1 : dottedQuad(e.reply.dst);
      if (rd < 0) {
        // IPv6, mixed families, or not an address: recordSize tells which (or throws).
        const size = recordSize(rec);
        room(size);
        off = encodeRecord(rec, buf, off, now);
        count++;
        continue;
      }
      // recordSize's checks, for four IPv4 addresses.
      const { proto, state, vsBytes } = checkRecordFields(rec);
      room(IPV4_RECORD_SIZE + (vsBytes < 0 ? 0 : 1 + vsBytes));
      off = writeRecordHeader(rec, proto, state, buf, off, now);
      buf.writeUInt32BE(os, off);
      buf.writeUInt32BE(od, off + 4);
      buf.writeUInt16BE(e.orig.sport, off + 8);
      buf.writeUInt16BE(e.orig.dport, off + 10);
      buf.writeUInt32BE(rs, off + 12);
      buf.writeUInt32BE(rd, off + 16);
      buf.writeUInt16BE(e.reply.sport, off + 20);
      buf.writeUInt16BE(e.reply.dport, off + 22);
      off = writeVirtualService(rec, buf, off + 24);
      count++;
    } catch (err) {
      errors.push({ index: i, err });
    }
  }
  buf.writeUInt16BE(count, 0);
  return { payload: off === buf.length ? buf : buf.subarray(0, off), errors };
}

function need(buf: Buffer, off: number, n: number): void {
  if (off + n > buf.length) throw new SyncProtocolError(`truncated record at byte ${off}`);
}

type RecordBuilder<T> = (
  orig: FlowTuple, reply: FlowTuple, state: TcpState, timeout: number, activityAgeMs: number, activitySynced: boolean, virtualService: string | undefined,
) => T;

/** Decode and check every record of a CT_NEW/CT_UPDATE payload, building each with `build`. */
function decodeWith<T>(buf: Buffer, build: RecordBuilder<T>): T[] {
  need(buf, 0, 2);
  const count = buf.readUInt16BE(0);
  const out: T[] = [];
  let off = 2;
  for (let i = 0; i < count; i++) {
    need(buf, off, 10);
    const flags = buf.readUInt8(off);
    if ((flags & ~F_KNOWN) !== 0) throw new SyncProtocolError(`unknown record flags 0x${flags.toString(16)}`);
    const proto = PROTOS[flags & 0x03];
    if (!proto) throw new SyncProtocolError(`unknown protocol ${flags & 0x03}`);
    const state = STATES[buf.readUInt8(off + 1)];
    if (!state) throw new SyncProtocolError(`unknown TCP state ${buf.readUInt8(off + 1)}`);
    const timeout = buf.readUInt32BE(off + 2);
    if (timeout > MAX_TIMEOUT_S) throw new SyncProtocolError(`timeout out of range: ${timeout}`);
    const activityAgeMs = buf.readUInt32BE(off + 6);
    const v6 = (flags & F_V6) !== 0;
    need(buf, off + 10, 2 * tupleBytes(v6));
    const [orig, o1] = readTuple(proto, v6, buf, off + 10);
    const [reply, o2] = readTuple(proto, v6, buf, o1);
    off = o2;
    let vs: string | undefined;
    if ((flags & F_VS) !== 0) {
      need(buf, off, 1);
      const n = buf.readUInt8(off);
      need(buf, off + 1, n);
      vs = buf.toString('utf8', off + 1, off + 1 + n);
      if (n === 0 || Buffer.byteLength(vs) !== n) throw new SyncProtocolError('bad virtual service name');
      off += 1 + n;
    }
    out.push(build(orig, reply, state, timeout, activityAgeMs, (flags & F_ACTIVITY) !== 0, vs));
  }
  if (off !== buf.length) throw new SyncProtocolError(`${buf.length - off} trailing bytes after ${count} records`);
  return out;
}

export function decodeRecords(buf: Buffer): DecodedRecord[] {
  return decodeWith(buf, (orig, reply, state, timeout, activityAgeMs, activitySynced, virtualService) => {
    const r: DecodedRecord = { orig, reply, state, timeout, activityAgeMs, activitySynced };
    if (virtualService !== undefined) r.virtualService = virtualService;
    return r;
  });
}

/**
 * The receiver's fast path: records straight into synced entries of `vrf`. The activity time is
 * the master's (converted to this node's clock `now`) when it was synchronised, else `now`.
 */
export function decodeEntries(buf: Buffer, vrf: string, now: number): ConntrackEntry[] {
  return decodeWith(buf, (orig, reply, state, timeout, age, activity, vs) => {
    const e: ConntrackEntry = {
      vrf, orig, reply, state, timeout, alg: false, establishedAt: now, lastActivity: activity ? now - age : now, synced: true,
    };
    if (vs !== undefined) e.virtualService = vs;
    if (activity) e.activitySynced = true;
    return e;
  });
}

/** Size of an IPv4 record without a virtual service (DataplaneEngine.upsertIPv4Records takes them as they are). */
export const IPV4_RECORD_BYTES = 10 + 2 * tupleBytes(false);

/**
 * Whether a CT_NEW/CT_UPDATE payload holds only IPv4 records without a virtual service, every
 * field checked as decodeRecords does (a malformed one throws the same SyncProtocolError). Such a
 * payload, after its count, is exactly the input of DataplaneEngine.upsertIPv4Records. False when
 * a record is IPv6 or names a virtual service: decode it with decodeEntries then.
 */
export function isPlainIPv4Payload(buf: Buffer): boolean {
  need(buf, 0, 2);
  const count = buf.readUInt16BE(0);
  let off = 2;
  for (let i = 0; i < count; i++, off += IPV4_RECORD_BYTES) {
    need(buf, off, 10);
    const flags = buf[off] as number;
    if ((flags & ~F_KNOWN) !== 0) throw new SyncProtocolError(`unknown record flags 0x${flags.toString(16)}`);
    if ((flags & (F_V6 | F_VS)) !== 0) return false;
    if ((flags & 0x03) === 3) throw new SyncProtocolError('unknown protocol 3');
    const state = buf[off + 1] as number;
    if (state >= STATES.length) throw new SyncProtocolError(`unknown TCP state ${state}`);
    const timeout = buf.readUInt32BE(off + 2);
    if (timeout > MAX_TIMEOUT_S) throw new SyncProtocolError(`timeout out of range: ${timeout}`);
    need(buf, off + 10, IPV4_RECORD_BYTES - 10);
  }
  if (off !== buf.length) throw new SyncProtocolError(`${buf.length - off} trailing bytes after ${count} records`);
  return true;
}

/** Calls fn with the original tuple of every record of a payload that isPlainIPv4Payload accepted. */
export function forEachIPv4Orig(buf: Buffer, fn: (proto: number, src: number, dst: number, sport: number, dport: number) => void): void {
  const count = buf.readUInt16BE(0);
  for (let i = 0, off = 2; i < count; i++, off += IPV4_RECORD_BYTES) {
    fn((buf[off] as number) & 0x03, buf.readUInt32BE(off + 10), buf.readUInt32BE(off + 14), buf.readUInt16BE(off + 18), buf.readUInt16BE(off + 20));
  }
}

/**
 * Builds CT_NEW payloads of IPv4 records straight from a packed dump (no entry object, no address
 * text): the same bytes encodeRecords writes for those entries. At most MAX_RECORDS_PER_FRAME
 * records per payload.
 */
export class IPv4PayloadBuilder {
  private buf = Buffer.allocUnsafe(2 + MAX_RECORDS_PER_FRAME * IPV4_RECORD_BYTES);
  count = 0;

  /** Whether entry i of b (plain IPv4) can be encoded with this timeout; else it takes the object path. */
  static encodable(timeout: number): boolean {
    return Number.isInteger(timeout) && timeout >= 0 && timeout <= MAX_TIMEOUT_S;
  }

  get full(): boolean {
    return this.count >= MAX_RECORDS_PER_FRAME;
  }

  add(b: PackedConntrackBatch, i: number, timeout: number, withActivity: boolean, now: number): void {
    const buf = this.buf;
    const off = 2 + this.count * IPV4_RECORD_BYTES;
    buf[off] = b.protoIndex(i) | (withActivity ? F_ACTIVITY : 0);
    buf[off + 1] = b.stateIndex(i);
    buf.writeUInt32BE(timeout, off + 2);
    buf.writeUInt32BE(Math.min(MAX_AGE_MS, Math.max(0, Math.round(now - b.lastActivity(i)))), off + 6);
    buf.writeUInt32BE(b.ipv4(i, 0), off + 10);
    buf.writeUInt32BE(b.ipv4(i, 1), off + 14);
    buf.writeUInt16BE(b.port(i, 0), off + 18);
    buf.writeUInt16BE(b.port(i, 1), off + 20);
    buf.writeUInt32BE(b.ipv4(i, 2), off + 22);
    buf.writeUInt32BE(b.ipv4(i, 3), off + 26);
    buf.writeUInt16BE(b.port(i, 2), off + 30);
    buf.writeUInt16BE(b.port(i, 3), off + 32);
    this.count++;
  }

  /** The payload so far (count and records); the builder starts a new one. */
  take(): Buffer {
    this.buf.writeUInt16BE(this.count, 0);
    const out = this.buf.subarray(0, 2 + this.count * IPV4_RECORD_BYTES);
    this.buf = Buffer.allocUnsafe(2 + MAX_RECORDS_PER_FRAME * IPV4_RECORD_BYTES);
    this.count = 0;
    return out;
  }
}

export function deleteSize(t: FlowTuple): number {
  const fam = ipFamily(t.src);
  if (ipFamily(t.dst) !== fam) throw new SyncProtocolError('mixed address families in one tuple');
  if (!PROTO_INDEX.has(t.proto)) throw new SyncProtocolError(`unknown protocol ${t.proto}`);
  return 1 + tupleBytes(fam === 6);
}

export function encodeDeletes(tuples: FlowTuple[], sizes: number[]): Buffer {
  let total = 2;
  for (const s of sizes) total += s;
  const buf = Buffer.allocUnsafe(total);
  buf.writeUInt16BE(tuples.length, 0);
  let off = 2;
  for (const t of tuples) {
    const v6 = t.src.includes(':');
    buf.writeUInt8((PROTO_INDEX.get(t.proto) as number) | (v6 ? F_V6 : 0), off);
    off = writeTuple(t, v6, buf, off + 1);
  }
  return buf;
}

export function decodeDeletes(buf: Buffer): FlowTuple[] {
  need(buf, 0, 2);
  const count = buf.readUInt16BE(0);
  const out: FlowTuple[] = [];
  let off = 2;
  for (let i = 0; i < count; i++) {
    need(buf, off, 1);
    const flags = buf.readUInt8(off);
    if ((flags & ~(F_V6 | 0x03)) !== 0) throw new SyncProtocolError(`unknown delete flags 0x${flags.toString(16)}`);
    const proto = PROTOS[flags & 0x03];
    if (!proto) throw new SyncProtocolError(`unknown protocol ${flags & 0x03}`);
    const v6 = (flags & F_V6) !== 0;
    need(buf, off + 1, tupleBytes(v6));
    const [t, o] = readTuple(proto, v6, buf, off + 1);
    out.push(t);
    off = o;
  }
  if (off !== buf.length) throw new SyncProtocolError(`${buf.length - off} trailing bytes after ${count} deletes`);
  return out;
}
