// Encoding and decoding of ctnetlink (nfnetlink subsystem 1) messages: the wire format of
// include/uapi/linux/netfilter/nfnetlink_conntrack.h. Netlink headers and attribute headers are in
// host byte order (little-endian on every platform the agent runs on); attribute payloads are in
// network byte order, as the kernel's ctnetlink expects them.
import { IPV4_SYNC_RECORD_BYTES, type FlowTuple, type L4Proto, type TcpState } from '../engine.js';
import { bytesToIp, ipToBytes } from './ip-address.js';
import { parseIPv4 } from '../ipv4-tuple-table.js';

export const NETLINK_NETFILTER = 12;
export const NFNLGRP_CONNTRACK_NEW = 1;
export const NFNLGRP_CONNTRACK_UPDATE = 2;
export const NFNLGRP_CONNTRACK_DESTROY = 3;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

const NFNL_SUBSYS_CTNETLINK = 1;
export const IPCTNL_MSG_CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | 0;
export const IPCTNL_MSG_CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | 1;
export const IPCTNL_MSG_CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | 2;

const AF_UNSPEC = 0;
const AF_INET = 2;
const AF_INET6 = 10;
const NLA_F_NESTED = 0x8000;
export const NLA_TYPE_MASK = 0x3fff;

// enum ctattr_type
export const CTA_TUPLE_ORIG = 1;
export const CTA_TUPLE_REPLY = 2;
export const CTA_STATUS = 3;
export const CTA_PROTOINFO = 4;
const CTA_NAT_SRC = 6;
export const CTA_TIMEOUT = 7;
export const CTA_MARK = 8;
export const CTA_ID = 12;
const CTA_NAT_DST = 13;
// enum ctattr_tuple / ctattr_ip / ctattr_l4proto
export const CTA_TUPLE_IP = 1;
export const CTA_TUPLE_PROTO = 2;
export const CTA_IP_V4_SRC = 1;
export const CTA_IP_V4_DST = 2;
export const CTA_IP_V6_SRC = 3;
export const CTA_IP_V6_DST = 4;
export const CTA_PROTO_NUM = 1;
export const CTA_PROTO_SRC_PORT = 2;
export const CTA_PROTO_DST_PORT = 3;
export const CTA_PROTO_ICMP_ID = 4;
const CTA_PROTO_ICMP_TYPE = 5;
const CTA_PROTO_ICMP_CODE = 6;
export const CTA_PROTO_ICMPV6_ID = 7;
const CTA_PROTO_ICMPV6_TYPE = 8;
const CTA_PROTO_ICMPV6_CODE = 9;
// enum ctattr_protoinfo / ctattr_protoinfo_tcp
export const CTA_PROTOINFO_TCP = 1;
export const CTA_PROTOINFO_TCP_STATE = 1;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY = 5;
const IP_CT_TCP_FLAG_BE_LIBERAL = 0x08;
// enum ctattr_nat / ctattr_protonat
const CTA_NAT_V4_MINIP = 1;
const CTA_NAT_V4_MAXIP = 2;
const CTA_NAT_PROTO = 3;
const CTA_NAT_V6_MINIP = 4;
const CTA_NAT_V6_MAXIP = 5;
const CTA_PROTONAT_PORT_MIN = 1;
const CTA_PROTONAT_PORT_MAX = 2;

// enum ip_conntrack_status
export const IPS_EXPECTED = 1 << 0;
export const IPS_SEEN_REPLY = 1 << 1;
export const IPS_ASSURED = 1 << 2;
export const IPS_CONFIRMED = 1 << 3;
export const IPS_SRC_NAT = 1 << 4;
export const IPS_DST_NAT = 1 << 5;

const PROTO_NUMBERS: Record<L4Proto, number> = { tcp: 6, udp: 17, icmp: 1 };
export const IPPROTO_ICMPV6 = 58;

// enum tcp_conntrack, indexed by its value (SYN_SENT2, simultaneous open, reads as syn-sent).
const KERNEL_TCP_STATES: TcpState[] = [
  'close', 'syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close', 'syn-sent',
];
const TCP_STATE_NUMBERS: Record<TcpState, number> = {
  'syn-sent': 1, 'syn-recv': 2, established: 3, 'fin-wait': 4, 'close-wait': 5, 'last-ack': 6, 'time-wait': 7, close: 8,
};

/** A conntrack as the kernel reports it. */
export interface KernelConntrack {
  orig: FlowTuple;
  reply: FlowTuple;
  /** TCP state; for UDP/ICMP 'established' once a reply was seen, else 'syn-sent'. */
  state: TcpState;
  /** ip_conntrack_status bits. */
  status: number;
  /** Seconds left before the kernel expires it. */
  timeout: number;
  mark: number;
  /** Kernel id (stable for the conntrack's life). */
  id: number;
}

/** What to write into a kernel table: tuples, state, timeout and mark (NAT follows from the tuples). */
export interface ConntrackWrite {
  orig: FlowTuple;
  reply: FlowTuple;
  state: TcpState;
  timeout: number;
  mark?: number;
}

export interface ConntrackNotification {
  kind: 'new' | 'update' | 'destroy';
  conntrack: KernelConntrack;
  /** Netlink port of the socket whose request caused the event (0: the kernel itself, i.e. traffic or expiry). */
  portId: number;
}

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  portId: number;
  /** Payload after the 16-byte netlink header. */
  payload: Buffer;
}

/**
 * Grows as attributes are appended; nested attributes get their length patched when closed.
 * Everything is written in place (encoding is on the hot path of a bulk commit).
 */
export class MessageBuilder {
  private buffer: Buffer;
  private length = 0;
  private messageStart = 0;

  constructor(capacity = 512) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  get size(): number {
    return this.length;
  }

  /** Empties the builder, keeping its memory (for the next datagram). */
  reset(): this {
    this.length = 0;
    this.messageStart = 0;
    return this;
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + n));
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }

  /** Starts a message (netlink header + struct nfgenmsg) after the ones already written. */
  begin(type: number, flags: number, seq: number, family: number): this {
    this.reserve(20);
    const at = this.length;
    this.messageStart = at;
    this.buffer.writeUInt32LE(0, at); // patched by end()
    this.buffer.writeUInt16LE(type, at + 4);
    this.buffer.writeUInt16LE(flags, at + 6);
    this.buffer.writeUInt32LE(seq >>> 0, at + 8);
    this.buffer.writeUInt32LE(0, at + 12);
    this.buffer.writeUInt8(family, at + 16); // struct nfgenmsg
    this.buffer.writeUInt8(0, at + 17); // NFNETLINK_V0
    this.buffer.writeUInt16BE(0, at + 18); // res_id
    this.length = at + 20;
    return this;
  }

  /** Closes the current message (its length; attributes keep it 4-byte aligned). */
  end(): void {
    this.buffer.writeUInt32LE(this.length - this.messageStart, this.messageStart);
  }

  /** Writes an attribute header and returns the payload offset; the payload (len bytes) is zero-padded. */
  private open(type: number, len: number): number {
    const padded = (len + 3) & ~3;
    this.reserve(4 + padded);
    const at = this.length;
    this.buffer.writeUInt16LE(4 + len, at);
    this.buffer.writeUInt16LE(type, at + 2);
    for (let i = at + 4 + len; i < at + 4 + padded; i++) this.buffer[i] = 0; // at most 3 bytes: cheaper than fill()
    this.length += 4 + padded;
    return at + 4;
  }

  // open() may grow (replace) the buffer: take the offset first, then write into this.buffer.
  attribute(type: number, payload: Buffer): this {
    const at = this.open(type, payload.length);
    payload.copy(this.buffer, at);
    return this;
  }

  u8(type: number, value: number): this {
    const at = this.open(type, 1);
    this.buffer.writeUInt8(value, at);
    return this;
  }

  u16be(type: number, value: number): this {
    const at = this.open(type, 2);
    this.buffer.writeUInt16BE(value, at);
    return this;
  }

  u32be(type: number, value: number): this {
    const at = this.open(type, 4);
    this.buffer.writeUInt32BE(value >>> 0, at);
    return this;
  }

  /** An IPv4 address in dotted form, parsed and checked without an intermediate buffer, or an IPv6 one. */
  ip(type: number, address: string, v4: boolean): this {
    if (!v4) return this.attribute(type, ipToBytes(address));
    const at = this.open(type, 4);
    let octet = 0;
    let digits = 0;
    let index = 0;
    for (let i = 0; i < address.length; i++) {
      const c = address.charCodeAt(i);
      if (c === 46 && digits > 0 && index < 3) {
        this.buffer[at + index++] = octet;
        octet = 0;
        digits = 0;
      } else if (c >= 48 && c <= 57 && digits < 3) {
        octet = octet * 10 + c - 48;
        digits++;
        if (octet > 255) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
      } else {
        throw new Error(`not an IP address: ${JSON.stringify(address)}`);
      }
    }
    if (index !== 3 || digits === 0) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
    this.buffer[at + index] = octet;
    return this;
  }

  /**
   * Appends `n` bytes for the caller to fill and returns their offset in `bytes` (read `bytes`
   * after claiming: claiming may grow the buffer). The fixed-layout IPv4 encoder writes there.
   */
  claim(n: number): number {
    this.reserve(n);
    const at = this.length;
    this.length += n;
    return at;
  }

  get bytes(): Buffer {
    return this.buffer;
  }

  /** Opens a nested attribute; returns its start for close(). */
  openNest(type: number): number {
    this.reserve(4);
    const start = this.length;
    this.buffer.writeUInt16LE(type | NLA_F_NESTED, start + 2);
    this.length += 4;
    return start;
  }

  closeNest(start: number): void {
    this.buffer.writeUInt16LE(this.length - start, start);
  }

  nested(type: number, body: (b: this) => void): this {
    const start = this.openNest(type);
    body(this);
    this.closeNest(start);
    return this;
  }

  /** The messages written so far, as one datagram. */
  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function familyOf(address: unknown): 4 | 6 {
  if (typeof address !== 'string') throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  return address.includes(':') ? 6 : 4;
}

/** Validates a tuple; returns whether it is IPv4. */
function checkTuple(tuple: FlowTuple): boolean {
  if (!(tuple.proto in PROTO_NUMBERS)) throw new Error(`unknown protocol ${JSON.stringify(tuple.proto)}`);
  // The family by the text's shape; the address itself is checked as it is written.
  const family = familyOf(tuple.src);
  if (familyOf(tuple.dst) !== family) throw new Error(`mixed address families in ${tuple.src} -> ${tuple.dst}`);
  for (const port of [tuple.sport, tuple.dport]) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`port out of range: ${port}`);
  }
  return family === 4;
}

function writeTuple(b: MessageBuilder, type: number, tuple: FlowTuple, isReply: boolean, v4: boolean): void {
  const outer = b.openNest(type);
  const ip = b.openNest(CTA_TUPLE_IP);
  b.ip(v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, tuple.src, v4);
  b.ip(v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, tuple.dst, v4);
  b.closeNest(ip);
  const proto = b.openNest(CTA_TUPLE_PROTO);
  if (tuple.proto === 'icmp') {
    b.u8(CTA_PROTO_NUM, v4 ? PROTO_NUMBERS.icmp : IPPROTO_ICMPV6);
    // Echo request in the original direction, echo reply in the reply direction.
    b.u16be(v4 ? CTA_PROTO_ICMP_ID : CTA_PROTO_ICMPV6_ID, tuple.sport);
    b.u8(v4 ? CTA_PROTO_ICMP_TYPE : CTA_PROTO_ICMPV6_TYPE, v4 ? (isReply ? 0 : 8) : (isReply ? 129 : 128));
    b.u8(v4 ? CTA_PROTO_ICMP_CODE : CTA_PROTO_ICMPV6_CODE, 0);
  } else {
    b.u8(CTA_PROTO_NUM, PROTO_NUMBERS[tuple.proto]);
    b.u16be(CTA_PROTO_SRC_PORT, tuple.sport);
    b.u16be(CTA_PROTO_DST_PORT, tuple.dport);
  }
  b.closeNest(proto);
  b.closeNest(outer);
}

function writeNat(b: MessageBuilder, type: number, address: string, port: number, withPort: boolean, v4: boolean): void {
  b.nested(type, (n) => {
    n.ip(v4 ? CTA_NAT_V4_MINIP : CTA_NAT_V6_MINIP, address, v4);
    n.ip(v4 ? CTA_NAT_V4_MAXIP : CTA_NAT_V6_MAXIP, address, v4);
    if (withPort) {
      n.nested(CTA_NAT_PROTO, (p) => {
        p.u16be(CTA_PROTONAT_PORT_MIN, port);
        p.u16be(CTA_PROTONAT_PORT_MAX, port);
      });
    }
  });
}

/** Validates a write (bad input gets a clear error, not a kernel EINVAL); returns whether it is IPv4. */
function checkWrite(w: ConntrackWrite, withReply: boolean): boolean {
  const v4 = checkTuple(w.orig);
  if (withReply) {
    if (w.orig.proto !== w.reply.proto) throw new Error(`orig and reply protocols differ (${w.orig.proto}/${w.reply.proto})`);
    if (checkTuple(w.reply) !== v4) throw new Error('orig and reply address families differ');
  }
  if (!Number.isFinite(w.timeout) || w.timeout < 0) throw new Error(`bad timeout ${w.timeout}`);
  if (!(w.state in TCP_STATE_NUMBERS)) throw new Error(`unknown state ${JSON.stringify(w.state)}`);
  return v4;
}

/**
 * A create message: the original tuple, the NAT bindings that turn it into the reply tuple (as
 * conntrackd does; the kernel refuses NAT status bits set directly), status seen-reply+assured,
 * TCP state with window tracking relaxed (the backup never saw the windows), timeout and mark.
 */
const liberal = Buffer.from([IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL]); // struct nf_ct_tcp_flags

export function writeCreate(b: MessageBuilder, w: ConntrackWrite, seq: number, flags: number): void {
  if (!writeIpv4(b, w, seq, flags, true)) writeCreateByAttributes(b, w, seq, flags);
}

/** writeCreate attribute by attribute (any family and protocol); the IPv4 TCP/UDP fast path must match it byte for byte. */
export function writeCreateByAttributes(b: MessageBuilder, w: ConntrackWrite, seq: number, flags: number): void {
  const v4 = checkWrite(w, true);
  b.begin(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | flags, seq, v4 ? AF_INET : AF_INET6);
  writeTuple(b, CTA_TUPLE_ORIG, w.orig, false, v4);
  // The kernel requires a reply tuple to create, and sets NAT up from the *un-translated* one: the
  // NAT bindings below turn it into w.reply and set the SRC_NAT/DST_NAT status that makes the
  // kernel translate packets. (Given the translated reply tuple, it would see nothing to do.)
  // ICMP: both tuples carry the echo id in `sport`; the un-translated reply has the original's id.
  const ports = w.orig.proto !== 'icmp';
  const untranslated: FlowTuple = ports
    ? { proto: w.orig.proto, src: w.orig.dst, dst: w.orig.src, sport: w.orig.dport, dport: w.orig.sport }
    : { proto: w.orig.proto, src: w.orig.dst, dst: w.orig.src, sport: w.orig.sport, dport: 0 };
  writeTuple(b, CTA_TUPLE_REPLY, untranslated, true, v4);
  // A translated ICMP id is bound like a port (the kernel's NAT range of ICMP is an id range);
  // unbound, the kernel would keep or pick one, not necessarily the master's.
  const idChanged = !ports && w.reply.sport !== w.orig.sport;
  // Source NAT: the server answers to reply.dst:reply.dport instead of orig.src:orig.sport.
  const snat = w.reply.dst !== w.orig.src || (ports && w.reply.dport !== w.orig.sport);
  if (snat || (idChanged && w.reply.src === w.orig.dst)) {
    writeNat(b, CTA_NAT_SRC, w.reply.dst, ports ? w.reply.dport : w.reply.sport, ports || idChanged, v4);
  }
  // Destination NAT: the answer comes from reply.src:reply.sport instead of orig.dst:orig.dport.
  if (w.reply.src !== w.orig.dst || (ports && w.reply.sport !== w.orig.dport)) {
    // (ICMP: a changed id rides on the source NAT when there is one)
    writeNat(b, CTA_NAT_DST, w.reply.src, w.reply.sport, ports || (idChanged && !snat), v4);
  }
  writeState(b, w);
  b.end();
}

export function encodeCreate(w: ConntrackWrite, seq: number, flags: number): Buffer {
  const b = new MessageBuilder();
  writeCreate(b, w, seq, flags);
  return b.finish();
}

/** An update of an existing conntrack (found by its original tuple): state, timeout and mark only. */
export function writeUpdate(b: MessageBuilder, w: ConntrackWrite, seq: number, flags: number): void {
  if (!writeIpv4(b, w, seq, flags, false)) writeUpdateByAttributes(b, w, seq, flags);
}

/** writeUpdate attribute by attribute (any family and protocol). */
export function writeUpdateByAttributes(b: MessageBuilder, w: ConntrackWrite, seq: number, flags: number): void {
  const v4 = checkWrite(w, false);
  b.begin(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | flags, seq, v4 ? AF_INET : AF_INET6);
  writeTuple(b, CTA_TUPLE_ORIG, w.orig, false, v4);
  writeState(b, w);
  b.end();
}

function writeState(b: MessageBuilder, w: ConntrackWrite): void {
  const replied = w.state !== 'syn-sent';
  // CONFIRMED must be set: the kernel refuses (EBUSY) a status that would clear it, as libnetfilter_conntrack knows.
  b.u32be(CTA_STATUS, IPS_CONFIRMED | (replied ? IPS_SEEN_REPLY | IPS_ASSURED : 0));
  b.u32be(CTA_TIMEOUT, Math.round(w.timeout));
  if (w.mark !== undefined) b.u32be(CTA_MARK, w.mark);
  if (w.orig.proto === 'tcp') {
    b.nested(CTA_PROTOINFO, (p) => p.nested(CTA_PROTOINFO_TCP, (t) => {
      t.u8(CTA_PROTOINFO_TCP_STATE, TCP_STATE_NUMBERS[w.state]);
      t.attribute(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, liberal);
      t.attribute(CTA_PROTOINFO_TCP_FLAGS_REPLY, liberal);
    }));
  }
}

// ---- The IPv4 TCP/UDP fast path ----
// Synced conntracks are nearly all IPv4 TCP/UDP, and their create messages have a fixed layout: the
// encoder writes it in one pass with numeric addresses (each parsed once), no nesting bookkeeping
// and no validation objects. It gives up (returns false) on anything else, and the attribute-by-
// attribute encoder above handles that (and throws its precise errors for bad input).

const TUPLE_V4_BYTES = 52;
const NAT_V4_BYTES = 40;
const PROTOINFO_TCP_BYTES = 32;

function isPort(p: unknown): p is number {
  return typeof p === 'number' && (p & 0xffff) === p;
}

function attrHeader(b: Buffer, at: number, len: number, type: number): void {
  b[at] = len & 255;
  b[at + 1] = len >>> 8;
  b[at + 2] = type & 255;
  b[at + 3] = type >>> 8;
}

function be32Attr(b: Buffer, at: number, type: number, value: number): void {
  attrHeader(b, at, 8, type);
  b[at + 4] = (value >>> 24) & 255;
  b[at + 5] = (value >>> 16) & 255;
  b[at + 6] = (value >>> 8) & 255;
  b[at + 7] = value & 255;
}

function be16Attr(b: Buffer, at: number, type: number, value: number): void {
  attrHeader(b, at, 6, type);
  b[at + 4] = value >>> 8;
  b[at + 5] = value & 255;
  b[at + 6] = 0;
  b[at + 7] = 0;
}

function u8Attr(b: Buffer, at: number, type: number, value: number): void {
  attrHeader(b, at, 5, type);
  b[at + 4] = value;
  b[at + 5] = 0;
  b[at + 6] = 0;
  b[at + 7] = 0;
}

function tupleV4(b: Buffer, at: number, type: number, proto: number, src: number, dst: number, sport: number, dport: number): number {
  attrHeader(b, at, TUPLE_V4_BYTES, type | NLA_F_NESTED);
  attrHeader(b, at + 4, 20, CTA_TUPLE_IP | NLA_F_NESTED);
  be32Attr(b, at + 8, CTA_IP_V4_SRC, src);
  be32Attr(b, at + 16, CTA_IP_V4_DST, dst);
  attrHeader(b, at + 24, 28, CTA_TUPLE_PROTO | NLA_F_NESTED);
  u8Attr(b, at + 28, CTA_PROTO_NUM, proto);
  be16Attr(b, at + 36, CTA_PROTO_SRC_PORT, sport);
  be16Attr(b, at + 44, CTA_PROTO_DST_PORT, dport);
  return at + TUPLE_V4_BYTES;
}

function natV4(b: Buffer, at: number, type: number, address: number, port: number): number {
  attrHeader(b, at, NAT_V4_BYTES, type | NLA_F_NESTED);
  be32Attr(b, at + 4, CTA_NAT_V4_MINIP, address);
  be32Attr(b, at + 12, CTA_NAT_V4_MAXIP, address);
  attrHeader(b, at + 20, 20, CTA_NAT_PROTO | NLA_F_NESTED);
  be16Attr(b, at + 24, CTA_PROTONAT_PORT_MIN, port);
  be16Attr(b, at + 32, CTA_PROTONAT_PORT_MAX, port);
  return at + NAT_V4_BYTES;
}

/**
 * Writes a create (withReply) or update of an IPv4 TCP/UDP conntrack in the layout writeCreate /
 * writeUpdate produce; returns false, having written nothing, for anything else.
 */
function writeIpv4(mb: MessageBuilder, w: ConntrackWrite, seq: number, flags: number, withReply: boolean): boolean {
  const { orig, reply } = w;
  const proto = orig.proto === 'tcp' ? 6 : orig.proto === 'udp' ? 17 : 0;
  if (proto === 0 || typeof orig.src !== 'string' || typeof orig.dst !== 'string') return false;
  if (!isPort(orig.sport) || !isPort(orig.dport)) return false;
  const state = TCP_STATE_NUMBERS[w.state];
  if (!Object.hasOwn(TCP_STATE_NUMBERS, w.state) || !Number.isFinite(w.timeout) || w.timeout < 0) return false;
  const os = parseIPv4(orig.src);
  const od = parseIPv4(orig.dst);
  if (os < 0 || od < 0) return false;
  let snat = false;
  let dnat = false;
  let rs = 0;
  let rd = 0;
  if (withReply) {
    if (reply.proto !== orig.proto || typeof reply.src !== 'string' || typeof reply.dst !== 'string') return false;
    if (!isPort(reply.sport) || !isPort(reply.dport)) return false;
    rs = parseIPv4(reply.src);
    rd = parseIPv4(reply.dst);
    if (rs < 0 || rd < 0) return false;
    // As in writeCreateByAttributes, which compares the texts: a different spelling of the same address is NAT too.
    snat = reply.dst !== orig.src || reply.dport !== orig.sport;
    dnat = reply.src !== orig.dst || reply.sport !== orig.dport;
  }
  writeIpv4Message(mb, seq, flags, withReply, proto, os, od, orig.sport, orig.dport, snat ? rd : -1, snat ? reply.dport : 0,
    dnat ? rs : -1, dnat ? reply.sport : 0, state, w.state !== 'syn-sent', Math.round(w.timeout) >>> 0, w.mark);
  return true;
}

/**
 * The fixed IPv4 TCP/UDP layout, from numbers: original tuple (os, od, sport, dport); with
 * withReply the un-translated reply tuple and, when snatAddress / dnatAddress is >= 0, the NAT
 * bindings; status, timeout, mark when defined, TCP protoinfo for proto 6.
 */
function writeIpv4Message(
  mb: MessageBuilder, seq: number, flags: number, withReply: boolean, proto: number, os: number, od: number, sport: number,
  dport: number, snatAddress: number, snatPort: number, dnatAddress: number, dnatPort: number, state: number, replied: boolean,
  timeout: number, mark: number | undefined,
): void {
  const snat = withReply && snatAddress >= 0;
  const dnat = withReply && dnatAddress >= 0;
  const tcp = proto === 6;
  const hasMark = mark !== undefined;
  const length = 20 + TUPLE_V4_BYTES + (withReply ? TUPLE_V4_BYTES : 0) + (snat ? NAT_V4_BYTES : 0) + (dnat ? NAT_V4_BYTES : 0)
    + 16 + (hasMark ? 8 : 0) + (tcp ? PROTOINFO_TCP_BYTES : 0);
  const start = mb.claim(length);
  const b = mb.bytes;
  // struct nlmsghdr (host order) + struct nfgenmsg
  b.writeUInt32LE(length, start);
  b.writeUInt16LE(IPCTNL_MSG_CT_NEW, start + 4);
  b.writeUInt16LE((NLM_F_REQUEST | (withReply ? NLM_F_CREATE | NLM_F_EXCL : 0) | flags) & 0xffff, start + 6);
  b.writeUInt32LE(seq >>> 0, start + 8);
  b.writeUInt32LE(0, start + 12);
  b[start + 16] = AF_INET;
  b[start + 17] = 0;
  b[start + 18] = 0;
  b[start + 19] = 0;
  let at = tupleV4(b, start + 20, CTA_TUPLE_ORIG, proto, os, od, sport, dport);
  if (withReply) {
    at = tupleV4(b, at, CTA_TUPLE_REPLY, proto, od, os, dport, sport); // un-translated, see writeCreateByAttributes
    if (snat) at = natV4(b, at, CTA_NAT_SRC, snatAddress, snatPort);
    if (dnat) at = natV4(b, at, CTA_NAT_DST, dnatAddress, dnatPort);
  }
  be32Attr(b, at, CTA_STATUS, IPS_CONFIRMED | (replied ? IPS_SEEN_REPLY | IPS_ASSURED : 0));
  be32Attr(b, at + 8, CTA_TIMEOUT, timeout);
  at += 16;
  if (hasMark) {
    be32Attr(b, at, CTA_MARK, mark >>> 0);
    at += 8;
  }
  if (tcp) {
    attrHeader(b, at, PROTOINFO_TCP_BYTES, CTA_PROTOINFO | NLA_F_NESTED);
    attrHeader(b, at + 4, 28, CTA_PROTOINFO_TCP | NLA_F_NESTED);
    u8Attr(b, at + 8, CTA_PROTOINFO_TCP_STATE, state);
    attrHeader(b, at + 16, 6, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL);
    b[at + 20] = IP_CT_TCP_FLAG_BE_LIBERAL;
    b[at + 21] = IP_CT_TCP_FLAG_BE_LIBERAL;
    b[at + 22] = 0;
    b[at + 23] = 0;
    attrHeader(b, at + 24, 6, CTA_PROTOINFO_TCP_FLAGS_REPLY);
    b[at + 28] = IP_CT_TCP_FLAG_BE_LIBERAL;
    b[at + 29] = IP_CT_TCP_FLAG_BE_LIBERAL;
    b[at + 30] = 0;
    b[at + 31] = 0;
  }
}

// ---- Packed IPv4 sync records (DataplaneEngine.upsertIPv4Records) ----
// The sync frame's records go to the kernel without an object per conntrack: the message is written
// from the record's bytes, in the layout writeCreate / writeUpdate give the same conntrack as an
// object (test/linux/packed-writes.test.ts compares both in the kernel).

/** Bytes of one packed record. */
export const IPV4_RECORD_BYTES = IPV4_SYNC_RECORD_BYTES;
const RECORD_PROTOS = [6, 17, 1];
const RECORD_PROTO_NAMES: L4Proto[] = ['tcp', 'udp', 'icmp'];
/** TcpState order of the records (syn-sent ... close), as TcpState values. */
const RECORD_STATES: TcpState[] = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'];

/** How the engine writes a record: the kernel timeout (undefined: the record's own) and the mark from the record's timeout. */
export interface RecordWriteOptions {
  /** Timeout written instead of the record's (a backup holds synced conntracks without expiry). */
  timeout?: number;
  /** The mark written, from the record's timeout. */
  mark: (recordTimeout: number) => number;
}

function u32At(r: Uint8Array, at: number): number {
  return ((r[at] as number) * 0x1000000) + (((r[at + 1] as number) << 16) | ((r[at + 2] as number) << 8) | (r[at + 3] as number));
}

function u16At(r: Uint8Array, at: number): number {
  return ((r[at] as number) << 8) | (r[at + 1] as number);
}

function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Record i as the ConntrackWrite the object path would write (for ICMP, and for tests). */
export function recordWrite(records: Uint8Array, i: number, options: RecordWriteOptions): ConntrackWrite {
  const o = i * IPV4_RECORD_BYTES;
  const proto = RECORD_PROTO_NAMES[(records[o] as number) & 0x03];
  const state = RECORD_STATES[records[o + 1] as number];
  if (proto === undefined || state === undefined) throw new Error(`bad packed IPv4 record ${i}`);
  const recordTimeout = u32At(records, o + 2);
  return {
    orig: { proto, src: ipv4Text(u32At(records, o + 10)), dst: ipv4Text(u32At(records, o + 14)), sport: u16At(records, o + 18), dport: u16At(records, o + 20) },
    reply: { proto, src: ipv4Text(u32At(records, o + 22)), dst: ipv4Text(u32At(records, o + 26)), sport: u16At(records, o + 30), dport: u16At(records, o + 32) },
    state,
    timeout: options.timeout ?? recordTimeout,
    mark: options.mark(recordTimeout),
  };
}

/** The original tuple of record i, as the object path keys it. */
export function recordOrig(records: Uint8Array, i: number): FlowTuple {
  const o = i * IPV4_RECORD_BYTES;
  const proto = RECORD_PROTO_NAMES[(records[o] as number) & 0x03] ?? 'tcp';
  return { proto, src: ipv4Text(u32At(records, o + 10)), dst: ipv4Text(u32At(records, o + 14)), sport: u16At(records, o + 18), dport: u16At(records, o + 20) };
}

/**
 * The original tuple of record i as numbers, into `out`: [protocol index (0 tcp, 1 udp, 2 icmp),
 * source, destination, source port, destination port] (what recordOrig gives, without an object
 * or address text: the backup's live counts per synced record).
 */
export function recordOrigInto(records: Uint8Array, i: number, out: Uint32Array): void {
  const o = i * IPV4_RECORD_BYTES;
  out[0] = (records[o] as number) & 0x03;
  out[1] = u32At(records, o + 10);
  out[2] = u32At(records, o + 14);
  out[3] = u16At(records, o + 18);
  out[4] = u16At(records, o + 20);
}

/** The TCP state of record i (UDP/ICMP records carry 'established' or 'syn-sent' as entries do). */
export function recordState(records: Uint8Array, i: number): TcpState {
  return RECORD_STATES[records[i * IPV4_RECORD_BYTES + 1] as number] ?? 'close';
}

function writeRecord(mb: MessageBuilder, records: Uint8Array, i: number, seq: number, flags: number, withReply: boolean, options: RecordWriteOptions): void {
  const o = i * IPV4_RECORD_BYTES;
  const proto = RECORD_PROTOS[(records[o] as number) & 0x03];
  const stateIndex = records[o + 1] as number;
  if (proto === undefined || stateIndex >= RECORD_STATES.length) throw new Error(`bad packed IPv4 record ${i}`);
  if (proto === 1) {
    // ICMP has no fixed layout here: the attribute encoder, from the same values.
    const w = recordWrite(records, i, options);
    if (withReply) writeCreateByAttributes(mb, w, seq, flags); else writeUpdateByAttributes(mb, w, seq, flags);
    return;
  }
  const recordTimeout = u32At(records, o + 2);
  const os = u32At(records, o + 10);
  const od = u32At(records, o + 14);
  const sport = u16At(records, o + 18);
  const dport = u16At(records, o + 20);
  let snat = -1;
  let snatPort = 0;
  let dnat = -1;
  let dnatPort = 0;
  if (withReply) {
    const rs = u32At(records, o + 22);
    const rd = u32At(records, o + 26);
    const rsport = u16At(records, o + 30);
    const rdport = u16At(records, o + 32);
    // Source NAT: the server answers to reply.dst:reply.dport instead of orig.src:orig.sport; destination NAT likewise.
    if (rd !== os || rdport !== sport) {
      snat = rd;
      snatPort = rdport;
    }
    if (rs !== od || rsport !== dport) {
      dnat = rs;
      dnatPort = rsport;
    }
  }
  const timeout = options.timeout ?? recordTimeout;
  writeIpv4Message(mb, seq, flags, withReply, proto, os, od, sport, dport, snat, snatPort, dnat, dnatPort, stateIndex + 1,
    stateIndex !== 0, Math.round(timeout) >>> 0, options.mark(recordTimeout));
}

/** A create of packed record i (the message writeCreate writes for recordWrite(records, i, options)). */
export function writeRecordCreate(mb: MessageBuilder, records: Uint8Array, i: number, seq: number, flags: number, options: RecordWriteOptions): void {
  writeRecord(mb, records, i, seq, flags, true, options);
}

/** An update of packed record i (the message writeUpdate writes for recordWrite(records, i, options)). */
export function writeRecordUpdate(mb: MessageBuilder, records: Uint8Array, i: number, seq: number, flags: number, options: RecordWriteOptions): void {
  writeRecord(mb, records, i, seq, flags, false, options);
}

export function writeDelete(b: MessageBuilder, orig: FlowTuple, seq: number, flags: number): void {
  const v4 = checkTuple(orig);
  b.begin(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | flags, seq, v4 ? AF_INET : AF_INET6);
  writeTuple(b, CTA_TUPLE_ORIG, orig, false, v4);
  b.end();
}

/** A dump request of the whole table (both address families). */
export function encodeDumpRequest(seq: number): Buffer {
  const b = new MessageBuilder(32).begin(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, AF_UNSPEC);
  b.end();
  return b.finish();
}

/** Splits a datagram into netlink messages. */
export function splitMessages(datagram: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + 16 <= datagram.length) {
    const len = datagram.readUInt32LE(off);
    if (len < 16 || off + len > datagram.length) throw new Error(`malformed netlink message (length ${len} at ${off})`);
    out.push({
      type: datagram.readUInt16LE(off + 4),
      flags: datagram.readUInt16LE(off + 6),
      seq: datagram.readUInt32LE(off + 8),
      portId: datagram.readUInt32LE(off + 12),
      payload: datagram.subarray(off + 16, off + len),
    });
    off += (len + 3) & ~3;
  }
  return out;
}

/** The errno of an NLMSG_ERROR message (0 for an acknowledgement) and the seq it answers. */
export function decodeError(msg: NetlinkMessage): { errno: number; seq: number } {
  // The kernel answers with the request's seq in the header (and echoes the request after the errno).
  return { errno: -msg.payload.readInt32LE(0), seq: msg.seq };
}

function parseAttributes(buf: Buffer): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    attrs.set(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return attrs;
}

function readTuple(buf: Buffer): FlowTuple {
  const t = parseAttributes(buf);
  const ip = parseAttributes(t.get(CTA_TUPLE_IP) ?? Buffer.alloc(0));
  const proto = parseAttributes(t.get(CTA_TUPLE_PROTO) ?? Buffer.alloc(0));
  const src = ip.get(CTA_IP_V4_SRC) ?? ip.get(CTA_IP_V6_SRC);
  const dst = ip.get(CTA_IP_V4_DST) ?? ip.get(CTA_IP_V6_DST);
  if (!src || !dst) throw new Error('conntrack tuple without addresses');
  const num = proto.get(CTA_PROTO_NUM)?.readUInt8(0);
  const tuple: FlowTuple = { proto: 'tcp', src: bytesToIp(src), dst: bytesToIp(dst), sport: 0, dport: 0 };
  if (num === 6 || num === 17) {
    tuple.proto = num === 6 ? 'tcp' : 'udp';
    tuple.sport = proto.get(CTA_PROTO_SRC_PORT)?.readUInt16BE(0) ?? 0;
    tuple.dport = proto.get(CTA_PROTO_DST_PORT)?.readUInt16BE(0) ?? 0;
  } else if (num === 1 || num === IPPROTO_ICMPV6) {
    tuple.proto = 'icmp';
    tuple.sport = (proto.get(CTA_PROTO_ICMP_ID) ?? proto.get(CTA_PROTO_ICMPV6_ID))?.readUInt16BE(0) ?? 0;
  } else {
    throw new UnsupportedProtocolError(num ?? -1);
  }
  return tuple;
}

/** A conntrack of a protocol the engine does not handle (GRE, SCTP...): skipped by readers. */
export class UnsupportedProtocolError extends Error {
  constructor(readonly protocol: number) {
    super(`unsupported layer-4 protocol ${protocol}`);
  }
}

/** Decodes the payload of an IPCTNL_MSG_CT_NEW / _DELETE message (dump entry or event). */

/**
 * The state tandem gives a conntrack: for TCP the kernel's TCP state (`close` when it has none),
 * for the other protocols established once a reply was seen. Both decoders use it.
 */
export function conntrackState(proto: string, status: number, tcpState: number | undefined): TcpState {
  if (proto !== 'tcp') return status & IPS_SEEN_REPLY ? 'established' : 'syn-sent';
  return tcpState !== undefined ? (KERNEL_TCP_STATES[tcpState] ?? 'close') : 'close';
}
export function decodeConntrack(msg: NetlinkMessage): KernelConntrack {
  const attrs = parseAttributes(msg.payload.subarray(4)); // after struct nfgenmsg
  const origAttr = attrs.get(CTA_TUPLE_ORIG);
  const replyAttr = attrs.get(CTA_TUPLE_REPLY);
  if (!origAttr || !replyAttr) throw new Error('conntrack message without tuples');
  const orig = readTuple(origAttr);
  const reply = readTuple(replyAttr);
  const status = attrs.get(CTA_STATUS)?.readUInt32BE(0) ?? 0;
  let tcpState: number | undefined;
  if (orig.proto === 'tcp') {
    const tcp = parseAttributes(parseAttributes(attrs.get(CTA_PROTOINFO) ?? Buffer.alloc(0)).get(CTA_PROTOINFO_TCP) ?? Buffer.alloc(0));
    tcpState = tcp.get(CTA_PROTOINFO_TCP_STATE)?.readUInt8(0);
  }
  const state = conntrackState(orig.proto, status, tcpState);
  return {
    orig,
    reply,
    state,
    status,
    timeout: attrs.get(CTA_TIMEOUT)?.readUInt32BE(0) ?? 0,
    mark: attrs.get(CTA_MARK)?.readUInt32BE(0) ?? 0,
    id: attrs.get(CTA_ID)?.readUInt32BE(0) ?? 0,
  };
}

/** An event message's kind: new carries CREATE|EXCL, update is a plain NEW, destroy is DELETE. */
export function eventKind(msg: NetlinkMessage): 'new' | 'update' | 'destroy' | undefined {
  if (msg.type === IPCTNL_MSG_CT_DELETE) return 'destroy';
  if (msg.type !== IPCTNL_MSG_CT_NEW) return undefined;
  return msg.flags & (NLM_F_CREATE | NLM_F_EXCL) ? 'new' : 'update';
}
