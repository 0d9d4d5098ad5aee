// Live counts of one VRF's kernel conntrack table, kept as conntracks appear, change and end
// (conntrack events on a master; the engine's own writes and removals on a backup, which reads no
// events), so that state reads (`<get>` of counters or of a virtual service's tcpstat) cost O(1)
// in the size of the table instead of a dump of it. Seeded from one dump (at VRF start, after a
// switch of role, after lost events: the engine calls clear() and set() for every conntrack).
//
// Every conntrack is one entry: its original tuple (on both roles: a backup's writes return no
// conntrack id, and the tuple names a conntrack as well as its id does) -> its packed contribution
// to the counts, so an update or a destroy takes back exactly what the conntrack added. IPv4
// tuples live in a packed table (fastpath/ipv4-tuple-table.ts: 16 bytes a slot, no object or
// string per conntrack); only IPv6 tuples take a string-keyed Map.
import type { FlowTuple, L4Proto, TcpState } from '../engine.js';
import type { VirtualServiceStats } from '../soft/vrf-dataplane.js';
import { TCP_STATES } from '../soft/vrf-dataplane.js';
import { STATES_PER_PROTO } from '../soft/conntrack-table.js';
import { Ipv4TupleTable, ipv4Fields } from '../ipv4-tuple-table.js';

/** What the counts need of a conntrack. */
export interface CountedConntrack {
  orig: FlowTuple;
  state: TcpState;
  /** ALG-expected (not mirrored, like the soft engine's alg flows). */
  alg: boolean;
  /** Written by sync (mark bit 31 on the kernel). */
  synced: boolean;
}

/** A virtual service as the counts classify conntracks into it (the VIP side of the original tuple). */
export interface CountedVirtualService {
  name: string;
  vip: string;
  port: number;
  protocol: string;
  mirror: boolean;
}

const STATE_BITS = 0x1f; // row * STATES_PER_PROTO + state, < 32
const VS_SHIFT = 5;
const VS_MASK = 0xffff;
const ESTABLISHED_NON_ALG = 1 << 21;
const SYNCED = 1 << 22;
const PROTO_ROWS: Record<string, number> = { tcp: 0, udp: 1, icmp: 2 };
const TCP_STATE_INDEX = new Map<TcpState, number>(TCP_STATES.map((s, i) => [s, i]));
const UDP_REPLIED = 2; // the soft engine's UDP/ICMP states: 0 unreplied, 2 replied
/** Protocol names by Ipv4TupleTable's protocol index. */
const PROTO_NAMES = ['tcp', 'udp', 'icmp'] as const;

function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

function vipKey(protocol: string, address: string, port: number): string {
  return `${protocol} ${address} ${port}`;
}

/** Key of an IPv6 conntrack: its original tuple as text. */
function tupleKey(t: FlowTuple): string {
  return `${t.proto} ${t.src} ${t.sport} ${t.dst} ${t.dport}`;
}

/** A conntrack's key: its original tuple. */
export type CountedKey = FlowTuple;

export class ConntrackLiveCounts {
  /** Conntracks per protocol row (tcp, udp, icmp, other) and state, laid out as ConntrackTable.byState. */
  readonly byState = new Array<number>(4 * STATES_PER_PROTO).fill(0);
  private readonly byTuple = new Ipv4TupleTable();
  private readonly byText = new Map<string, number>();
  private readonly vsByVip = new Map<string, number>();
  private readonly connections: Int32Array;
  private readonly establishedNonAlg: Int32Array;
  private readonly syncedPerVs: Int32Array;

  constructor(private readonly virtualServices: readonly CountedVirtualService[]) {
    virtualServices.slice(0, VS_MASK).forEach((vs, i) => this.vsByVip.set(vipKey(vs.protocol, vs.vip, vs.port), i));
    this.connections = new Int32Array(virtualServices.length);
    this.establishedNonAlg = new Int32Array(virtualServices.length);
    this.syncedPerVs = new Int32Array(virtualServices.length);
  }

  /** Whether these counts classify by exactly these virtual services (else a new instance and a re-seed are needed). */
  classifiesLike(virtualServices: readonly CountedVirtualService[]): boolean {
    return virtualServices.length === this.virtualServices.length && virtualServices.every((vs, i) => {
      const mine = this.virtualServices[i] as CountedVirtualService;
      return vs.name === mine.name && vs.vip === mine.vip && vs.port === mine.port && vs.protocol === mine.protocol && vs.mirror === mine.mirror;
    });
  }

  /** Conntracks counted now. */
  get size(): number {
    return this.byTuple.size + this.byText.size;
  }

  /** Bytes of the packed tables (what the entries cost; IPv6 ones in a Map not included). */
  get bytes(): number {
    return this.byTuple.bytes;
  }

  /** The virtual service a conntrack to `dst:dport` counts for (`dst` as text or an IPv4 number). */
  private virtualServiceOf(proto: string, dst: string | number, dport: number): number | undefined {
    // No key text per event when there is no virtual service to find (every conntrack of a burst).
    if (this.vsByVip.size === 0) return undefined;
    return this.vsByVip.get(vipKey(proto, typeof dst === 'number' ? ipv4Text(dst) : dst, dport));
  }

  private contributionOf(row: number, vs: number | undefined, state: TcpState, alg: boolean, synced: boolean): number {
    const stateIndex = row === 0 ? (TCP_STATE_INDEX.get(state) ?? 0) : state === 'established' ? UDP_REPLIED : 0;
    let packed = row * STATES_PER_PROTO + stateIndex;
    if (vs !== undefined) packed |= (vs + 1) << VS_SHIFT;
    if (state === 'established' && !alg) packed |= ESTABLISHED_NON_ALG;
    if (synced) packed |= SYNCED;
    return packed;
  }

  private apply(packed: number, sign: 1 | -1): void {
    const i = packed & STATE_BITS;
    this.byState[i] = (this.byState[i] as number) + sign;
    const vs = ((packed >>> VS_SHIFT) & VS_MASK) - 1;
    if (vs < 0) return;
    this.connections[vs] += sign;
    if (packed & ESTABLISHED_NON_ALG) this.establishedNonAlg[vs] += sign;
    if (packed & SYNCED) this.syncedPerVs[vs] += sign;
  }

  /** A conntrack appeared or changed: its previous contribution (if any) is replaced. */
  set(key: CountedKey, ct: CountedConntrack): void {
    this.setState(ct.orig, ct.state, ct.alg, ct.synced, key);
  }

  /** set() of the conntrack whose original tuple is `orig`, without a CountedConntrack object (every kernel event). */
  setState(orig: CountedKey, state: TcpState, alg: boolean, synced: boolean, key: CountedKey = orig): void {
    const vs = this.virtualServiceOf(orig.proto, orig.dst, orig.dport);
    this.setCounted(key, this.contributionOf(PROTO_ROWS[orig.proto] ?? 3, vs, state, alg, synced));
  }

  private setCounted(key: CountedKey, packed: number): void {
    // The tuple is parsed once for the lookup and the store (this runs for every conntrack event).
    const f = ipv4Fields(key);
    const text = f ? undefined : tupleKey(key);
    const old = f ? this.byTuple.get(f.proto, f.src, f.dst, f.sport, f.dport) : this.byText.get(text as string);
    if (old === packed) return;
    if (old !== undefined) this.apply(old, -1);
    if (f) this.byTuple.set(f.proto, f.src, f.dst, f.sport, f.dport, packed);
    else this.byText.set(text as string, packed);
    this.apply(packed, 1);
  }

  /**
   * set() of an IPv4 conntrack given as numbers (`orig`: protocol index 0 tcp / 1 udp / 2 icmp,
   * source, destination, source port, destination port; a backup's packed writes), with no tuple
   * object or address text (the destination's text only when a virtual service may match it).
   */
  setIPv4(orig: Uint32Array, state: TcpState, alg: boolean, synced: boolean): void {
    // An index beyond icmp is taken as tcp, as recordOrig names it.
    const proto = (orig[0] as number) <= 2 ? orig[0] as number : 0;
    const src = orig[1] as number, dst = orig[2] as number, sport = orig[3] as number, dport = orig[4] as number;
    const protoName = PROTO_NAMES[proto] as L4Proto;
    const vs = this.virtualServiceOf(protoName, dst, dport);
    const packed = this.contributionOf(PROTO_ROWS[protoName] ?? 3, vs, state, alg, synced);
    const old = this.byTuple.get(proto, src, dst, sport, dport);
    if (old === packed) return;
    if (old !== undefined) this.apply(old, -1);
    this.byTuple.set(proto, src, dst, sport, dport, packed);
    this.apply(packed, 1);
  }

  /** A conntrack ended; returns whether it was counted. */
  delete(key: CountedKey): boolean {
    const f = ipv4Fields(key);
    const text = f ? undefined : tupleKey(key);
    const old = f ? this.byTuple.get(f.proto, f.src, f.dst, f.sport, f.dport) : this.byText.get(text as string);
    if (old === undefined) return false;
    if (f) this.byTuple.delete(f.proto, f.src, f.dst, f.sport, f.dport);
    else this.byText.delete(text as string);
    this.apply(old, -1);
    return true;
  }

  /** Forgets everything (before a re-seed). */
  clear(): void {
    this.byTuple.clear();
    this.byText.clear();
    this.byState.fill(0);
    this.connections.fill(0);
    this.establishedNonAlg.fill(0);
    this.syncedPerVs.fill(0);
  }

  /**
   * tcpstat of every virtual service, as the soft engine counts it: every conntrack of the VIP;
   * with connection-mirror, on a master its established non-ALG flows (what sync mirrors), on a
   * backup the synchronised ones it holds.
   */
  virtualServiceStats(role: 'master' | 'backup'): Map<string, VirtualServiceStats> {
    const out = new Map<string, VirtualServiceStats>();
    this.virtualServices.forEach((vs, i) => {
      const mirror = vs.mirror;
      out.set(vs.name, {
        connections: this.connections[i] as number,
        mirrorConnListOnActive: mirror && role === 'master' ? this.establishedNonAlg[i] as number : 0,
        mirroredConnectionsOnStandby: mirror && role === 'backup' ? this.syncedPerVs[i] as number : 0,
      });
    });
    return out;
  }
}
