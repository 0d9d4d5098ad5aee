// Reads the packed IPv4 sync records of DataplaneEngine.upsertIPv4Records (fastpath/engine.ts)
// with the accessors of PackedReader, so the worker writes them into its table as they arrived
// from the peer: no object per conntrack on either thread.
import { IPV4_SYNC_RECORD_BYTES } from '../engine.js';
import { PROTO_BY_NAME, R_ACTIVITY_SYNCED, R_SYNCED, type PackedRecordSource } from './entry-codec.js';

const PROTO_BY_INDEX = [PROTO_BY_NAME.tcp, PROTO_BY_NAME.udp, PROTO_BY_NAME.icmp];
const WIRE_ACTIVITY = 0x08;
// Offsets inside a record.
const O_FLAGS = 0, O_STATE = 1, O_TIMEOUT = 2, O_AGE = 6, O_ORIG = 10, O_REPLY = 22;

export class IPv4RecordReader implements PackedRecordSource {
  private readonly view: DataView;
  readonly count: number;

  /** `now`: this engine's clock, the time the records are written (activity ages count back from it). */
  constructor(buf: ArrayBuffer, private readonly now: number) {
    this.view = new DataView(buf);
    this.count = Math.floor(buf.byteLength / IPV4_SYNC_RECORD_BYTES);
  }

  /** Protocol number (6, 17, 1), or 0 for an unknown index (the record is then refused). */
  proto(i: number): number {
    return PROTO_BY_INDEX[this.view.getUint8(i * IPV4_SYNC_RECORD_BYTES + O_FLAGS) & 0x03] ?? 0;
  }

  state(i: number): number {
    return this.view.getUint8(i * IPV4_SYNC_RECORD_BYTES + O_STATE);
  }

  flags(i: number): number {
    return R_SYNCED | (this.view.getUint8(i * IPV4_SYNC_RECORD_BYTES + O_FLAGS) & WIRE_ACTIVITY ? R_ACTIVITY_SYNCED : 0);
  }

  /** Address k (0 orig src, 1 orig dst, 2 reply src, 3 reply dst): the IPv4 value. */
  addr(i: number, k: number): number {
    return this.view.getUint32(i * IPV4_SYNC_RECORD_BYTES + (k < 2 ? O_ORIG + 4 * k : O_REPLY + 4 * (k - 2)));
  }

  /** Port k (0 orig sport, 1 orig dport, 2 reply sport, 3 reply dport). */
  port(i: number, k: number): number {
    return this.view.getUint16(i * IPV4_SYNC_RECORD_BYTES + (k < 2 ? O_ORIG + 8 + 2 * k : O_REPLY + 8 + 2 * (k - 2)));
  }

  timeout(i: number): number {
    return this.view.getUint32(i * IPV4_SYNC_RECORD_BYTES + O_TIMEOUT);
  }

  establishedAt(_i: number): number {
    return this.now;
  }

  lastActivity(i: number): number {
    const off = i * IPV4_SYNC_RECORD_BYTES;
    return this.view.getUint8(off + O_FLAGS) & WIRE_ACTIVITY ? this.now - this.view.getUint32(off + O_AGE) : this.now;
  }

  virtualService(_i: number): undefined {
    return undefined;
  }
}
