// Packed packets from the main thread to a worker: 16 bytes each (IPv4 addresses as numbers,
// others in a string side table), sent in a transferred ArrayBuffer instead of cloned objects.
import { checkedAddressRef, type AddressRef } from './address-table.js';
import { PROTO_BY_NAME } from './entry-codec.js';
import type { SoftPacket } from './vrf-dataplane.js';

export const PACKET_BYTES = 16;
const B_REPLY = 1, B_ALG = 2, B_SRC_TEXT = 4, B_DST_TEXT = 8;

export interface PackedPackets {
  buf: ArrayBuffer;
  count: number;
  strings: string[];
}

export function packPackets(packets: SoftPacket[], indices?: number[]): PackedPackets {
  const count = indices ? indices.length : packets.length;
  const buf = new ArrayBuffer(count * PACKET_BYTES);
  const v = new DataView(buf);
  const strings: string[] = [];
  const stringIndex = new Map<string, number>();
  const str = (s: string): number => {
    let i = stringIndex.get(s);
    if (i === undefined) {
      i = strings.length;
      strings.push(s);
      stringIndex.set(s, i);
    }
    return i;
  };
  for (let k = 0; k < count; k++) {
    const p = packets[indices ? (indices[k] as number) : k] as SoftPacket;
    const off = k * PACKET_BYTES;
    const proto = PROTO_BY_NAME[p.flow.proto];
    if (proto === undefined) throw new TypeError(`packet ${k}: unknown protocol ${JSON.stringify(p.flow.proto)}`);
    const src = checkedAddressRef(p.flow.src, `packet ${k} source`), dst = checkedAddressRef(p.flow.dst, `packet ${k} destination`);
    if (!(p.flow.sport >= 0 && p.flow.sport <= 65535 && p.flow.dport >= 0 && p.flow.dport <= 65535)) {
      throw new TypeError(`packet ${k}: ports must be 0..65535, got ${p.flow.sport} and ${p.flow.dport}`);
    }
    let bits = (p.reply ? B_REPLY : 0) | (p.alg ? B_ALG : 0);
    if (typeof src === 'number') v.setUint32(off + 4, src, true);
    else { bits |= B_SRC_TEXT; v.setUint32(off + 4, str(src), true); }
    if (typeof dst === 'number') v.setUint32(off + 8, dst, true);
    else { bits |= B_DST_TEXT; v.setUint32(off + 8, str(dst), true); }
    v.setUint8(off, proto);
    v.setUint8(off + 1, p.flags ?? 0);
    v.setUint8(off + 2, bits);
    v.setUint16(off + 12, p.flow.sport, true);
    v.setUint16(off + 14, p.flow.dport, true);
  }
  return { buf, count, strings };
}

export class PacketReader {
  private readonly v: DataView;
  constructor(private readonly p: PackedPackets) {
    this.v = new DataView(p.buf);
  }
  get count(): number { return this.p.count; }
  proto(i: number): number { return this.v.getUint8(i * PACKET_BYTES); }
  flags(i: number): number { return this.v.getUint8(i * PACKET_BYTES + 1); }
  reply(i: number): boolean { return !!(this.v.getUint8(i * PACKET_BYTES + 2) & B_REPLY); }
  alg(i: number): boolean { return !!(this.v.getUint8(i * PACKET_BYTES + 2) & B_ALG); }
  src(i: number): AddressRef {
    const raw = this.v.getUint32(i * PACKET_BYTES + 4, true);
    return this.v.getUint8(i * PACKET_BYTES + 2) & B_SRC_TEXT ? (this.p.strings[raw] as string) : raw;
  }
  dst(i: number): AddressRef {
    const raw = this.v.getUint32(i * PACKET_BYTES + 8, true);
    return this.v.getUint8(i * PACKET_BYTES + 2) & B_DST_TEXT ? (this.p.strings[raw] as string) : raw;
  }
  sport(i: number): number { return this.v.getUint16(i * PACKET_BYTES + 12, true); }
  dport(i: number): number { return this.v.getUint16(i * PACKET_BYTES + 14, true); }
}
