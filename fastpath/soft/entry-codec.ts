// Packed conntrack records between the main thread and the workers. Structured clone of plain
// objects costs ~10 us per conntrack; a fixed 56-byte record in a transferred ArrayBuffer (IPv4
// addresses as numbers, other addresses and names in a small string side table) costs well
// under 1 us, which is what lets sync write 10^6 conntracks per second into a backup.
import type { ConntrackEntry, ConntrackEventKind, L4Proto, TcpState } from '../engine.js';
import { checkedAddressRef, ipv4Text, type AddressRef } from './address-table.js';

export const RECORD_BYTES = 56;

export const PROTO_BY_NAME: Record<L4Proto, number> = { tcp: 6, udp: 17, icmp: 1 };
const NAME_BY_PROTO: Record<number, L4Proto> = { 6: 'tcp', 17: 'udp', 1: 'icmp' };
export const STATES: readonly TcpState[] = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'];
export const EVENT_KINDS: readonly ConntrackEventKind[] = ['new', 'established', 'update', 'destroy'];

/** Record flag bits. */
export const R_ALG = 1, R_SYNCED = 2, R_ACTIVITY_SYNCED = 4, R_NO_SYNC = 8;

// Offsets inside a record.
const O_PROTO = 0, O_STATE = 1, O_FLAGS = 2, O_KINDS = 3, O_ADDR = 4, O_PORTS = 20, O_TIMEOUT = 28, O_EST = 32, O_ACT = 40, O_VS = 48, O_EVENT = 52;

/** A batch of packed records; `strings` holds non-IPv4 addresses and virtual-service names. */
export interface PackedEntries {
  buf: ArrayBuffer;
  count: number;
  strings: string[];
}

/** Builds a batch; grows as needed. */
export class PackedWriter {
  private view: DataView;
  private count = 0;
  private strings: string[] = [];
  private stringIndex = new Map<string, number>();

  constructor(capacity = 1024) {
    this.view = new DataView(new ArrayBuffer(Math.max(1, capacity) * RECORD_BYTES));
  }

  get length(): number {
    return this.count;
  }

  private string(s: string): number {
    let i = this.stringIndex.get(s);
    if (i === undefined) {
      i = this.strings.length;
      this.strings.push(s);
      this.stringIndex.set(s, i);
    }
    return i;
  }

  /** Start a record and return its offset; fields are then written with the set* methods. */
  private next(): number {
    const off = this.count * RECORD_BYTES;
    if (off + RECORD_BYTES > this.view.byteLength) {
      const grown = new Uint8Array(this.view.byteLength * 2);
      grown.set(new Uint8Array(this.view.buffer));
      this.view = new DataView(grown.buffer);
    }
    this.count++;
    return off;
  }

  /** Append one record from raw fields (the worker side writes straight from its table). */
  addRaw(proto: number, state: number, flags: number, addrs: [AddressRef, AddressRef, AddressRef, AddressRef],
    ports: [number, number, number, number], timeout: number, establishedAt: number, lastActivity: number,
    virtualService: string | undefined, eventKind = 0): void {
    const off = this.next(); // may grow (replace) the view
    const v = this.view;
    v.setUint8(off + O_PROTO, proto);
    v.setUint8(off + O_STATE, state);
    v.setUint8(off + O_FLAGS, flags);
    let kinds = 0;
    for (let i = 0; i < 4; i++) {
      const a = addrs[i] as AddressRef;
      if (typeof a === 'number') {
        v.setUint32(off + O_ADDR + 4 * i, a, true);
      } else {
        kinds |= 1 << i;
        v.setUint32(off + O_ADDR + 4 * i, this.string(a), true);
      }
    }
    v.setUint8(off + O_KINDS, kinds);
    for (let i = 0; i < 4; i++) v.setUint16(off + O_PORTS + 2 * i, ports[i] as number, true);
    v.setUint32(off + O_TIMEOUT, timeout, true);
    v.setFloat64(off + O_EST, establishedAt, true);
    v.setFloat64(off + O_ACT, lastActivity, true);
    v.setInt32(off + O_VS, virtualService === undefined ? -1 : this.string(virtualService), true);
    v.setUint32(off + O_EVENT, eventKind, true);
  }

  /** Append record i of another batch. */
  copyRecord(r: PackedReader, i: number): void {
    this.addRaw(r.proto(i), r.state(i), r.flags(i), [r.addr(i, 0), r.addr(i, 1), r.addr(i, 2), r.addr(i, 3)],
      [r.port(i, 0), r.port(i, 1), r.port(i, 2), r.port(i, 3)], r.timeout(i), r.establishedAt(i), r.lastActivity(i), r.virtualService(i), r.eventKind(i));
  }

  /** Append a ConntrackEntry (main-thread side: upsert). */
  addEntry(e: ConntrackEntry): void {
    const proto = PROTO_BY_NAME[e.orig.proto];
    const state = STATES.indexOf(e.state);
    if (proto === undefined || state < 0 || e.reply.proto !== e.orig.proto) {
      throw new TypeError(`bad conntrack: protocol ${e.orig.proto}/${e.reply.proto}, state ${e.state}`);
    }
    if (!(e.timeout >= 0 && e.timeout <= 0xffffffff)) throw new TypeError(`bad conntrack: timeout ${e.timeout}`);
    const flags = (e.alg ? R_ALG : 0) | (e.synced ? R_SYNCED : 0) | (e.activitySynced ? R_ACTIVITY_SYNCED : 0) | (e.noSync ? R_NO_SYNC : 0);
    this.addRaw(proto, state, flags, [checkedAddressRef(e.orig.src, 'conntrack'), checkedAddressRef(e.orig.dst, 'conntrack'),
      checkedAddressRef(e.reply.src, 'conntrack'), checkedAddressRef(e.reply.dst, 'conntrack')],
      [e.orig.sport, e.orig.dport, e.reply.sport, e.reply.dport], e.timeout, e.establishedAt, e.lastActivity, e.virtualService);
  }

  finish(): PackedEntries {
    const buf = this.view.buffer.slice(0, this.count * RECORD_BYTES) as ArrayBuffer;
    return { buf, count: this.count, strings: this.strings };
  }
}

// Texts of recently seen IPv4 addresses (direct-mapped by value): servers, NAT addresses and busy
// subscribers recur in a dump, and reusing their string spares an allocation each time.
const TEXT_CACHE_BITS = 12;
const textCacheKeys = new Float64Array(1 << TEXT_CACHE_BITS).fill(-1);
const textCacheValues = new Array<string>(1 << TEXT_CACHE_BITS).fill('');

function cachedIPv4Text(v: number): string {
  const i = Math.imul(v, 0x9e3779b1) >>> (32 - TEXT_CACHE_BITS);
  if (textCacheKeys[i] === v) return textCacheValues[i] as string;
  const text = ipv4Text(v);
  textCacheKeys[i] = v;
  textCacheValues[i] = text;
  return text;
}

/** What a worker needs to write a conntrack into its table (PackedReader, IPv4RecordReader). */
export interface PackedRecordSource {
  readonly count: number;
  proto(i: number): number;
  state(i: number): number;
  flags(i: number): number;
  addr(i: number, k: number): AddressRef;
  port(i: number, k: number): number;
  timeout(i: number): number;
  establishedAt(i: number): number;
  lastActivity(i: number): number;
  virtualService(i: number): string | undefined;
}

/** Reads the records of a batch without building objects (worker side). */
export class PackedReader implements PackedRecordSource {
  private readonly view: DataView;

  constructor(private readonly packed: PackedEntries) {
    this.view = new DataView(packed.buf);
  }

  get count(): number {
    return this.packed.count;
  }

  proto(i: number): number { return this.view.getUint8(i * RECORD_BYTES + O_PROTO); }
  state(i: number): number { return this.view.getUint8(i * RECORD_BYTES + O_STATE); }
  flags(i: number): number { return this.view.getUint8(i * RECORD_BYTES + O_FLAGS); }
  eventKind(i: number): number { return this.view.getUint32(i * RECORD_BYTES + O_EVENT, true); }

  /** Address k (0 orig src, 1 orig dst, 2 reply src, 3 reply dst) as a table key. */
  addr(i: number, k: number): AddressRef {
    const off = i * RECORD_BYTES;
    const raw = this.view.getUint32(off + O_ADDR + 4 * k, true);
    return (this.view.getUint8(off + O_KINDS) >> k) & 1 ? (this.packed.strings[raw] as string) : raw;
  }

  /** Port k (0 orig sport, 1 orig dport, 2 reply sport, 3 reply dport). */
  port(i: number, k: number): number { return this.view.getUint16(i * RECORD_BYTES + O_PORTS + 2 * k, true); }
  timeout(i: number): number { return this.view.getUint32(i * RECORD_BYTES + O_TIMEOUT, true); }
  establishedAt(i: number): number { return this.view.getFloat64(i * RECORD_BYTES + O_EST, true); }
  lastActivity(i: number): number { return this.view.getFloat64(i * RECORD_BYTES + O_ACT, true); }

  virtualService(i: number): string | undefined {
    const s = this.view.getInt32(i * RECORD_BYTES + O_VS, true);
    return s < 0 ? undefined : this.packed.strings[s];
  }

  /** Record i as a ConntrackEntry (main-thread side: events and dumps). */
  entry(i: number, vrf: string): ConntrackEntry {
    const proto = NAME_BY_PROTO[this.proto(i)] as L4Proto;
    const text = (k: number): string => {
      const a = this.addr(i, k);
      return typeof a === 'number' ? cachedIPv4Text(a) : a;
    };
    const flags = this.flags(i);
    const e: ConntrackEntry = {
      vrf,
      orig: { proto, src: text(0), dst: text(1), sport: this.port(i, 0), dport: this.port(i, 1) },
      reply: { proto, src: text(2), dst: text(3), sport: this.port(i, 2), dport: this.port(i, 3) },
      state: STATES[this.state(i)] as TcpState,
      timeout: this.timeout(i),
      alg: !!(flags & R_ALG),
      establishedAt: this.establishedAt(i),
      lastActivity: this.lastActivity(i),
    };
    const vs = this.virtualService(i);
    if (vs !== undefined) e.virtualService = vs;
    if (flags & R_SYNCED) e.synced = true;
    if (flags & R_ACTIVITY_SYNCED) e.activitySynced = true;
    if (flags & R_NO_SYNC) e.noSync = true;
    return e;
  }
}

export function packEntries(entries: ConntrackEntry[]): PackedEntries {
  const w = new PackedWriter(entries.length);
  for (const e of entries) w.addEntry(e);
  return w.finish();
}

export function unpackEntries(packed: PackedEntries, vrf: string): ConntrackEntry[] {
  const r = new PackedReader(packed);
  const out = new Array<ConntrackEntry>(r.count);
  for (let i = 0; i < r.count; i++) out[i] = r.entry(i, vrf);
  return out;
}
