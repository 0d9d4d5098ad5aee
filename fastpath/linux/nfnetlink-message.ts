// The nfnetlink framing both nf_tables sockets of the linux engine speak (nft-counter-socket.ts
// reads counters, guard-removal-socket.ts deletes the backup guard): netlink attributes and a
// message with its struct nfgenmsg. ctnetlink's own codec (ctnetlink-codec.ts) has its own.

export const NFNL_SUBSYS_NFTABLES = 10;
export const NFPROTO_INET = 1;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

/** One netlink attribute, padded to 4 bytes. */
export function nlAttribute(type: number, value: Buffer): Buffer {
  const len = 4 + value.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, 4);
  return out;
}

/** The attributes of a buffer by type (nested flag cleared); stops at the first malformed one. */
export function nlAttributes(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let off = 0; off + 4 <= buf.length;) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    out.set(buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

/** A netlink message with struct nfgenmsg (family, version 0, res_id big endian), then `attrs`. */
export function nfnlMessage(type: number, flags: number, seq: number, family: number, resId: number, attrs: Buffer): Buffer {
  const msg = Buffer.alloc(20 + attrs.length);
  msg.writeUInt32LE(msg.length, 0);
  msg.writeUInt16LE(type, 4);
  msg.writeUInt16LE(flags, 6);
  msg.writeUInt32LE(seq >>> 0, 8);
  msg.writeUInt32LE(0, 12);
  msg.writeUInt8(family, 16);
  msg.writeUInt16BE(resId, 18);
  attrs.copy(msg, 20);
  return msg;
}
