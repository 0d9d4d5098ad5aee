// The anti-entropy frames (types 15-18 of sync protocol v2, sealed like every frame after the
// handshake), big-endian:
//   15 DigestRequest  u32 round, u16 worker, u16 workers, u16 ranges, ranges x (u32 count, u32 A, u32 B);
//                     count 0xffffffff marks a range the master skips this round (live events touched it)
//   16 DigestReply    u8 kind 0 (differing): u32 round, u16 worker, u16 compared, u16 n, n x u16 range
//                     u8 kind 1 (repaired):  u32 round, u16 worker, u16 ranges, u32 added, u32 updated,
//                                            u32 removed, u32 refused
//   17 RangeRepair    u32 round, u16 range, then a CT_NEW payload (u16 count + records, conntrack-codec.ts)
//   18 RangeMarker    u32 round, u8 kind 0 (start): u16 n, n x u16 range (the ranges repaired next)
//                     u32 round, u8 kind 1 (end): u16 range, u8 last (1 on the round's last range of
//                     this connection), u32 records sent in the range
import { SyncProtocolError } from '../protocol.js';
import { RANGE_WORDS } from './range-digest.js';

/** Most ranges per worker a peer may ask for (12 bytes each in a request). */
export const MAX_RANGES = 1024;
export const SKIPPED = 0xffffffff;

export interface DigestRequest {
  round: number;
  worker: number;
  workers: number;
  ranges: number;
  /** ranges x RANGE_WORDS words; a count of SKIPPED marks a skipped range. */
  digests: Uint32Array;
}

export type DigestReply =
  | { kind: 'differing'; round: number; worker: number; compared: number; ranges: number[] }
  | { kind: 'repaired'; round: number; worker: number; ranges: number; added: number; updated: number; removed: number; refused: number };

export type RangeMarker =
  | { kind: 'start'; round: number; ranges: number[] }
  | { kind: 'end'; round: number; range: number; last: boolean; records: number };

function need(buf: Buffer, n: number, what: string): void {
  if (buf.length !== n) throw new SyncProtocolError(`${what} of ${buf.length} bytes, expected ${n}`);
}

function checkRanges(ranges: number): void {
  if (!Number.isInteger(ranges) || ranges < 1 || ranges > MAX_RANGES) throw new SyncProtocolError(`anti-entropy ranges out of 1..${MAX_RANGES}: ${ranges}`);
}

export function encodeDigestRequest(r: DigestRequest): Buffer {
  checkRanges(r.ranges);
  const buf = Buffer.allocUnsafe(10 + r.ranges * RANGE_WORDS * 4);
  buf.writeUInt32BE(r.round >>> 0, 0);
  buf.writeUInt16BE(r.worker, 4);
  buf.writeUInt16BE(r.workers, 6);
  buf.writeUInt16BE(r.ranges, 8);
  for (let i = 0; i < r.ranges * RANGE_WORDS; i++) buf.writeUInt32BE(r.digests[i] as number, 10 + i * 4);
  return buf;
}

export function decodeDigestRequest(buf: Buffer): DigestRequest {
  if (buf.length < 10) throw new SyncProtocolError(`digest request of ${buf.length} bytes`);
  const ranges = buf.readUInt16BE(8);
  checkRanges(ranges);
  need(buf, 10 + ranges * RANGE_WORDS * 4, 'digest request');
  const workers = buf.readUInt16BE(6);
  const worker = buf.readUInt16BE(4);
  if (workers < 1 || worker >= workers) throw new SyncProtocolError(`digest request for worker ${worker} of ${workers}`);
  const digests = new Uint32Array(ranges * RANGE_WORDS);
  for (let i = 0; i < digests.length; i++) digests[i] = buf.readUInt32BE(10 + i * 4);
  return { round: buf.readUInt32BE(0), worker, workers, ranges, digests };
}

export function encodeDigestReply(r: DigestReply): Buffer {
  if (r.kind === 'differing') {
    const buf = Buffer.allocUnsafe(11 + 2 * r.ranges.length);
    buf.writeUInt8(0, 0);
    buf.writeUInt32BE(r.round >>> 0, 1);
    buf.writeUInt16BE(r.worker, 5);
    buf.writeUInt16BE(r.compared, 7);
    buf.writeUInt16BE(r.ranges.length, 9);
    r.ranges.forEach((x, i) => buf.writeUInt16BE(x, 11 + 2 * i));
    return buf;
  }
  const buf = Buffer.allocUnsafe(25);
  buf.writeUInt8(1, 0);
  buf.writeUInt32BE(r.round >>> 0, 1);
  buf.writeUInt16BE(r.worker, 5);
  buf.writeUInt16BE(r.ranges, 7);
  buf.writeUInt32BE(r.added, 9);
  buf.writeUInt32BE(r.updated, 13);
  buf.writeUInt32BE(r.removed, 17);
  buf.writeUInt32BE(r.refused, 21);
  return buf;
}

export function decodeDigestReply(buf: Buffer): DigestReply {
  if (buf.length < 1) throw new SyncProtocolError('empty digest reply');
  const kind = buf.readUInt8(0);
  if (kind === 0) {
    if (buf.length < 11) throw new SyncProtocolError(`digest reply of ${buf.length} bytes`);
    const n = buf.readUInt16BE(9);
    need(buf, 11 + 2 * n, 'digest reply');
    const ranges = Array.from({ length: n }, (_, i) => buf.readUInt16BE(11 + 2 * i));
    return { kind: 'differing', round: buf.readUInt32BE(1), worker: buf.readUInt16BE(5), compared: buf.readUInt16BE(7), ranges };
  }
  if (kind === 1) {
    need(buf, 25, 'repair result');
    return {
      kind: 'repaired', round: buf.readUInt32BE(1), worker: buf.readUInt16BE(5), ranges: buf.readUInt16BE(7),
      added: buf.readUInt32BE(9), updated: buf.readUInt32BE(13), removed: buf.readUInt32BE(17), refused: buf.readUInt32BE(21),
    };
  }
  throw new SyncProtocolError(`unknown digest reply kind ${kind}`);
}

/** A RangeRepair frame: the range header then a CT_NEW payload. */
export function encodeRangeRepair(round: number, range: number, records: Buffer): Buffer {
  const head = Buffer.allocUnsafe(6);
  head.writeUInt32BE(round >>> 0, 0);
  head.writeUInt16BE(range, 4);
  return Buffer.concat([head, records]);
}

export function decodeRangeRepair(buf: Buffer): { round: number; range: number; records: Buffer } {
  if (buf.length < 8) throw new SyncProtocolError(`range repair of ${buf.length} bytes`);
  return { round: buf.readUInt32BE(0), range: buf.readUInt16BE(4), records: buf.subarray(6) };
}

export function encodeRangeMarker(m: RangeMarker): Buffer {
  if (m.kind === 'start') {
    const buf = Buffer.allocUnsafe(7 + 2 * m.ranges.length);
    buf.writeUInt32BE(m.round >>> 0, 0);
    buf.writeUInt8(0, 4);
    buf.writeUInt16BE(m.ranges.length, 5);
    m.ranges.forEach((r, i) => buf.writeUInt16BE(r, 7 + 2 * i));
    return buf;
  }
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt32BE(m.round >>> 0, 0);
  buf.writeUInt8(1, 4);
  buf.writeUInt16BE(m.range, 5);
  buf.writeUInt8(m.last ? 1 : 0, 7);
  buf.writeUInt32BE(m.records, 8);
  return buf;
}

export function decodeRangeMarker(buf: Buffer): RangeMarker {
  if (buf.length < 5) throw new SyncProtocolError(`range marker of ${buf.length} bytes`);
  const round = buf.readUInt32BE(0);
  const kind = buf.readUInt8(4);
  if (kind === 0) {
    if (buf.length < 7) throw new SyncProtocolError(`range start of ${buf.length} bytes`);
    const n = buf.readUInt16BE(5);
    need(buf, 7 + 2 * n, 'range start');
    return { kind: 'start', round, ranges: Array.from({ length: n }, (_, i) => buf.readUInt16BE(7 + 2 * i)) };
  }
  if (kind !== 1) throw new SyncProtocolError(`unknown range marker kind ${kind}`);
  need(buf, 12, 'range end');
  const last = buf.readUInt8(7);
  if (last > 1) throw new SyncProtocolError(`bad range end flag ${last}`);
  return { kind: 'end', round, range: buf.readUInt16BE(5), last: last === 1, records: buf.readUInt32BE(8) };
}
