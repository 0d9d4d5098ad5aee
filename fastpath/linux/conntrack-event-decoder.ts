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
  IPPROTO_ICMPV6, NLA_TYPE_MASK, NLM_F_CREATE, NLM_F_EXCL, UnsupportedProtocolError, conntrackState, type KernelConntrack,
} from './ctnetlink-codec.js';

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
  let n: number | undefined;
  if (orig.proto === 'tcp' && a(CTA_PROTOINFO) >= 0) {
    findAttributes(buf, a(CTA_PROTOINFO), z(CTA_PROTOINFO), ts, te);
    if ((ts[CTA_PROTOINFO_TCP] as number) >= 0) {
      findAttributes(buf, ts[CTA_PROTOINFO_TCP] as number, te[CTA_PROTOINFO_TCP] as number, ns, ne);
      if ((ns[CTA_PROTOINFO_TCP_STATE] as number) >= 0) n = u8(buf, ns[CTA_PROTOINFO_TCP_STATE] as number, ne[CTA_PROTOINFO_TCP_STATE] as number);
    }
  }
  const state = conntrackState(orig.proto, status, n);
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
  forEachEventMessage(datagram, (kind, off, len) => {
    let conntrack: KernelConntrack | undefined;
    try {
      conntrack = decodeConntrackAt(datagram, off + 16, off + len);
    } catch (err) {
      onError(err);
    }
    if (conntrack) onEvent({ kind, conntrack, portId: datagram.readUInt32LE(off + 12) });
  });
}

/**
 * The conntrack event messages of a datagram, in order (its kind, offset and length); other
 * messages are skipped. Throws on a malformed datagram (as splitMessages). One walk for both
 * decoders (objects, packed records).
 */
function forEachEventMessage(datagram: Buffer, fn: (kind: DecodedEvent['kind'], off: number, len: number) => void): void {
  let off = 0;
  while (off + 16 <= datagram.length) {
    const len = datagram.readUInt32LE(off);
    if (len < 16 || off + len > datagram.length) throw new Error(`malformed netlink message (length ${len} at ${off})`);
    const kind = kindOf(datagram.readUInt16LE(off + 4), datagram.readUInt16LE(off + 6));
    if (kind) fn(kind, off, len);
    off += (len + 3) & ~3;
  }
}

// ---- Packed event records (conntrack-event-thread.ts) ----
// The event thread hands the engine its events as fixed-size records in a transferable buffer
// instead of objects (which cannot cross threads without a copy per field). A record holds what
// decodeConntrackAt gives for an IPv4 TCP/UDP/ICMP conntrack; any other message (IPv6, an odd
// attribute, a decoding error) travels as its raw netlink bytes, in its place in the order, and is
// decoded on the engine's side by decodeConntrackAt, so both give the same events and errors.

/** Bytes of one packed event record (a multiple of 4). */
export const EVENT_RECORD_BYTES = 48;
const KINDS: DecodedEvent['kind'][] = ['new', 'update', 'destroy'];
/** Record kind: the message is in the raw section (u32 offset at 4, u32 length at 8). */
const RAW = 3;
const PROTO_NAMES: FlowTuple['proto'][] = ['tcp', 'udp', 'icmp'];
const STATE_ORDER: TcpState[] = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'];
const STATE_NUMBER = new Map<TcpState, number>(STATE_ORDER.map((s, i) => [s, i]));

/** One batch of packed events: `count` records, and the raw messages some of them point to. */
export interface PackedEventBatch {
  records: ArrayBuffer;
  count: number;
  raw?: ArrayBuffer;
}

/**
 * Packs an IPv4 tuple of buf[from, to) at `at` of `view` (src, dst, sport, dport); returns the
 * protocol index, or -1 when decodeConntrackAt would read it otherwise (not IPv4, short attributes,
 * other protocols): the message then travels raw.
 */
function packTuple(buf: Buffer, from: number, to: number, view: DataView, at: number): number {
  findAttributes(buf, from, to, ts, te);
  const ipS = ts[CTA_TUPLE_IP] as number, prS = ts[CTA_TUPLE_PROTO] as number;
  if (ipS < 0 || prS < 0) return -1;
  findAttributes(buf, ipS, te[CTA_TUPLE_IP] as number, ns, ne);
  // decodeConntrackAt takes the IPv4 attribute when present, else the IPv6 one.
  const s = ns[CTA_IP_V4_SRC] as number, d = ns[CTA_IP_V4_DST] as number;
  if (s < 0 || d < 0 || (ne[CTA_IP_V4_SRC] as number) - s !== 4 || (ne[CTA_IP_V4_DST] as number) - d !== 4) return -1;
  view.setUint32(at, buf.readUInt32BE(s), true);
  view.setUint32(at + 4, buf.readUInt32BE(d), true);
  findAttributes(buf, prS, te[CTA_TUPLE_PROTO] as number, ns, ne);
  const numS = ns[CTA_PROTO_NUM] as number;
  if (numS < 0 || (ne[CTA_PROTO_NUM] as number) - numS < 1) return -1;
  const num = buf[numS] as number;
  const port = (k: number): number => {
    const ps = ns[k] as number;
    if (ps < 0) return 0;
    if ((ne[k] as number) - ps < 2) throw new RangeError('attribute too short');
    return buf.readUInt16BE(ps);
  };
  let proto: number;
  if (num === 6 || num === 17) {
    proto = num === 6 ? 0 : 1;
    view.setUint16(at + 8, port(CTA_PROTO_SRC_PORT), true);
    view.setUint16(at + 10, port(CTA_PROTO_DST_PORT), true);
  } else if (num === 1 || num === IPPROTO_ICMPV6) {
    proto = 2;
    view.setUint16(at + 8, (ns[CTA_PROTO_ICMP_ID] as number) >= 0 ? port(CTA_PROTO_ICMP_ID) : port(CTA_PROTO_ICMPV6_ID), true);
    view.setUint16(at + 10, 0, true);
  } else {
    return -1;
  }
  return proto;
}

/** u32 attribute k of the message's top level: its value, 0 when absent, -1 when too short (decodeConntrackAt throws: raw). */
function topU32(buf: Buffer, k: number): number {
  const st = ms[k] as number;
  if (st < 0) return 0;
  return (me[k] as number) - st < 4 ? -1 : buf.readUInt32BE(st);
}

/**
 * Packs the event of the message buf[from, to) (from: its netlink header) at record `at`, read at
 * offsets as decodeConntrackAt reads it (no tuple object, no address text); false when the message
 * must travel raw: whatever decodeConntrackAt would refuse or read otherwise (the decoder test
 * holds both equal on every message shape).
 */
function packEvent(buf: Buffer, from: number, to: number, kind: number, view: DataView, at: number): boolean {
  findAttributes(buf, from + 20, to, ms, me); // after the netlink header and struct nfgenmsg
  const oS = ms[CTA_TUPLE_ORIG] as number, oE = me[CTA_TUPLE_ORIG] as number;
  const rS = ms[CTA_TUPLE_REPLY] as number, rE = me[CTA_TUPLE_REPLY] as number;
  if (oS < 0 || rS < 0) return false;
  const status = topU32(buf, CTA_STATUS), timeout = topU32(buf, CTA_TIMEOUT), mark = topU32(buf, CTA_MARK), id = topU32(buf, CTA_ID);
  if (status < 0 || timeout < 0 || mark < 0 || id < 0) return false;
  const p = packTuple(buf, oS, oE, view, at + 24);
  if (p < 0 || packTuple(buf, rS, rE, view, at + 36) !== p) return false;
  let n: number | undefined;
  if (p === 0) {
    const piS = ms[CTA_PROTOINFO] as number;
    if (piS >= 0) {
      findAttributes(buf, piS, me[CTA_PROTOINFO] as number, ts, te);
      if ((ts[CTA_PROTOINFO_TCP] as number) >= 0) {
        findAttributes(buf, ts[CTA_PROTOINFO_TCP] as number, te[CTA_PROTOINFO_TCP] as number, ns, ne);
        const stS = ns[CTA_PROTOINFO_TCP_STATE] as number;
        if (stS >= 0) {
          if ((ne[CTA_PROTOINFO_TCP_STATE] as number) - stS < 1) return false;
          n = buf[stS] as number;
        }
      }
    }
  }
  const state = conntrackState(PROTO_NAMES[p] as string, status, n);
  view.setUint8(at, kind);
  view.setUint8(at + 1, p);
  view.setUint8(at + 2, STATE_NUMBER.get(state) as number);
  view.setUint32(at + 4, status, true);
  view.setUint32(at + 8, timeout, true);
  view.setUint32(at + 12, mark, true);
  view.setUint32(at + 16, id, true);
  view.setUint32(at + 20, buf.readUInt32LE(from + 12), true);
  return true;
}

/** Collects the events of datagrams into packed batches (the event thread's side). */
export class PackedEventWriter {
  private records: ArrayBuffer;
  private view: DataView;
  private raw: Buffer[] = [];
  private rawBytes = 0;
  count = 0;

  constructor(private readonly capacity = 4096) {
    this.records = new ArrayBuffer(capacity * EVENT_RECORD_BYTES);
    this.view = new DataView(this.records);
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Adds every event of `datagram` (may overfill `full` by one datagram's events: room grows). Throws on a malformed datagram. */
  add(datagram: Buffer): void {
    forEachEventMessage(datagram, (kind, off, len) => {
      if (this.count >= this.records.byteLength / EVENT_RECORD_BYTES) this.grow();
      const at = this.count * EVENT_RECORD_BYTES;
      let packed: boolean;
      try {
        packed = packEvent(datagram, off, off + len, KINDS.indexOf(kind), this.view, at);
      } catch {
        packed = false; // decoded (and its error reported) on the engine's side
      }
      if (!packed) {
        this.view.setUint8(at, RAW);
        this.view.setUint32(at + 4, this.rawBytes, true);
        this.view.setUint32(at + 8, len, true);
        this.raw.push(Buffer.from(datagram.subarray(off, off + len)));
        this.rawBytes += len;
      }
      this.count++;
    });
  }

  private grow(): void {
    const bigger = new ArrayBuffer(this.records.byteLength * 2);
    new Uint8Array(bigger).set(new Uint8Array(this.records));
    this.records = bigger;
    this.view = new DataView(bigger);
  }

  /** The batch so far (its buffers are the caller's: transfer them); starts a new one. */
  take(): PackedEventBatch {
    const batch: PackedEventBatch = { records: this.records.slice(0, this.count * EVENT_RECORD_BYTES), count: this.count };
    if (this.raw.length > 0) {
      const raw = new Uint8Array(this.rawBytes);
      let o = 0;
      for (const r of this.raw) {
        raw.set(r, o);
        o += r.length;
      }
      batch.raw = raw.buffer;
    }
    this.count = 0;
    this.raw = [];
    this.rawBytes = 0;
    return batch;
  }
}

function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

function tupleAt(view: DataView, at: number, proto: FlowTuple['proto']): FlowTuple {
  return { proto, src: ipv4Text(view.getUint32(at, true)), dst: ipv4Text(view.getUint32(at + 4, true)), sport: view.getUint16(at + 8, true), dport: view.getUint16(at + 10, true) };
}

/**
 * Every event of a packed batch, in order, to `onEvent`, as forEachEvent gives them from the
 * datagrams; a raw message that cannot be decoded to `onError` (the engine's side of the thread).
 */
export function forEachPackedEvent(batch: PackedEventBatch, onEvent: (e: DecodedEvent) => void, onError: (err: unknown) => void): void {
  const view = new DataView(batch.records);
  const raw = batch.raw ? Buffer.from(batch.raw) : undefined;
  for (let i = 0; i < batch.count; i++) {
    const at = i * EVENT_RECORD_BYTES;
    const k = view.getUint8(at);
    if (k === RAW) {
      if (!raw) throw new Error('packed event batch without its raw messages');
      const from = view.getUint32(at + 4, true);
      const m = raw.subarray(from, from + view.getUint32(at + 8, true));
      let conntrack: KernelConntrack | undefined;
      try {
        conntrack = decodeConntrackAt(m, 16, m.length);
      } catch (err) {
        onError(err);
      }
      const kind = kindOf(m.readUInt16LE(4), m.readUInt16LE(6));
      if (conntrack && kind) onEvent({ kind, conntrack, portId: m.readUInt32LE(12) });
      continue;
    }
    const proto = PROTO_NAMES[view.getUint8(at + 1)] ?? 'tcp';
    onEvent({
      kind: KINDS[k] ?? 'update',
      conntrack: {
        orig: tupleAt(view, at + 24, proto),
        reply: tupleAt(view, at + 36, proto),
        state: STATE_ORDER[view.getUint8(at + 2)] ?? 'close',
        status: view.getUint32(at + 4, true),
        timeout: view.getUint32(at + 8, true),
        mark: view.getUint32(at + 12, true),
        id: view.getUint32(at + 16, true),
      },
      portId: view.getUint32(at + 20, true),
    });
  }
}
