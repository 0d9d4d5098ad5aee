// A batch of the linux engine's packed dump (DataplaneEngine.dumpPacked): conntrack messages of a
// ctnetlink dump decoded at offsets of the datagram into typed columns, with no object, tuple or
// address string per conntrack, so sync's full resync writes wire records straight from the
// kernel's bytes. Conntracks that are not plain IPv4 (IPv6, or of a virtual service) and any
// entry(i) asked for are decoded in full from the message they came in (the datagram is kept).
// The fields mean what LinuxEngine.toEntry makes of the same message (test/linux/kernel-dump-batch.test.ts).
import type { ConntrackEntry, PackedConntrackBatch } from '../engine.js';
import {
  CTA_ID, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_MARK, CTA_PROTO_DST_PORT, CTA_PROTO_ICMP_ID, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT,
  CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE, CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO,
  CTA_TUPLE_REPLY, IPS_EXPECTED, IPS_SEEN_REPLY, NLA_TYPE_MASK, UnsupportedProtocolError, type KernelConntrack,
} from './ctnetlink-codec.js';
import { decodeConntrackAt } from './conntrack-event-decoder.js';

/** What the batch needs of the engine: the same decisions toEntry makes, on numbers. */
export interface DumpBatchContext {
  /** Whether an IPv4 original destination (proto index 0 tcp, 1 udp, 2 icmp) is a virtual service's VIP. */
  isVirtualService(proto: number, dst: number, dport: number): boolean;
  /** When conntrack `id` was first seen established (engine clock ms), 0 when unknown. */
  establishedAt(id: number): number;
  /** The engine clock now (lastActivity of every entry, as toEntry). */
  now: number;
  syncedMark: number;
  markTimeoutMask: number;
  /** The entry toEntry makes of a decoded conntrack. */
  toEntry(ct: KernelConntrack): ConntrackEntry;
}

// Record state order (TcpState: syn-sent ... close) of each kernel enum tcp_conntrack value
// (SYN_SENT2 reads as syn-sent, NONE and the unknown as close), as ctnetlink-codec.ts maps them.
const KERNEL_TCP_STATE_INDEX = [7, 0, 1, 2, 3, 4, 5, 6, 7, 0];
const STATE_SYN_SENT = 0;
const STATE_ESTABLISHED = 2;
const STATE_CLOSE = 7;

// kind column: bit 0 plain IPv4, bits 1-2 protocol index, bits 3-5 state index; flags column:
const PLAIN = 1;
const F_ALG = 1;
const F_SYNCED = 2;
const F_NO_SYNC = 4;

const MAX_TYPE = 16;
const ms = new Int32Array(MAX_TYPE), me = new Int32Array(MAX_TYPE);
const ts = new Int32Array(MAX_TYPE), te = new Int32Array(MAX_TYPE);
const ns = new Int32Array(MAX_TYPE), ne = new Int32Array(MAX_TYPE);

/** Attributes of the nest buf[from, to) below MAX_TYPE into s/e (-1: absent; a later copy wins). */
function findAttributes(buf: Buffer, from: number, to: number, s: Int32Array, e: Int32Array): void {
  s.fill(-1);
  let off = from;
  while (off + 4 <= to) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > to) break;
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (type < MAX_TYPE) {
      s[type] = off + 4;
      e[type] = off + len;
    }
    off += (len + 3) & ~3;
  }
}

/** Scratch of one tuple: src, dst, sport, dport, proto index (-1: not a plain IPv4 tuple). */
const tuple = new Float64Array(5);

function readIPv4Tuple(buf: Buffer, from: number, to: number): boolean {
  findAttributes(buf, from, to, ts, te);
  const ipS = ts[CTA_TUPLE_IP] as number, prS = ts[CTA_TUPLE_PROTO] as number;
  if (ipS < 0 || prS < 0) return false;
  findAttributes(buf, ipS, te[CTA_TUPLE_IP] as number, ns, ne);
  const sS = ns[CTA_IP_V4_SRC] as number, dS = ns[CTA_IP_V4_DST] as number;
  if (sS < 0 || dS < 0 || (ne[CTA_IP_V4_SRC] as number) - sS !== 4 || (ne[CTA_IP_V4_DST] as number) - dS !== 4) return false;
  tuple[0] = buf.readUInt32BE(sS);
  tuple[1] = buf.readUInt32BE(dS);
  findAttributes(buf, prS, te[CTA_TUPLE_PROTO] as number, ns, ne);
  const numS = ns[CTA_PROTO_NUM] as number;
  if (numS < 0 || (ne[CTA_PROTO_NUM] as number) - numS < 1) return false;
  const num = buf[numS] as number;
  const port = (k: number): number => {
    const s = ns[k] as number;
    if (s < 0) return 0;
    if ((ne[k] as number) - s < 2) throw new RangeError('attribute too short');
    return buf.readUInt16BE(s);
  };
  if (num === 6 || num === 17) {
    tuple[4] = num === 6 ? 0 : 1;
    tuple[2] = port(CTA_PROTO_SRC_PORT);
    tuple[3] = port(CTA_PROTO_DST_PORT);
  } else if (num === 1) {
    tuple[4] = 2;
    tuple[2] = port(CTA_PROTO_ICMP_ID);
    tuple[3] = 0;
  } else {
    return false;
  }
  return true;
}

function u32(buf: Buffer, k: number): number {
  const s = ms[k] as number;
  if (s < 0) return 0;
  if ((me[k] as number) - s < 4) throw new RangeError('attribute too short');
  return buf.readUInt32BE(s);
}

export class KernelDumpBatch implements PackedConntrackBatch {
  count = 0;
  /** Messages skipped as malformed (an unsupported protocol is skipped without counting, as dump() does). */
  undecodable = 0;
  private readonly kind: Uint8Array;
  private readonly flags: Uint8Array;
  private readonly timeouts: Uint32Array;
  private readonly established: Float64Array;
  private readonly addrs: Uint32Array;
  private readonly ports: Uint16Array;
  /** Where each entry's message is: its datagram and the payload range. */
  private readonly bufs: Buffer[] = [];
  private readonly from: Int32Array;
  private readonly to: Int32Array;

  constructor(readonly capacity: number, private readonly ctx: DumpBatchContext) {
    this.kind = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.timeouts = new Uint32Array(capacity);
    this.established = new Float64Array(capacity);
    this.addrs = new Uint32Array(capacity * 4);
    this.ports = new Uint16Array(capacity * 4);
    this.from = new Int32Array(capacity);
    this.to = new Int32Array(capacity);
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /**
   * Adds the conntrack message whose payload is buf[from, to). False when it is not plain IPv4 and
   * cannot be decoded in full either (an unsupported protocol, a malformed message): not added.
   */
  add(buf: Buffer, from: number, to: number): boolean {
    const i = this.count;
    const ctx = this.ctx;
    if (!this.addPlain(buf, from, to, i)) {
      // Not plain IPv4: decoded in full now (so an undecodable one is never counted) and kept as an entry.
      let ct: KernelConntrack;
      try {
        ct = decodeConntrackAt(buf, from, to);
      } catch (err) {
        if (!(err instanceof UnsupportedProtocolError)) this.undecodable++;
        return false;
      }
      const e = ctx.toEntry(ct);
      this.kind[i] = 0;
      this.flags[i] = (e.alg ? F_ALG : 0) | (e.synced ? F_SYNCED : 0) | (e.noSync ? F_NO_SYNC : 0);
      this.timeouts[i] = e.timeout;
      this.established[i] = e.establishedAt;
    }
    this.bufs[i] = buf;
    this.from[i] = from;
    this.to[i] = to;
    this.count++;
    return true;
  }

  private addPlain(buf: Buffer, from: number, to: number, i: number): boolean {
    const ctx = this.ctx;
    try {
      findAttributes(buf, from + 4, to, ms, me); // after struct nfgenmsg
      const oS = ms[CTA_TUPLE_ORIG] as number, rS = ms[CTA_TUPLE_REPLY] as number;
      if (oS < 0 || rS < 0) return false;
      const oE = me[CTA_TUPLE_ORIG] as number, rE = me[CTA_TUPLE_REPLY] as number;
      if (!readIPv4Tuple(buf, oS, oE)) return false;
      const proto = tuple[4] as number;
      const a = i * 4;
      this.addrs[a] = tuple[0] as number;
      this.addrs[a + 1] = tuple[1] as number;
      this.ports[a] = tuple[2] as number;
      this.ports[a + 1] = tuple[3] as number;
      if (ctx.isVirtualService(proto, tuple[1] as number, tuple[3] as number)) return false;
      if (!readIPv4Tuple(buf, rS, rE)) return false;
      this.addrs[a + 2] = tuple[0] as number;
      this.addrs[a + 3] = tuple[1] as number;
      this.ports[a + 2] = tuple[2] as number;
      this.ports[a + 3] = tuple[3] as number;
      const status = u32(buf, CTA_STATUS);
      let state = status & IPS_SEEN_REPLY ? STATE_ESTABLISHED : STATE_SYN_SENT;
      if (proto === 0) {
        state = STATE_CLOSE;
        const pS = ms[CTA_PROTOINFO] as number;
        if (pS >= 0) {
          findAttributes(buf, pS, me[CTA_PROTOINFO] as number, ts, te);
          const tS = ts[CTA_PROTOINFO_TCP] as number;
          if (tS >= 0) {
            findAttributes(buf, tS, te[CTA_PROTOINFO_TCP] as number, ns, ne);
            const sS = ns[CTA_PROTOINFO_TCP_STATE] as number;
            if (sS >= 0) {
              if ((ne[CTA_PROTOINFO_TCP_STATE] as number) - sS < 1) return false;
              state = KERNEL_TCP_STATE_INDEX[buf[sS] as number] ?? STATE_CLOSE;
            }
          }
        }
      }
      const mark = u32(buf, CTA_MARK);
      const synced = (mark & ctx.syncedMark) !== 0;
      const src = this.addrs[a] as number, dst = this.addrs[a + 1] as number;
      const loopback = src >>> 24 === 127 || dst >>> 24 === 127;
      this.kind[i] = PLAIN | (proto << 1) | (state << 3);
      this.flags[i] = ((status & IPS_EXPECTED) !== 0 ? F_ALG : 0) | (synced ? F_SYNCED : 0) | (loopback ? F_NO_SYNC : 0);
      this.timeouts[i] = synced ? mark & ctx.markTimeoutMask : u32(buf, CTA_TIMEOUT);
      this.established[i] = ctx.establishedAt(u32(buf, CTA_ID));
      return true;
    } catch {
      return false; // malformed: the full decoder decides (and refuses it the same way)
    }
  }

  entry(i: number): ConntrackEntry {
    return this.ctx.toEntry(decodeConntrackAt(this.bufs[i] as Buffer, this.from[i] as number, this.to[i] as number));
  }

  isPlainIPv4(i: number): boolean {
    return ((this.kind[i] as number) & PLAIN) !== 0;
  }

  protoIndex(i: number): number {
    return ((this.kind[i] as number) >> 1) & 3;
  }

  stateIndex(i: number): number {
    return ((this.kind[i] as number) >> 3) & 7;
  }

  alg(i: number): boolean {
    return ((this.flags[i] as number) & F_ALG) !== 0;
  }

  synced(i: number): boolean {
    return ((this.flags[i] as number) & F_SYNCED) !== 0;
  }

  noSync(i: number): boolean {
    return ((this.flags[i] as number) & F_NO_SYNC) !== 0;
  }

  timeout(i: number): number {
    return this.timeouts[i] as number;
  }

  establishedAt(i: number): number {
    return this.established[i] as number;
  }

  lastActivity(): number {
    return this.ctx.now;
  }

  ipv4(i: number, k: number): number {
    return this.addrs[i * 4 + k] as number;
  }

  port(i: number, k: number): number {
    return this.ports[i * 4 + k] as number;
  }
}
