// One VRF's dataplane inside one worker: conntrack table, TCP/UDP/ICMP state machine with the
// configured timeouts, stateful firewall, CG-NAT, virtual services, HA role. Pure code driven by
// explicit `now` values (the engine clock lives in the main thread), so it is tested in-thread.
import type { ConntrackEntry, ConntrackEventKind, EngineCounters, FailoverPolicy, FlowTuple, HaRole, L4Proto, TcpState } from '../engine.js';
import { addressRef, ipv4Text, type AddressRef, type AddressTable } from './address-table.js';
import { CgNatPoolAllocator, type NatBlockLog } from './cg-nat-allocator.js';
import {
  ConntrackTable, F_ACTIVITY_SYNCED, F_ALG, F_ESTABLISHED, F_FIN_ORIG, F_NO_MIRROR, F_SYNCED, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
} from './conntrack-table.js';
import { PackedReader, PackedWriter, R_ACTIVITY_SYNCED, R_ALG, R_NO_SYNC, R_SYNCED, packEntries, unpackEntries, type PackedEntries, type PackedRecordSource } from './entry-codec.js';
import type { PacketReader } from './packet-codec.js';
import type { PackedMove } from './packed-move.js';
import { SnatPorts } from './snat-ports.js';
import { prefixMatcher, type FirewallRule, type SoftVrfConfig, type TcpTimeouts, type VirtualServiceConfig } from '../config/vrf-config.js';
import { applyRuleDelta } from '../config/rule-delta.js';
import { fnv1a } from '../tuple-hash.js';
import type { SoftRuleDelta } from './messages.js';

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

/** A packet as the soft engine sees it: the connection's original tuple and the direction. */
export interface SoftPacket {
  /** Original-direction tuple of the connection (what the client sends). */
  flow: FlowTuple;
  /** True for a packet of the reply direction (server to client). */
  reply?: boolean;
  /** TCP flags (TCP_SYN | TCP_ACK ...); ignored for UDP and ICMP. */
  flags?: number;
  /** The connection is related to an ALG master (e.g. FTP data): never synchronised. */
  alg?: boolean;
}

export enum Verdict {
  Forward = 0,
  DropFirewall = 1,
  DropTableFull = 2,
  DropBackup = 3,
  DropInvalid = 4,
  DropNat = 5,
  /** SYN answered by SYN protection (cookie); no conntrack until the handshake completes. */
  SynCookie = 6,
}

export const TCP_STATES: readonly TcpState[] = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'];
const S_SYN_SENT = 0, S_SYN_RECV = 1, S_ESTABLISHED = 2, S_FIN_WAIT = 3, S_CLOSE_WAIT = 4, S_LAST_ACK = 5, S_TIME_WAIT = 6, S_CLOSE = 7;

const PROTO_CODE: Record<L4Proto, number> = { tcp: PROTO_TCP, udp: PROTO_UDP, icmp: PROTO_ICMP };
const PROTO_NAME: Record<number, L4Proto> = { [PROTO_TCP]: 'tcp', [PROTO_UDP]: 'udp', [PROTO_ICMP]: 'icmp' };
/** UDP/ICMP activity is reported to sync at most this often per entry. */
const ACTIVITY_REPORT_MS = 1000;

export interface VirtualServiceStats {
  connections: number;
  mirrorConnListOnActive: number;
  mirroredConnectionsOnStandby: number;
}

/** Counters of one VRF in one worker that are not plain numbers (read on demand for state data). */
export interface CounterDetail {
  /** ConntrackTable.byState: live entries per protocol row (tcp, udp, icmp, other) and state. */
  byState: number[];
  /** Per firewall rule that matched at least once: [name, accepted, dropped]. */
  firewallRules: [string, number, number][];
  firewallDefault: { accepted: number; dropped: number };
  natBlocksInUse: number;
}

export interface VrfDataplaneHooks {
  /** A conntrack event; `slot` is valid only during the call (read it with toEntry or writeRecord). */
  emit(kind: ConntrackEventKind, slot: number): void;
  natLog(log: NatBlockLog): void;
}

interface CompiledRule {
  name: string;
  proto: number; // 0: any
  src?: (a: string) => boolean;
  dst?: (a: string) => boolean;
  sport?: [number, number];
  dport?: [number, number];
  drop: boolean;
}

function compileRule(r: FirewallRule): CompiledRule {
  return {
    name: r.name,
    proto: r.protocol ? PROTO_CODE[r.protocol] : 0,
    src: r.sourcePrefix ? prefixMatcher(r.sourcePrefix) : undefined,
    dst: r.destinationPrefix ? prefixMatcher(r.destinationPrefix) : undefined,
    sport: r.sourcePort ? [r.sourcePort.start, r.sourcePort.end] : undefined,
    dport: r.destinationPort ? [r.destinationPort.start, r.destinationPort.end] : undefined,
    drop: r.action === 'drop',
  };
}

export class VrfDataplane {
  readonly table = new ConntrackTable();
  role: HaRole = 'master';
  private config!: SoftVrfConfig;
  private rules: CompiledRule[] = [];
  private natRules: { match: (a: string) => boolean; pool: number }[] = [];
  private pools: CgNatPoolAllocator[] = [];
  private failoverPolicy: FailoverPolicy = { graceSeconds: {} };
  /** New connections per firewall rule name: [accepted, dropped]. */
  private readonly ruleHits = new Map<string, [number, number]>();
  private readonly defaultHits = { accepted: 0, dropped: 0 };
  /** Port bitmaps of the virtual services' SNAT IPs (shared by the workers). */
  private snat = new Map<string, SnatPorts>();
  private syncedCount = 0;
  private readonly stats = {
    created: 0, destroyed: 0, dropsTableFull: 0, dropsFirewall: 0, dropsBackup: 0, natAllocFailures: 0, dropsInvalid: 0, synCookies: 0,
  };

  /**
   * `vrfCount` is an Int32Array(1) over a SharedArrayBuffer shared by every worker's instance of
   * this VRF (limits conntrack max is per VRF); `natClaims[i]` is pool i's shared block table.
   */
  constructor(private readonly addresses: AddressTable, private readonly hooks: VrfDataplaneHooks,
    private readonly vrfCount: Int32Array, private readonly workerIndex: number) {}

  get name(): string {
    return this.config.name;
  }

  configure(config: SoftVrfConfig, natClaims: Int32Array[], now = 0, snatClaims: Record<string, Int32Array> = {}): void {
    const samePools = this.config && JSON.stringify(this.config.cgNat.pools) === JSON.stringify(config.cgNat.pools);
    this.config = config;
    this.rules = config.firewall.rules.map(compileRule);
    // Counters of a rule live as long as a rule of that name does.
    const names = new Set(config.firewall.rules.map((r) => r.name));
    for (const name of this.ruleHits.keys()) if (!names.has(name)) this.ruleHits.delete(name);
    const logging = { allocation: config.cgNat.logAllocation, destroy: config.cgNat.logDestroy };
    if (!samePools) {
      // New allocators; live translated conntracks keep their ports (readoptNat reserves them).
      this.pools = config.cgNat.pools.map((p, i) => new CgNatPoolAllocator(config.name, p, logging, natClaims[i] as Int32Array,
        (l) => this.hooks.natLog(l), this.workerIndex));
    } else {
      // Same pools: keep the subscriber bookkeeping, only logging or rules changed.
      for (const p of this.pools) p.logging = logging;
    }
    if (!samePools) this.readoptNat(now);
    this.natRules = config.cgNat.rules.map((r) => ({
      match: prefixMatcher(r.sourcePrefix),
      pool: config.cgNat.pools.findIndex((p) => p.name === r.pool),
    }));
    this.retimeAll();
    this.snat = new Map(Object.entries(snatClaims).map(([ip, bits]) => [ip, new SnatPorts(bits)]));
    if (this.snat.size) this.readoptSnat();
  }

  /**
   * Apply a commit's change of the firewall rules alone (the same delta the main thread applied
   * to its copy of the configuration); returns the number of rules now, for the main thread to check.
   */
  applyRuleDelta(delta: SoftRuleDelta): number {
    const compiled = { removed: delta.removed, placed: delta.placed.map(({ after, rule }) => ({ after, rule: compileRule(rule) })) };
    const rules = applyRuleDelta(this.rules, (r) => r.name, compiled);
    const configRules = applyRuleDelta(this.config.firewall.rules, (r) => r.name, delta);
    this.rules = rules;
    this.config = { ...this.config, firewall: { defaultAction: delta.defaultAction, dropInvalid: delta.dropInvalid, rules: configRules } };
    const placed = new Set(delta.placed.map(({ rule }) => rule.name));
    for (const name of delta.removed) if (!placed.has(name)) this.ruleHits.delete(name);
    return rules.length;
  }

  /** The firewall rules as this worker evaluates them, in order: name and action (checks and tests). */
  ruleOrder(): string[] {
    return this.rules.map((r) => `${r.name}:${r.drop ? 'drop' : 'accept'}`);
  }

  /** The SNAT IP ports of live server-side connections are in use (new or replaced bitmaps). */
  private readoptSnat(): void {
    const t = this.table;
    for (let s = 0; s < t.highWater; s++) if (t.used[s]) this.snatOf(s)?.adopt(t.rDport[s] as number);
  }

  /** The SNAT ports of a conntrack's virtual service when its reply goes to that SNAT IP. */
  private snatOf(slot: number): SnatPorts | undefined {
    const t = this.table;
    const vs = t.vs[slot] ? this.config.virtualServices[(t.vs[slot] as number) - 1] : undefined;
    if (!vs?.snatIp || this.addresses.text(t.rDst[slot] as number) !== vs.snatIp) return undefined;
    return this.snat.get(vs.snatIp);
  }

  setFailoverPolicy(policy: FailoverPolicy): void {
    this.failoverPolicy = policy;
  }

  counters(): EngineCounters & { dropsInvalid: number; synCookies: number } {
    return { conntracks: this.table.count, synced: this.syncedCount, ...this.stats };
  }

  // ---- packets ----

  process(pkt: SoftPacket, now: number): Verdict {
    const f = pkt.flow;
    const proto = PROTO_CODE[f.proto];
    if (proto === undefined) return this.invalid();
    const t = this.table;
    const src = this.addresses.find(f.src);
    const dst = this.addresses.find(f.dst);
    const slot = src < 0 || dst < 0 ? -1 : t.findOrig(proto, src, dst, f.sport, f.dport);
    const flags = pkt.flags ?? 0;
    if (slot >= 0) {
      if (t.flags[slot] & F_SYNCED && this.role === 'backup') {
        this.stats.dropsBackup++;
        return Verdict.DropBackup;
      }
      // A new SYN on a closed connection's tuple starts a new connection.
      if (proto === PROTO_TCP && !pkt.reply && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN && t.state[slot] >= S_TIME_WAIT) {
        this.destroy(slot, now, true);
        return this.create(pkt, proto, now);
      }
      return this.track(slot, !!pkt.reply, proto, flags, now);
    }
    if (pkt.reply) return this.invalid();
    return this.create(pkt, proto, now);
  }

  /** Packet i of a packed batch (the worker path: existing connections need no object at all). */
  processPacked(r: PacketReader, i: number, now: number): Verdict {
    const proto = r.proto(i);
    if (PROTO_NAME[proto] === undefined) return this.invalid();
    const t = this.table;
    const src = this.addresses.findRef(r.src(i));
    const dst = this.addresses.findRef(r.dst(i));
    const sport = r.sport(i), dport = r.dport(i);
    const slot = src < 0 || dst < 0 ? -1 : t.findOrig(proto, src, dst, sport, dport);
    const flags = r.flags(i);
    const reply = r.reply(i);
    if (slot >= 0) {
      if (t.flags[slot] & F_SYNCED && this.role === 'backup') {
        this.stats.dropsBackup++;
        return Verdict.DropBackup;
      }
      if (proto === PROTO_TCP && !reply && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN && t.state[slot] >= S_TIME_WAIT) {
        this.destroy(slot, now, true);
        return this.create(this.unpackPacket(r, i), proto, now);
      }
      return this.track(slot, reply, proto, flags, now);
    }
    if (reply) return this.invalid();
    return this.create(this.unpackPacket(r, i), proto, now);
  }

  private unpackPacket(r: PacketReader, i: number): SoftPacket {
    const text = (a: AddressRef): string => (typeof a === 'number' ? ipv4Text(a) : a);
    return {
      flow: { proto: PROTO_NAME[r.proto(i)] as L4Proto, src: text(r.src(i)), dst: text(r.dst(i)), sport: r.sport(i), dport: r.dport(i) },
      reply: r.reply(i), flags: r.flags(i), alg: r.alg(i),
    };
  }

  private invalid(): Verdict {
    this.stats.dropsInvalid++;
    return Verdict.DropInvalid;
  }

  private create(pkt: SoftPacket, proto: number, now: number): Verdict {
    const f = pkt.flow;
    const flags = pkt.flags ?? 0;
    const vsIndex = this.config.virtualServices.findIndex((v) => v.vip === f.dst && v.port === f.dport && v.protocol === f.proto);
    const vs = vsIndex >= 0 ? this.config.virtualServices[vsIndex] : undefined;
    let established = false;
    if (proto === PROTO_TCP) {
      const syn = (flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) === TCP_SYN;
      if (vs?.synProtection) {
        // SYN cookies: a SYN never creates state; the client's ACK that completes the handshake does.
        if (syn) {
          this.stats.synCookies++;
          return Verdict.SynCookie;
        }
        if ((flags & (TCP_ACK | TCP_SYN | TCP_RST)) !== TCP_ACK) return this.invalid();
        established = true;
      } else if (!syn && this.config.firewall.dropInvalid) {
        return this.invalid();
      } else if (!syn) {
        established = true; // loose pickup of a mid-stream connection
      }
    }
    if (this.firewallDrops(proto, f)) {
      this.stats.dropsFirewall++;
      return Verdict.DropFirewall;
    }
    if (Atomics.add(this.vrfCount, 0, 1) >= this.config.conntrackMax) {
      Atomics.sub(this.vrfCount, 0, 1);
      this.stats.dropsTableFull++;
      return Verdict.DropTableFull;
    }
    // Reply tuple: DNAT to a pool member for a virtual service, SNAT from a CG-NAT pool.
    let replySrc = f.dst, replySport = f.dport;
    if (vs) {
      const member = this.pickMember(vs, f);
      if (!member) {
        Atomics.sub(this.vrfCount, 0, 1);
        this.stats.dropsFirewall++;
        return Verdict.DropFirewall;
      }
      replySrc = member.address;
      replySport = member.port;
    }
    let replyDst = f.src, replyDport = f.sport, natPool = 0, natBlock = -1;
    // SNAT IP mode: the server answers to the shared SNAT IP, on a port of its own (not CG-NAT).
    const snat = vs?.snatIp ? this.snat.get(vs.snatIp) : undefined;
    if (vs?.snatIp && snat) {
      const port = snat.claim(f.sport);
      if (port < 0) {
        Atomics.sub(this.vrfCount, 0, 1);
        this.stats.natAllocFailures++;
        return Verdict.DropNat;
      }
      replyDst = vs.snatIp;
      replyDport = port;
    }
    const natRule = !snat && f.src.includes('.') ? this.natRules.find((r) => r.match(f.src)) : undefined;
    if (natRule) {
      const pool = this.pools[natRule.pool] as CgNatPoolAllocator;
      const binding = pool.allocate(f.src, now);
      if (!binding) {
        Atomics.sub(this.vrfCount, 0, 1);
        this.stats.natAllocFailures++;
        return Verdict.DropNat;
      }
      replyDst = binding.address;
      replyDport = binding.port;
      natPool = natRule.pool + 1;
      natBlock = binding.block;
    }
    const a = this.addresses;
    const slot = this.table.insert(proto, a.acquire(f.src), a.acquire(f.dst), f.sport, f.dport,
      a.acquire(replySrc), a.acquire(replyDst), replySport, replyDport);
    const t = this.table;
    t.natPool[slot] = natPool;
    t.natBlock[slot] = natBlock;
    t.vs[slot] = vsIndex + 1;
    t.flags[slot] = (pkt.alg ? F_ALG : 0) | (vs && !vs.mirror ? F_NO_MIRROR : 0);
    t.setState(slot, established ? S_ESTABLISHED : S_SYN_SENT);
    t.lastActivity[slot] = now;
    this.stats.created++;
    this.setTimeout(slot, now);
    this.hooks.emit('new', slot);
    if (established) this.enterEstablished(slot, now);
    return Verdict.Forward;
  }

  private firewallDrops(proto: number, f: FlowTuple): boolean {
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i] as CompiledRule;
      if (r.proto && r.proto !== proto) continue;
      if (r.src && !r.src(f.src)) continue;
      if (r.dst && !r.dst(f.dst)) continue;
      if (r.sport && (f.sport < r.sport[0] || f.sport > r.sport[1])) continue;
      if (r.dport && (f.dport < r.dport[0] || f.dport > r.dport[1])) continue;
      let hits = this.ruleHits.get(r.name);
      if (!hits) this.ruleHits.set(r.name, (hits = [0, 0]));
      hits[r.drop ? 1 : 0]++;
      return r.drop;
    }
    const drop = this.config.firewall.defaultAction === 'drop';
    if (drop) this.defaultHits.dropped++;
    else this.defaultHits.accepted++;
    return drop;
  }

  counterDetail(): CounterDetail {
    return {
      byState: Array.from(this.table.byState),
      firewallRules: [...this.ruleHits].map(([name, [a, d]]) => [name, a, d]),
      firewallDefault: { ...this.defaultHits },
      natBlocksInUse: this.pools.reduce((n, p) => n + p.blocksHeld, 0),
    };
  }

  private pickMember(vs: VirtualServiceConfig, f: FlowTuple): { address: string; port: number } | undefined {
    const total = vs.members.reduce((n, m) => n + m.weight, 0);
    if (total === 0) return undefined;
    const key = vs.persistence === 'client-ip' ? f.src : `${f.src}|${f.sport}`;
    let pick = fnv1a(key, 0x5bd1e995) % total;
    for (const m of vs.members) {
      if (pick < m.weight) return m;
      pick -= m.weight;
    }
    return undefined;
  }

  private track(slot: number, reply: boolean, proto: number, flags: number, now: number): Verdict {
    const t = this.table;
    t.lastActivity[slot] = now;
    const before = t.state[slot] as number;
    if (proto === PROTO_TCP) {
      const next = this.tcpNext(slot, before, reply, flags);
      if (next < 0) return this.invalid();
      t.setState(slot, next);
    } else if (reply && before !== S_ESTABLISHED) {
      t.setState(slot, S_ESTABLISHED);
    }
    const after = t.state[slot] as number;
    this.setTimeout(slot, now);
    if (after !== before) {
      if (after === S_ESTABLISHED) this.enterEstablished(slot, now);
      else if (t.flags[slot] & F_ESTABLISHED) this.hooks.emit('update', slot);
    } else if (proto !== PROTO_TCP && after === S_ESTABLISHED && now - t.lastReported[slot] >= ACTIVITY_REPORT_MS) {
      t.lastReported[slot] = now;
      this.hooks.emit('update', slot);
    }
    return Verdict.Forward;
  }

  private enterEstablished(slot: number, now: number): void {
    const t = this.table;
    if (!(t.flags[slot] & F_ESTABLISHED)) t.establishedAt[slot] = now;
    t.flags[slot] |= F_ESTABLISHED;
    t.lastReported[slot] = now;
    this.hooks.emit('established', slot);
  }

  /** TCP state machine (the subset of nf_conntrack_proto_tcp the fast path needs); -1: invalid packet. */
  private tcpNext(slot: number, state: number, reply: boolean, flags: number): number {
    const t = this.table;
    if (flags & TCP_RST) return S_CLOSE;
    const syn = !!(flags & TCP_SYN), ack = !!(flags & TCP_ACK), fin = !!(flags & TCP_FIN);
    switch (state) {
      case S_SYN_SENT:
        if (reply && syn && ack) return S_SYN_RECV;
        if (!reply && syn && !ack) return S_SYN_SENT; // retransmitted SYN
        return -1;
      case S_SYN_RECV:
        if (!reply && ack && !syn) return fin ? this.firstFin(slot, false) : S_ESTABLISHED;
        if (reply && syn && ack) return S_SYN_RECV;
        return -1;
      case S_ESTABLISHED:
        if (syn) return -1;
        return fin ? this.firstFin(slot, reply) : S_ESTABLISHED;
      case S_FIN_WAIT: {
        const finSenderIsOrig = !!(t.flags[slot] & F_FIN_ORIG);
        const fromOther = reply === finSenderIsOrig;
        if (fromOther && fin) return S_LAST_ACK;
        if (fromOther && ack) return S_CLOSE_WAIT;
        return S_FIN_WAIT;
      }
      case S_CLOSE_WAIT: {
        const fromOther = reply === !!(t.flags[slot] & F_FIN_ORIG);
        return fromOther && fin ? S_LAST_ACK : S_CLOSE_WAIT;
      }
      case S_LAST_ACK: {
        const fromFirstFinSender = reply !== !!(t.flags[slot] & F_FIN_ORIG);
        return fromFirstFinSender && ack ? S_TIME_WAIT : S_LAST_ACK;
      }
      case S_TIME_WAIT:
      case S_CLOSE:
        return state;
      default:
        return -1;
    }
  }

  private firstFin(slot: number, reply: boolean): number {
    if (!reply) this.table.flags[slot] |= F_FIN_ORIG;
    else this.table.flags[slot] &= ~F_FIN_ORIG;
    return S_FIN_WAIT;
  }

  /** Seconds a conntrack in its current state lives without traffic. */
  timeoutOf(slot: number): number {
    const t = this.table;
    const proto = t.proto[slot];
    const cfg = this.config.timeouts;
    if (proto === PROTO_UDP) return cfg.udp;
    if (proto === PROTO_ICMP) return cfg.icmp;
    const state = t.state[slot] as number;
    if (state === S_ESTABLISHED) {
      const vs = t.vs[slot] ? this.config.virtualServices[t.vs[slot] - 1] : undefined;
      return vs?.establishedTimeout ?? cfg.tcp.established;
    }
    return cfg.tcp[TCP_STATES[state] as keyof TcpTimeouts];
  }

  private setTimeout(slot: number, now: number): void {
    const t = this.table;
    t.timeout[slot] = this.timeoutOf(slot);
    // On a backup, synchronised conntracks never expire (rule 4).
    t.deadline[slot] = this.role === 'backup' && t.flags[slot] & F_SYNCED ? Infinity : now + t.timeout[slot] * 1000;
  }

  /** After a configuration change, live conntracks take the new timeouts (keeping their last activity). */
  private retimeAll(): void {
    const t = this.table;
    for (let s = 0; s < t.highWater; s++) {
      if (!t.used[s] || t.flags[s] & F_SYNCED) continue;
      t.timeout[s] = this.timeoutOf(s);
      t.deadline[s] = t.lastActivity[s] + t.timeout[s] * 1000;
    }
  }

  // ---- time ----

  /**
   * Expire conntracks whose deadline has passed, scanning slots from `from`, destroying at most
   * `budget` of them. Returns the slot to continue from, or -1 when the scan is complete.
   */
  tick(now: number, from = 0, budget = Number.MAX_SAFE_INTEGER): number {
    const t = this.table;
    let n = 0;
    for (let s = from; s < t.highWater; s++) {
      if (t.used[s] && t.deadline[s] <= now) {
        this.destroy(s, now, true);
        if (++n >= budget) return s + 1;
      }
    }
    return -1;
  }

  private destroy(slot: number, now: number, emit: boolean): void {
    const t = this.table;
    if (emit) this.hooks.emit('destroy', slot);
    if (t.natPool[slot]) {
      const pool = this.pools[t.natPool[slot] - 1];
      pool?.release(this.addresses.text(t.oSrc[slot]), t.natBlock[slot], t.rDport[slot], now);
    }
    if (this.snat.size) this.snatOf(slot)?.release(t.rDport[slot] as number);
    if (t.flags[slot] & F_SYNCED) this.syncedCount--;
    for (const id of [t.oSrc[slot], t.oDst[slot], t.rSrc[slot], t.rDst[slot]]) this.addresses.release(id as number);
    t.delete(slot);
    Atomics.sub(this.vrfCount, 0, 1);
    this.stats.destroyed++;
  }

  /** Remove every conntrack (VRF deleted); no events. */
  clear(now: number): void {
    const t = this.table;
    for (let s = 0; s < t.highWater; s++) if (t.used[s]) this.destroy(s, now, false);
  }

  // ---- HA ----

  setRole(role: HaRole, now: number): void {
    if (role === this.role) return;
    this.role = role;
    const t = this.table;
    for (let s = 0; s < t.highWater; s++) {
      if (!t.used[s] || !(t.flags[s] & F_SYNCED)) continue;
      if (role === 'backup') {
        t.deadline[s] = Infinity;
        continue;
      }
      // Rule 5: activity time is unknown, so an unused synced conntrack lives its whole current
      // timeout from the switch; with a grace period G < timeout it may go at random after G.
      // Rule 8: after a manual synchronisation the master's activity time is used instead.
      const timeoutMs = t.timeout[s] * 1000;
      const fromActivity = t.lastActivity[s] + timeoutMs;
      if (t.flags[s] & F_ACTIVITY_SYNCED && fromActivity > now) {
        t.deadline[s] = fromActivity;
        continue;
      }
      const grace = this.failoverPolicy.graceSeconds[PROTO_NAME[t.proto[s]] as L4Proto];
      if (grace !== undefined && grace * 1000 < timeoutMs) {
        t.deadline[s] = now + grace * 1000 + Math.floor(Math.random() * (timeoutMs - grace * 1000));
      } else {
        t.deadline[s] = now + timeoutMs;
      }
      t.lastActivity[s] = now;
    }
  }

  /** Write conntracks received from the peer; returns how many were written. */
  upsert(entries: ConntrackEntry[], now: number): number {
    return this.upsertPacked(new PackedReader(packEntries(entries)), now);
  }

  /** Write packed conntracks received from the peer (no object per conntrack); returns how many were written. */
  upsertPacked(r: PackedRecordSource, now: number): number {
    let written = 0;
    for (let i = 0; i < r.count; i++) if (this.upsertRecord(r, i, now)) written++;
    return written;
  }

  private upsertRecord(r: PackedRecordSource, i: number, now: number): boolean {
    const proto = r.proto(i);
    const stateIdx = r.state(i);
    if (PROTO_NAME[proto] === undefined || stateIdx >= TCP_STATES.length) return false;
    const a = this.addresses;
    const t = this.table;
    const oSrc = r.addr(i, 0), oDst = r.addr(i, 1), rSrc = r.addr(i, 2), rDst = r.addr(i, 3);
    const oSport = r.port(i, 0), oDport = r.port(i, 1), rSport = r.port(i, 2), rDport = r.port(i, 3);
    let slot = this.lookupRef(proto, oSrc, oDst, oSport, oDport, true);
    if (slot < 0) {
      const clash = this.lookupRef(proto, rSrc, rDst, rSport, rDport, false);
      if (clash >= 0) this.destroy(clash, now, false);
      if (Atomics.add(this.vrfCount, 0, 1) >= this.config.conntrackMax) {
        Atomics.sub(this.vrfCount, 0, 1);
        this.stats.dropsTableFull++;
        return false;
      }
      slot = t.insert(proto, a.acquireRef(oSrc), a.acquireRef(oDst), oSport, oDport, a.acquireRef(rSrc), a.acquireRef(rDst), rSport, rDport);
      if (this.pools.length) this.adoptNat(slot, now, true);
      const vsName = r.virtualService(i);
      let vsIndex = -1;
      if (this.config.virtualServices.length) {
        const dstText = this.addresses.text(t.oDst[slot] as number);
        vsIndex = this.config.virtualServices.findIndex((v) => vsName !== undefined ? v.name === vsName
          : v.vip === dstText && v.port === oDport && PROTO_CODE[v.protocol] === proto);
      }
      t.vs[slot] = vsIndex + 1;
      const vs = this.config.virtualServices[vsIndex];
      if (vs && !vs.mirror) t.flags[slot] |= F_NO_MIRROR;
      if (this.snat.size) this.snatOf(slot)?.adopt(rDport); // a synced SNAT IP connection holds its port here too
    }
    const flags = r.flags(i);
    const establishedAt = r.establishedAt(i);
    if (!(t.flags[slot] & F_SYNCED)) this.syncedCount++;
    t.flags[slot] = (t.flags[slot] & (F_NO_MIRROR | F_FIN_ORIG)) | F_SYNCED | (flags & R_ALG ? F_ALG : 0)
      | (flags & R_ACTIVITY_SYNCED ? F_ACTIVITY_SYNCED : 0) | (establishedAt ? F_ESTABLISHED : 0);
    t.setState(slot, proto === PROTO_TCP ? stateIdx : (stateIdx === S_ESTABLISHED ? S_ESTABLISHED : S_SYN_SENT));
    const timeout = r.timeout(i);
    t.timeout[slot] = timeout;
    t.establishedAt[slot] = establishedAt;
    t.lastActivity[slot] = flags & R_ACTIVITY_SYNCED ? r.lastActivity(i) : now;
    t.deadline[slot] = this.role === 'backup' ? Infinity : now + timeout * 1000;
    return true;
  }

  private lookup(proto: number, src: string, dst: string, sport: number, dport: number, orig: boolean): number {
    return this.lookupRef(proto, addressRef(src), addressRef(dst), sport, dport, orig);
  }

  private lookupRef(proto: number, src: AddressRef, dst: AddressRef, sport: number, dport: number, orig: boolean): number {
    const s = this.addresses.findRef(src), d = this.addresses.findRef(dst);
    if (s < 0 || d < 0) return -1;
    return orig ? this.table.findOrig(proto, s, d, sport, dport) : this.table.findReply(proto, s, d, sport, dport);
  }

  /** After a pool change, live translated conntracks keep their ports, reserved in the new pools. */
  private readoptNat(now: number): void {
    const t = this.table;
    for (let s = 0; s < t.highWater; s++) {
      if (!t.used[s] || !t.natPool[s]) continue;
      t.natPool[s] = 0;
      t.natBlock[s] = -1;
      this.adoptNat(s, now, true);
    }
  }

  /** Mark the NAT port of a conntrack written from outside (sync or rebalance) as used. */
  private adoptNat(slot: number, now: number, claim: boolean): void {
    const t = this.table;
    const replyDst = this.addresses.text(t.rDst[slot]);
    const subscriber = this.addresses.text(t.oSrc[slot]);
    if (replyDst === subscriber) return;
    for (let i = 0; i < this.pools.length; i++) {
      const pool = this.pools[i] as CgNatPoolAllocator;
      const block = pool.blockOf(replyDst, t.rDport[slot]);
      if (block < 0) continue;
      pool.adopt(subscriber, block, t.rDport[slot], claim, now);
      t.natPool[slot] = i + 1;
      t.natBlock[slot] = block;
      return;
    }
  }

  remove(tuples: FlowTuple[], now: number): number {
    let n = 0;
    for (const o of tuples) {
      const proto = PROTO_CODE[o.proto];
      if (proto === undefined) continue;
      const slot = this.lookup(proto, o.src, o.dst, o.sport, o.dport, true);
      if (slot >= 0) {
        this.destroy(slot, now, false);
        n++;
      }
    }
    return n;
  }

  /** Up to `max` entries from slot `cursor` on; next cursor is -1 at the end. */
  dump(cursor: number, max: number): { entries: ConntrackEntry[]; next: number } {
    const { packed, next } = this.dumpPacked(cursor, max);
    return { entries: unpackEntries(packed, this.config.name), next };
  }

  dumpPacked(cursor: number, max: number): { packed: PackedEntries; next: number } {
    const t = this.table;
    const w = new PackedWriter(Math.min(max, Math.max(16, t.count)));
    let s = cursor;
    for (; s < t.highWater && w.length < max; s++) if (t.used[s]) this.writeRecord(s, w);
    return { packed: w.finish(), next: s >= t.highWater ? -1 : s };
  }

  /** Append conntrack `slot` to a packed batch (with an event kind index for event batches). */
  writeRecord(slot: number, w: PackedWriter, eventKind = 0): void {
    const t = this.table;
    const a = this.addresses;
    const f = t.flags[slot] as number;
    const flags = (f & F_ALG ? R_ALG : 0) | (f & F_SYNCED ? R_SYNCED : 0) | (f & F_ACTIVITY_SYNCED ? R_ACTIVITY_SYNCED : 0) | (f & F_NO_MIRROR ? R_NO_SYNC : 0);
    const vs = t.vs[slot] ? this.config.virtualServices[(t.vs[slot] as number) - 1]?.name : undefined;
    w.addRaw(t.proto[slot] as number, t.state[slot] as number, flags,
      [a.ref(t.oSrc[slot] as number), a.ref(t.oDst[slot] as number), a.ref(t.rSrc[slot] as number), a.ref(t.rDst[slot] as number)],
      [t.oSport[slot] as number, t.oDport[slot] as number, t.rSport[slot] as number, t.rDport[slot] as number],
      t.timeout[slot] as number, t.establishedAt[slot] as number, t.lastActivity[slot] as number, vs, eventKind);
  }

  /** Take every conntrack out (for a rebalance); the table is left empty, NAT blocks stay claimed. */
  exportAll(): PackedMove {
    const t = this.table;
    const n = t.count;
    const w = new PackedWriter(Math.max(16, n));
    const move = { deadline: new Float64Array(n), flags: new Uint8Array(n), natPool: new Uint16Array(n), natBlock: new Int32Array(n) };
    let k = 0;
    for (let s = 0; s < t.highWater; s++) {
      if (!t.used[s]) continue;
      this.writeRecord(s, w);
      move.deadline[k] = t.deadline[s] as number;
      move.flags[k] = t.flags[s] as number;
      move.natPool[k] = t.natPool[s] as number;
      move.natBlock[k] = t.natBlock[s] as number;
      k++;
    }
    for (const p of this.pools) p.detachAll();
    for (let s = 0; s < t.highWater; s++) {
      if (!t.used[s]) continue;
      for (const id of [t.oSrc[s], t.oDst[s], t.rSrc[s], t.rDst[s]]) this.addresses.release(id as number);
      t.delete(s);
      Atomics.sub(this.vrfCount, 0, 1);
    }
    this.syncedCount = 0;
    return { packed: w.finish(), ...move };
  }

  importMoved(move: PackedMove, now: number): void {
    const a = this.addresses;
    const t = this.table;
    const r = new PackedReader(move.packed);
    for (let i = 0; i < r.count; i++) {
      const slot = t.insert(r.proto(i), a.acquireRef(r.addr(i, 0)), a.acquireRef(r.addr(i, 1)), r.port(i, 0), r.port(i, 1),
        a.acquireRef(r.addr(i, 2)), a.acquireRef(r.addr(i, 3)), r.port(i, 2), r.port(i, 3));
      Atomics.add(this.vrfCount, 0, 1);
      const flags = move.flags[i] as number;
      t.setState(slot, r.state(i));
      t.flags[slot] = flags;
      t.timeout[slot] = r.timeout(i);
      t.deadline[slot] = move.deadline[i] as number;
      t.establishedAt[slot] = r.establishedAt(i);
      t.lastActivity[slot] = r.lastActivity(i);
      t.lastReported[slot] = r.lastActivity(i);
      const vsName = r.virtualService(i);
      t.vs[slot] = vsName === undefined ? 0 : this.config.virtualServices.findIndex((v) => v.name === vsName) + 1;
      const natPool = move.natPool[i] as number;
      if (natPool) {
        const pool = this.pools[natPool - 1];
        pool?.adopt(a.text(t.oSrc[slot] as number), move.natBlock[i] as number, r.port(i, 3), false, now);
        t.natPool[slot] = pool ? natPool : 0;
        t.natBlock[slot] = move.natBlock[i] as number;
      }
      if (flags & F_SYNCED) this.syncedCount++;
    }
  }

  virtualServiceStats(): Map<string, VirtualServiceStats> {
    const out = new Map<string, VirtualServiceStats>();
    for (const vs of this.config.virtualServices) out.set(vs.name, { connections: 0, mirrorConnListOnActive: 0, mirroredConnectionsOnStandby: 0 });
    const t = this.table;
    for (let s = 0; s < t.highWater; s++) {
      if (!t.used[s] || !t.vs[s]) continue;
      const vs = this.config.virtualServices[t.vs[s] - 1];
      const st = vs && out.get(vs.name);
      if (!vs || !st) continue;
      st.connections++;
      if (!vs.mirror) continue;
      // Both sides count the same set: established connections (a synced entry that left
      // established on the master was updated to its closing state and is no longer mirrored).
      if (this.role === 'backup') {
        if (t.flags[s] & F_SYNCED && t.state[s] === S_ESTABLISHED) st.mirroredConnectionsOnStandby++;
      } else if (t.state[s] === S_ESTABLISHED && !(t.flags[s] & F_ALG)) {
        st.mirrorConnListOnActive++;
      }
    }
    return out;
  }

  toEntry(slot: number): ConntrackEntry {
    const t = this.table;
    const a = this.addresses;
    const proto = PROTO_NAME[t.proto[slot] as number] as L4Proto;
    const flags = t.flags[slot] as number;
    const e: ConntrackEntry = {
      vrf: this.config.name,
      orig: { proto, src: a.text(t.oSrc[slot] as number), dst: a.text(t.oDst[slot] as number), sport: t.oSport[slot] as number, dport: t.oDport[slot] as number },
      reply: { proto, src: a.text(t.rSrc[slot] as number), dst: a.text(t.rDst[slot] as number), sport: t.rSport[slot] as number, dport: t.rDport[slot] as number },
      state: TCP_STATES[t.state[slot] as number] as TcpState,
      timeout: t.timeout[slot] as number,
      alg: !!(flags & F_ALG),
      establishedAt: t.establishedAt[slot] as number,
      lastActivity: t.lastActivity[slot] as number,
    };
    if (t.vs[slot]) e.virtualService = this.config.virtualServices[(t.vs[slot] as number) - 1]?.name;
    if (flags & F_SYNCED) e.synced = true;
    if (flags & F_NO_MIRROR) e.noSync = true;
    if (flags & F_ACTIVITY_SYNCED) e.activitySynced = true;
    return e;
  }
}
