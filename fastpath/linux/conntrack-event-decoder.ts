// Decoder of the conntrack event datagrams the event reader receives (conntrack-events.ts): the
// same result as splitMessages + eventKind + decodeConntrack of ctnetlink-codec.ts, read at offsets
// of the datagram, without a Buffer view and a Map per attribute nest (about ten of each per event).
// Reading and decoding events is the stage that sets how soon a burst of new conntracks reaches the
// peer (docs/ha-sync.md); test/linux/conntrack-event-decoder.test.ts holds it equal to the general
// decoder on every shape of message.
import type { FlowTuple, TcpState } from '../engine.js';
import { bytesToIp } from './ip-address.js';
// Kernel ABI (include/uapi/linux/netfilter/nfnetlink_conntrack.h): the attribute numbers are ctnetlink-codec.ts's.
import {
  CTA_ID, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_MARK, CTA_PROTO_DST_PORT, CTA_PROTO_ICMP_ID,
  CTA_PROTO_ICMPV6_ID, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE, CTA_STATUS,
  CTA_TIMEOUT, CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW,
  IPPROTO_ICMPV6, IPS_SEEN_REPLY, NLA_TYPE_MASK, NLM_F_CREATE, NLM_F_EXCL, UnsupportedProtocolError, type KernelConntrack,
} from './ctnetlink-codec.js';

// enum tcp_conntrack, indexed by its value (SYN_SENT2 reads as syn-sent), as in ctnetlink-codec.ts.
const KERNEL_TCP_STATES: TcpState[] = [
  'close', 'syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close', 'syn-sent',
];

/** One decoded event (ConntrackNotification without the wrapper). */
export interface DecodedEvent {
  kind: 'new' | 'update' | 'destroy';
  conntrack: KernelConntrack;
  portId: number;
}

/**
 * Attributes of a nest are found into two arrays indexed by type: where the value starts and ends
 * in the datagram, -1 when absent; a later copy of an attribute replaces an earlier one (as the
 * Map of parseAttributes does). Types from MAX_TYPE up are never read.
 */
const MAX_TYPE = 16;

/** Attributes of the nest buf[from, to) whose type is below MAX_TYPE, into `s`/`e` (reset first). */
function findAttributes(buf: Buffer, from: number, to: number, s: Int32Array, e: Int32Array): void {
  s.fill(-1);
  let off = from;
  while (off + 4 <= to) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > to) break; // as parseAttributes: a malformed attribute ends the nest
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (type < MAX_TYPE) {
      s[type] = off + 4;
      e[type] = off + len;
    }
    off += (len + 3) & ~3;
  }
}

// Scratch for the nests under a tuple (nests are read one level at a time: no overlap in use).
const ts = new Int32Array(MAX_TYPE), te = new Int32Array(MAX_TYPE);
const ns = new Int32Array(MAX_TYPE), ne = new Int32Array(MAX_TYPE);

function u8(buf: Buffer, s: number, e: number): number {
  if (e - s < 1) throw new RangeError('attribute too short');
  return buf[s] as number;
}

function u16be(buf: Buffer, s: number, e: number): number {
  if (e - s < 2) throw new RangeError('attribute too short');
  return buf.readUInt16BE(s);
}

function u32be(buf: Buffer, s: number, e: number): number {
  if (e - s < 4) throw new RangeError('attribute too short');
  return buf.readUInt32BE(s);
}

function address(buf: Buffer, s: number, e: number): string {
  if (e - s === 4) return `${buf[s]}.${buf[s + 1]}.${buf[s + 2]}.${buf[s + 3]}`;
  return bytesToIp(buf.subarray(s, e));
}

/** As readTuple of ctnetlink-codec.ts, on the nest buf[from, to). */
function readTuple(buf: Buffer, from: number, to: number): FlowTuple {
  findAttributes(buf, from, to, ts, te);
  const ipS = ts[CTA_TUPLE_IP] as number, ipE = te[CTA_TUPLE_IP] as number;
  const prS = ts[CTA_TUPLE_PROTO] as number, prE = te[CTA_TUPLE_PROTO] as number;
  let src: string | undefined;
  let dst: string | undefined;
  if (ipS >= 0) {
    findAttributes(buf, ipS, ipE, ns, ne);
    const sK = (ns[CTA_IP_V4_SRC] as number) >= 0 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC;
    const dK = (ns[CTA_IP_V4_DST] as number) >= 0 ? CTA_IP_V4_DST : CTA_IP_V6_DST;
    if ((ns[sK] as number) >= 0) src = address(buf, ns[sK] as number, ne[sK] as number);
    if ((ns[dK] as number) >= 0) dst = address(buf, ns[dK] as number, ne[dK] as number);
  }
  if (src === undefined || dst === undefined) throw new Error('conntrack tuple without addresses');
  if (prS >= 0) findAttributes(buf, prS, prE, ns, ne);
  else ns.fill(-1);
  const num = (ns[CTA_PROTO_NUM] as number) >= 0 ? u8(buf, ns[CTA_PROTO_NUM] as number, ne[CTA_PROTO_NUM] as number) : undefined;
  const tuple: FlowTuple = { proto: 'tcp', src, dst, sport: 0, dport: 0 };
  const port = (k: number): number => ((ns[k] as number) >= 0 ? u16be(buf, ns[k] as number, ne[k] as number) : 0);
  if (num === 6 || num === 17) {
    tuple.proto = num === 6 ? 'tcp' : 'udp';
    tuple.sport = port(CTA_PROTO_SRC_PORT);
    tuple.dport = port(CTA_PROTO_DST_PORT);
  } else if (num === 1 || num === IPPROTO_ICMPV6) {
    tuple.proto = 'icmp';
    tuple.sport = (ns[CTA_PROTO_ICMP_ID] as number) >= 0 ? port(CTA_PROTO_ICMP_ID) : port(CTA_PROTO_ICMPV6_ID);
  } else {
    throw new UnsupportedProtocolError(num ?? -1);
  }
  return tuple;
}

// The message's top-level attributes (kept apart from the tuple scratch: both are in use at once).
const ms = new Int32Array(MAX_TYPE), me = new Int32Array(MAX_TYPE);

/** As decodeConntrack of ctnetlink-codec.ts, on the message payload buf[from, to) (from: after the netlink header). */
export function decodeConntrackAt(buf: Buffer, from: number, to: number): KernelConntrack {
  findAttributes(buf, from + 4, to, ms, me); // after struct nfgenmsg
  const a = (k: number): number => ms[k] as number;
  const z = (k: number): number => me[k] as number;
  if (a(CTA_TUPLE_ORIG) < 0 || a(CTA_TUPLE_REPLY) < 0) throw new Error('conntrack message without tuples');
  const orig = readTuple(buf, a(CTA_TUPLE_ORIG), z(CTA_TUPLE_ORIG));
  const reply = readTuple(buf, a(CTA_TUPLE_REPLY), z(CTA_TUPLE_REPLY));
  const status = a(CTA_STATUS) >= 0 ? u32be(buf, a(CTA_STATUS), z(CTA_STATUS)) : 0;
  let state: TcpState = status & IPS_SEEN_REPLY ? 'established' : 'syn-sent';
  if (orig.proto === 'tcp') {
    let n: number | undefined;
    if (a(CTA_PROTOINFO) >= 0) {
      findAttributes(buf, a(CTA_PROTOINFO), z(CTA_PROTOINFO), ts, te);
      if ((ts[CTA_PROTOINFO_TCP] as number) >= 0) {
        findAttributes(buf, ts[CTA_PROTOINFO_TCP] as number, te[CTA_PROTOINFO_TCP] as number, ns, ne);
        if ((ns[CTA_PROTOINFO_TCP_STATE] as number) >= 0) n = u8(buf, ns[CTA_PROTOINFO_TCP_STATE] as number, ne[CTA_PROTOINFO_TCP_STATE] as number);
      }
    }
    state = n !== undefined ? (KERNEL_TCP_STATES[n] ?? 'close') : 'close';
  }
  return {
    orig,
    reply,
    state,
    status,
    timeout: a(CTA_TIMEOUT) >= 0 ? u32be(buf, a(CTA_TIMEOUT), z(CTA_TIMEOUT)) : 0,
    mark: a(CTA_MARK) >= 0 ? u32be(buf, a(CTA_MARK), z(CTA_MARK)) : 0,
    id: a(CTA_ID) >= 0 ? u32be(buf, a(CTA_ID), z(CTA_ID)) : 0,
  };
}

/** As eventKind of ctnetlink-codec.ts, from the message's type and flags. */
function kindOf(type: number, flags: number): DecodedEvent['kind'] | undefined {
  if (type === IPCTNL_MSG_CT_DELETE) return 'destroy';
  if (type !== IPCTNL_MSG_CT_NEW) return undefined;
  return flags & (NLM_F_CREATE | NLM_F_EXCL) ? 'new' : 'update';
}

/**
 * Every conntrack event of a datagram, in order, to `onEvent`; a message that cannot be decoded to
 * `onError` (the others still go out). Throws on a malformed datagram (as splitMessages).
 */
export function forEachEvent(datagram: Buffer, onEvent: (e: DecodedEvent) => void, onError: (err: unknown) => void): void {
  let off = 0;
  while (off + 16 <= datagram.length) {
    const len = datagram.readUInt32LE(off);
    if (len < 16 || off + len > datagram.length) throw new Error(`malformed netlink message (length ${len} at ${off})`);
    const kind = kindOf(datagram.readUInt16LE(off + 4), datagram.readUInt16LE(off + 6));
    if (kind) {
      let conntrack: KernelConntrack | undefined;
      try {
        conntrack = decodeConntrackAt(datagram, off + 16, off + len);
      } catch (err) {
        onError(err);
      }
      if (conntrack) onEvent({ kind, conntrack, portId: datagram.readUInt32LE(off + 12) });
    }
    off += (len + 3) & ~3;
  }
}
