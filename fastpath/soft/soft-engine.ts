// The soft engine: the DataplaneEngine of SPEC run in-process on a pool of worker threads
// (nb-event-threads of them). Each conntrack lives in the worker chosen by ownerWorker(orig);
// packets, sync writes and dumps are routed the same way. Time comes from an injectable Clock;
// expiry runs on clock ticks sent to the workers.
import { Worker } from 'node:worker_threads';
import type {
  ConntrackEntry, ConntrackEvent, DataplaneEngine, FailoverPolicy, FlowTuple, HaRole, PackedConntrackBatch, VrfDataplaneConfig,
} from '../engine.js';
import { logger } from '../../core/log.js';
import { RealClock, type Clock, type TimerHandle } from '../clock.js';
import { IPV4_SYNC_RECORD_BYTES } from '../engine.js';
import { ipv4TupleHash, ownerWorker } from '../tuple-hash.js';
import { CgNatPoolAllocator, type NatBlockLog } from './cg-nat-allocator.js';
import { PackedDumpBatch } from './packed-dump-batch.js';
import { SNAT_PORTS_BYTES } from './snat-ports.js';
import { packPackets } from './packet-codec.js';
import { EVENT_KINDS, PackedReader, packEntries, unpackEntries, type PackedEntries } from './entry-codec.js';
import type { MemoryReport, ReplyMessage, SoftCounters, SoftRuleDelta, VsStatsReply, WorkerMessageToMain, WorkerRequest } from './messages.js';
import { parseFirewallDefaults, parseFirewallRule, parseNetworkProfiles, parseVrfConfig, type SoftVrfConfig } from '../config/vrf-config.js';
import { applyRuleDelta, positionsOf } from '../config/rule-delta.js';
import type { CounterDetail, SoftPacket, Verdict, VirtualServiceStats } from './vrf-dataplane.js';
import { moveBuffers, routeMoves, type PackedMove } from './packed-move.js';

const log = logger('fastpath');
const natLog = logger('cg-nat');

const DEFAULT_CONNTRACK_MAX = 1048576;
const DUMP_BATCH = 4096;
const PACKETS_PER_MESSAGE = 8192;

export interface SoftEngineOptions {
  clock?: Clock;
  /** Initial pool size (the subsystem sets nb-event-threads on the first commit). */
  workers?: number;
  /** Start the workers in create() instead of with the first VRF (tests that inspect an empty pool). */
  eagerWorkers?: boolean;
  /** Expiry scan period in ms of the clock. */
  tickMs?: number;
}

interface WorkerHandle {
  worker: Worker;
  index: number;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  counters: Record<string, SoftCounters>;
  exited: boolean;
  /** We ended it (close, rebalance): not a crash. */
  stopping: boolean;
}

/** A worker that keeps dying is not restarted more often than this. */
const MAX_RESTARTS_PER_MINUTE = 3;

interface LiveVrf {
  config: SoftVrfConfig;
  vrfCount: SharedArrayBuffer;
  natClaims: SharedArrayBuffer[];
  /** Per SNAT IP of the virtual services: its port bitmap, shared by the workers. */
  snatClaims: Record<string, SharedArrayBuffer>;
  role: HaRole;
  policy?: FailoverPolicy;
}

/** A VRF configuration staged by prepareVrf; with `delta`, only that goes to the workers at apply. */
interface StagedVrf {
  config: SoftVrfConfig;
  /** The rule delta from `base` (the live configuration it was computed against) to `config`. */
  delta?: { base: SoftVrfConfig; rules: SoftRuleDelta };
}

/** How the engine's workers were told about configuration: counted per message sent to a worker. */
export interface ConfigMessageStats {
  /** Whole VRF configurations (every rule, pools, services). */
  vrfConfigs: number;
  /** Rule deltas (a commit that changed only firewall rules). */
  ruleDeltas: number;
  /** Firewall rules carried by those messages (whole configurations and deltas alike). */
  rulesSent: number;
}

/** Counters that only grow (the others, conntracks and synced, are gauges of the live tables). */
const CUMULATIVE = ['created', 'destroyed', 'dropsTableFull', 'dropsFirewall', 'dropsBackup', 'natAllocFailures', 'dropsInvalid', 'synCookies'] as const;

function emptyCounters(): SoftCounters {
  return { conntracks: 0, synced: 0, created: 0, destroyed: 0, dropsTableFull: 0, dropsFirewall: 0, dropsBackup: 0, natAllocFailures: 0, dropsInvalid: 0, synCookies: 0 };
}

/**
 * Whether the rules after a delta are in the committed order (`expected`, running's JSON). When the
 * delta replaced rules where they were (the result shares the live list's position index), the
 * other rules are the live ones at their places, checked against running when they were
 * committed: the replaced places are what is left to check, not the whole list (issue 8).
 */
function sameRuleOrder(live: readonly { name: string }[], next: readonly { name: string }[], expected: readonly { name?: unknown }[],
  placed: readonly { name: string }[]): boolean {
  if (expected.length !== next.length) return false;
  const at = positionsOf(next, (r) => r.name);
  if (at === positionsOf(live, (r) => r.name) && live.length === next.length) {
    return placed.every((r) => {
      const i = at.get(r.name);
      return i !== undefined && next[i] === r && expected[i]?.name === r.name && (i === 0 || expected[i - 1]?.name === next[i - 1]!.name);
    });
  }
  return next.every((r, i) => r.name === expected[i]?.name);
}

export class SoftEngine implements DataplaneEngine {
  readonly kind = 'soft' as const;
  readonly clock: Clock;
  /** The running workers: empty until the first VRF is applied (an idle agent runs no worker threads). */
  private pool: WorkerHandle[] = [];
  /** How many workers the pool has, or will have once started (nb-event-threads). */
  private size = 2;
  private starting: Promise<void> | undefined;
  /** VRFs being added (their pool may be starting): the last removal must not stop it under them. */
  private adding = 0;
  private nextId = 1;
  private readonly vrfs = new Map<string, LiveVrf>();
  private readonly staged = new Map<string, StagedVrf>();
  private readonly configStats: ConfigMessageStats = { vrfConfigs: 0, ruleDeltas: 0, rulesSent: 0 };
  private readonly listeners = new Set<(ev: ConntrackEvent) => void>();
  private readonly natListeners = new Set<(l: NatBlockLog) => void>();
  private readonly ticker: TimerHandle;
  private tickRunning: Promise<void> | undefined;
  private tickAgain = false;
  /** Rebalance in progress: every operation waits for it. */
  private rebalancing: Promise<void> = Promise.resolve();
  private rebalancingNow = false;
  private activeOps = 0;
  private drainWaiters: (() => void)[] = [];
  private closed = false;
  private restarts: number[] = [];
  /** Cumulative counters of workers that were replaced (rebalance, crash), so totals never go back. */
  private readonly retired = new Map<string, SoftCounters>();
  private workerRestarts = 0;

  private constructor(opts: SoftEngineOptions) {
    this.clock = opts.clock ?? new RealClock();
    this.ticker = this.clock.setInterval(opts.tickMs ?? 1000, () => this.tick());
  }

  static async create(opts: SoftEngineOptions = {}): Promise<SoftEngine> {
    const engine = new SoftEngine(opts);
    const n = opts.workers ?? 2;
    if (!Number.isInteger(n) || n < 1 || n > 32) throw new RangeError(`nb-event-threads must be 1..32, got ${n}`);
    engine.size = n;
    if (opts.eagerWorkers) await engine.startPool();
    return engine;
  }

  /** The pool size (nb-event-threads), whether or not its workers have been started yet. */
  get workers(): number {
    return this.size;
  }

  /** Whether the worker threads run (they start with the first VRF: each costs ~10 MB of RSS). */
  get started(): boolean {
    return this.pool.length > 0;
  }

  /**
   * Stops the workers once no VRF is left (their isolates and whatever a large ruleset left in
   * their heaps go back to the system); the next VRF starts them again at the set size.
   */
  private async stopPool(): Promise<void> {
    const old = this.pool;
    if (old.length === 0) return;
    this.pool = [];
    await this.settleTicks(); // a tick already sent to the old workers finishes first
    await Promise.all(old.map((w) => this.stop(w)));
    log.info({ workers: old.length }, 'soft-engine workers stopped (no VRF left)');
  }

  /** Starts the pool at its set size unless it runs (once, whoever asks first). */
  private startPool(): Promise<void> {
    if (this.pool.length > 0) return Promise.resolve();
    this.starting ??= (async () => {
      const started = Date.now();
      try {
        this.pool = await this.spawn(this.size);
        log.info({ workers: this.size, ms: Date.now() - started }, 'soft-engine workers started');
      } finally {
        this.starting = undefined;
      }
    })();
    return this.starting;
  }

  // ---- configuration ----

  async prepareVrf(config: VrfDataplaneConfig): Promise<void> {
    const delta = config.ruleDelta && this.stageRuleDelta(config);
    if (delta) {
      this.staged.set(config.name, delta);
      return;
    }
    const parsed = parseVrfConfig(config.json, parseNetworkProfiles(config.networkProfiles), config.conntrackMax ?? DEFAULT_CONNTRACK_MAX);
    if (parsed.name !== config.name) throw new Error(`VRF config name ${parsed.name} does not match ${config.name}`);
    this.staged.set(config.name, { config: parsed });
  }

  /**
   * A commit that changed only this VRF's firewall rules: the live configuration with the delta
   * applied, or undefined (configure the VRF whole) when the VRF is not live or the result's rule
   * order is not the one config.json has (the delta is only ever an optimisation).
   */
  private stageRuleDelta(config: VrfDataplaneConfig): StagedVrf | undefined {
    const live = this.vrfs.get(config.name);
    const d = config.ruleDelta;
    if (!live || !d) return undefined;
    const fwPath = `/tandem-vrf:vrf[name='${config.name}']/tandem-firewall:firewall`;
    const rules: SoftRuleDelta = {
      ...parseFirewallDefaults(d.leaves, fwPath),
      removed: d.removed,
      placed: d.placed.map(({ after, rule }) => ({ after, rule: parseFirewallRule(rule, `${fwPath}/rule[name='${String(rule.name)}']`) })),
    };
    let next: SoftVrfConfig['firewall']['rules'];
    try {
      next = applyRuleDelta(live.config.firewall.rules, (r) => r.name, rules);
    } catch {
      return undefined;
    }
    const fw = config.json['tandem-firewall:firewall'] as { rule?: { name?: unknown }[] } | undefined;
    const expected = fw?.rule ?? [];
    if (!sameRuleOrder(live.config.firewall.rules, next, expected, rules.placed.map((p) => p.rule))) {
      log.warn({ vrf: config.name }, 'rule delta does not give the committed rule order; configuring the VRF whole');
      return undefined;
    }
    const base = live.config;
    return { config: { ...base, firewall: { defaultAction: rules.defaultAction, dropInvalid: rules.dropInvalid, rules: next } }, delta: { base, rules } };
  }

  /** Per worker, the firewall rules it evaluates in order, as "name:action" (tests, diagnostics). */
  async firewallRuleOrder(vrf: string): Promise<string[][]> {
    return this.gated(() => this.all({ t: 'rule-names', vrf }) as Promise<string[][]>);
  }

  /** How many configuration messages went to workers, and how many rules they carried (tests, benchmarks). */
  configMessageStats(): ConfigMessageStats {
    return { ...this.configStats };
  }

  async applyVrf(name: string, config: VrfDataplaneConfig | undefined): Promise<void> {
    return this.gated(async () => {
      if (!config) {
        this.staged.delete(name);
        this.retired.delete(name);
        if (!this.vrfs.delete(name)) return;
        await this.all({ t: 'vrf-remove', vrf: name, now: this.clock.now() });
        log.info({ vrf: name }, 'VRF removed from the soft dataplane');
        if (this.vrfs.size === 0 && this.adding === 0) await this.stopPool();
        return;
      }
      let staged = this.staged.get(name);
      this.staged.delete(name);
      if (!staged) {
        await this.prepareVrf(config);
        staged = this.staged.get(name) as StagedVrf;
        this.staged.delete(name);
      }
      const old = this.vrfs.get(name);
      if (staged.delta && old && old.config === staged.delta.base) {
        await this.sendRuleDelta(this.pool, name, staged.delta.rules, staged.config.firewall.rules.length);
        old.config = staged.config;
        log.debug({ vrf: name, rules: staged.config.firewall.rules.length, placed: staged.delta.rules.placed.length, removed: staged.delta.rules.removed.length },
          'firewall rule delta applied to the soft dataplane');
        return;
      }
      const parsed = staged.config;
      const natClaims = parsed.cgNat.pools.map((p, i) => {
        const same = old && JSON.stringify(old.config.cgNat.pools[i]) === JSON.stringify(p) && old.config.cgNat.pools.length === parsed.cgNat.pools.length;
        return same ? (old.natClaims[i] as SharedArrayBuffer) : new SharedArrayBuffer(4 * CgNatPoolAllocator.blockCount(p));
      });
      const snatClaims: Record<string, SharedArrayBuffer> = {};
      for (const vs of parsed.virtualServices) {
        if (vs.snatIp) snatClaims[vs.snatIp] = old?.snatClaims[vs.snatIp] ?? snatClaims[vs.snatIp] ?? new SharedArrayBuffer(SNAT_PORTS_BYTES);
      }
      const live: LiveVrf = { config: parsed, vrfCount: old?.vrfCount ?? new SharedArrayBuffer(4), natClaims, snatClaims, role: old?.role ?? 'master', policy: old?.policy };
      this.adding++;
      try {
        await this.startPool();
        this.vrfs.set(name, live);
      } finally {
        this.adding--;
      }
      await this.configureVrf(this.pool, live);
      log.info({ vrf: name, rules: parsed.firewall.rules.length, pools: parsed.cgNat.pools.length, virtualServices: parsed.virtualServices.length },
        'VRF configuration applied to the soft dataplane');
    });
  }

  async abortVrf(name: string): Promise<void> {
    this.staged.delete(name);
  }

  /** Send a rule delta to every worker of `pool`; each answers with its rule count, which must be `expected`. */
  private async sendRuleDelta(pool: WorkerHandle[], vrf: string, delta: SoftRuleDelta, expected: number): Promise<void> {
    this.configStats.ruleDeltas += pool.length;
    this.configStats.rulesSent += pool.length * delta.placed.length;
    const counts = await this.all({ t: 'vrf-rules', vrf, delta }, pool);
    const wrong = counts.findIndex((n) => n !== expected);
    if (wrong >= 0) throw new Error(`worker ${wrong} has ${String(counts[wrong])} firewall rules after the delta, expected ${expected}`);
  }

  private async configureVrf(pool: WorkerHandle[], live: LiveVrf): Promise<void> {
    this.configStats.vrfConfigs += pool.length;
    this.configStats.rulesSent += pool.length * live.config.firewall.rules.length;
    await this.all({ t: 'vrf', config: live.config, vrfCount: live.vrfCount, natClaims: live.natClaims, snatClaims: live.snatClaims, now: this.clock.now() }, pool);
    if (live.role !== 'master') await this.all({ t: 'role', vrf: live.config.name, role: live.role, now: this.clock.now() }, pool);
    if (live.policy) await this.all({ t: 'policy', vrf: live.config.name, policy: live.policy }, pool);
  }

  /** Resize the pool: conntracks move to their new owner worker (hash of the tuple), nothing is lost. */
  async setWorkers(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 1 || n > 32) throw new RangeError(`nb-event-threads must be 1..32, got ${n}`);
    for (let i = 0; i < 100 && this.rebalancingNow; i++) await this.rebalancing;
    if (this.starting) await this.starting;
    if (n === this.size) return;
    if (this.pool.length === 0) {
      // Not started yet: the first VRF starts n workers, nothing to move.
      this.size = n;
      return;
    }
    // New operations wait from here on; those already running finish on the old pool first.
    this.rebalancingNow = true;
    const run = (async () => {
      try {
        while (this.activeOps > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
        await this.rebalance(n);
      } finally {
        this.rebalancingNow = false;
      }
    })();
    this.rebalancing = run.catch(() => undefined);
    await run;
  }

  /** Run a public operation outside any rebalance (the pool cannot change under it). */
  private async gated<T>(fn: () => Promise<T>): Promise<T> {
    for (let i = 0; i < 100 && this.rebalancingNow; i++) await this.rebalancing;
    this.activeOps++;
    try {
      return await fn();
    } finally {
      if (--this.activeOps === 0) for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  private async rebalance(n: number): Promise<void> {
    const started = Date.now();
    const old = this.pool;
    const exported = await Promise.all(old.map((w) => this.request(w, { t: 'export' }) as Promise<Record<string, PackedMove>>));
    const fresh = await this.spawn(n);
    let moved = 0;
    for (const live of this.vrfs.values()) {
      await this.configureVrf(fresh, live);
      const parts = exported.map((e) => e[live.config.name]).filter((p): p is PackedMove => p !== undefined);
      const perWorker = routeMoves(parts, n);
      await Promise.all(fresh.map((w, i) => {
        const part = perWorker[i] as PackedMove;
        return this.request(w, { t: 'import', vrf: live.config.name, moved: part, now: this.clock.now() }, moveBuffers(part));
      }));
      moved += perWorker.reduce((s, p) => s + p.packed.count, 0);
    }
    for (const w of old) this.retire(w);
    this.pool = fresh;
    this.size = n;
    await Promise.all(old.map((w) => this.stop(w)));
    log.info({ from: old.length, to: n, moved, ms: Date.now() - started }, 'worker pool rebalanced');
  }

  // ---- HA ----

  async setRole(vrf: string, role: HaRole): Promise<void> {
    return this.gated(async () => {
      const live = this.live(vrf);
      if (live.role === role) return;
      live.role = role;
      await this.all({ t: 'role', vrf, role, now: this.clock.now() });
      log.info({ vrf, role }, 'dataplane role changed');
    });
  }

  role(vrf: string): HaRole {
    return this.live(vrf).role;
  }

  setFailoverPolicy(vrf: string, policy: FailoverPolicy): void {
    const live = this.live(vrf);
    live.policy = policy;
    for (const w of this.pool) void this.request(w, { t: 'policy', vrf, policy }).catch((e: Error) => log.error({ vrf, err: e.message }, 'failover policy not applied'));
  }

  // ---- conntracks ----

  onEvent(listener: (ev: ConntrackEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** CG-NAT port-block allocation and release records (also logged as JSON lines). */
  onNatLog(listener: (l: NatBlockLog) => void): () => void {
    this.natListeners.add(listener);
    return () => this.natListeners.delete(listener);
  }

  async dump(vrf: string, batch: (entries: ConntrackEntry[]) => void | Promise<void>): Promise<void> {
    return this.dumpBatches(vrf, (packed) => batch(unpackEntries(packed, vrf)));
  }

  async dumpPacked(vrf: string, batch: (b: PackedConntrackBatch) => void | Promise<void>): Promise<void> {
    return this.dumpBatches(vrf, (packed) => batch(new PackedDumpBatch(packed, vrf)));
  }

  private async dumpBatches(vrf: string, batch: (packed: PackedEntries) => void | Promise<void>): Promise<void> {
    return this.gated(async () => {
      this.live(vrf);
      for (const w of this.pool) {
        let cursor = 0;
        while (cursor >= 0) {
          const r = await this.request(w, { t: 'dump', vrf, cursor, max: DUMP_BATCH }) as { packed: PackedEntries; next: number };
          if (r.packed.count > 0) await batch(r.packed);
          cursor = r.next;
        }
      }
    });
  }

  async upsert(entries: ConntrackEntry[]): Promise<number> {
    return this.gated(async () => {
      const now = this.clock.now();
      const jobs: Promise<unknown>[] = [];
      for (const [vrf, list] of this.groupByVrf(entries, (e) => e.vrf)) {
        this.live(vrf);
        const parts = this.split(list, (e) => e.orig);
        parts.forEach((part, i) => {
          if (part.length === 0) return;
          const packed = packEntries(part);
          jobs.push(this.request(this.pool[i] as WorkerHandle, { t: 'upsert', vrf, packed, now }, [packed.buf]));
        });
      }
      return (await Promise.all(jobs)).reduce((s: number, n) => s + (n as number), 0);
    });
  }

  /** Packed IPv4 sync records straight to their owners' tables (see DataplaneEngine.upsertIPv4Records). */
  async upsertIPv4Records(vrf: string, records: Uint8Array): Promise<number> {
    if (records.byteLength % IPV4_SYNC_RECORD_BYTES !== 0) {
      throw new TypeError(`IPv4 sync records: ${records.byteLength} bytes is not a whole number of ${IPV4_SYNC_RECORD_BYTES}-byte records`);
    }
    return this.gated(async () => {
      this.live(vrf);
      const now = this.clock.now();
      const n = this.pool.length;
      const count = records.byteLength / IPV4_SYNC_RECORD_BYTES;
      const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
      // Owner of each record (hash of its original source, as ownerWorker); a frame from a peer
      // with the same pool size usually belongs to one worker only: then one copy, no split.
      const owners = new Uint16Array(count);
      const perWorker = new Array<number>(n).fill(0);
      for (let i = 0; i < count; i++) {
        const w = n === 1 ? 0 : ipv4TupleHash(view.getUint32(i * IPV4_SYNC_RECORD_BYTES + 10)) % n;
        owners[i] = w;
        perWorker[w] = (perWorker[w] as number) + 1;
      }
      const jobs: Promise<unknown>[] = [];
      for (let w = 0; w < n; w++) {
        const k = perWorker[w] as number;
        if (k === 0) continue;
        const out = new Uint8Array(k * IPV4_SYNC_RECORD_BYTES);
        if (k === count) {
          out.set(records);
        } else {
          let o = 0;
          for (let i = 0; i < count; i++) {
            if (owners[i] !== w) continue;
            out.set(records.subarray(i * IPV4_SYNC_RECORD_BYTES, (i + 1) * IPV4_SYNC_RECORD_BYTES), o);
            o += IPV4_SYNC_RECORD_BYTES;
          }
        }
        jobs.push(this.request(this.pool[w] as WorkerHandle, { t: 'upsert-ipv4', vrf, records: out.buffer, now }, [out.buffer]));
      }
      return (await Promise.all(jobs)).reduce((s: number, x) => s + (x as number), 0);
    });
  }

  async remove(vrf: string, tuples: FlowTuple[]): Promise<number> {
    return this.gated(async () => {
      this.live(vrf);
      const now = this.clock.now();
      const parts = this.split(tuples, (t) => t);
      const counts = await Promise.all(parts.map((part, i) => part.length ? this.request(this.pool[i] as WorkerHandle, { t: 'remove', vrf, tuples: part, now }) : 0));
      return counts.reduce((s: number, n) => s + (n as number), 0);
    });
  }

  counters(vrf: string): SoftCounters {
    this.live(vrf);
    const sum = { ...(this.retired.get(vrf) ?? emptyCounters()) };
    for (const w of this.pool) {
      const c = w.counters[vrf];
      if (!c) continue;
      for (const k of Object.keys(sum) as (keyof SoftCounters)[]) sum[k] += c[k];
    }
    return sum;
  }

  // ---- traffic ----

  /** Run packets through a VRF's dataplane; the verdict of each packet, in order. */
  async inject(vrf: string, packets: SoftPacket[]): Promise<Verdict[]> {
    return this.gated(async () => {
      this.live(vrf);
      const now = this.clock.now();
      const n = this.pool.length;
      const idx: number[][] = this.pool.map(() => []);
      packets.forEach((p, i) => idx[ownerWorker(p.flow, n)]?.push(i));
      const verdicts = new Array<Verdict>(packets.length);
      await Promise.all(idx.map(async (indices, w) => {
        for (let off = 0; off < indices.length; off += PACKETS_PER_MESSAGE) {
          const slice = indices.slice(off, off + PACKETS_PER_MESSAGE);
          const packed = packPackets(packets, slice);
          const r = await this.request(this.pool[w] as WorkerHandle, { t: 'packets', vrf, now, packets: packed }, [packed.buf]) as Uint8Array;
          slice.forEach((i, k) => { verdicts[i] = r[k] as Verdict; });
        }
      }));
      return verdicts;
    });
  }

  /** Wait until every request, expiry tick and event sent so far has been handled. */
  async flush(): Promise<void> {
    // Ticks first, outside the gate: a tick waiting for a rebalance must not wait for us too.
    await this.settleTicks();
    await this.gated(() => this.all({ t: 'flush' }));
  }

  async virtualServiceStats(vrf: string): Promise<Map<string, VirtualServiceStats>> {
    this.live(vrf);
    const replies = await this.gated(() => Promise.all(this.pool.map((w) => this.request(w, { t: 'vs-stats', vrf }) as Promise<VsStatsReply>)));
    const out = new Map<string, VirtualServiceStats>();
    for (const r of replies) {
      for (const [name, s] of Object.entries(r)) {
        const acc = out.get(name) ?? { connections: 0, mirrorConnListOnActive: 0, mirroredConnectionsOnStandby: 0 };
        acc.connections += s.connections;
        acc.mirrorConnListOnActive += s.mirrorConnListOnActive;
        acc.mirroredConnectionsOnStandby += s.mirroredConnectionsOnStandby;
        out.set(name, acc);
      }
    }
    return out;
  }

  /**
   * Per worker: the counters of a VRF and the ones that are not plain numbers (conntracks by
   * state, firewall rules, NAT blocks). Live values the workers keep; no table is walked.
   */
  async workerCounters(vrf: string): Promise<{ worker: number; counters: SoftCounters; detail: CounterDetail }[]> {
    this.live(vrf);
    return this.gated(() => Promise.all(this.pool.map(async (w) => {
      const detail = await this.request(w, { t: 'counter-detail', vrf }) as CounterDetail;
      return { worker: w.index, counters: { ...(w.counters[vrf] ?? emptyCounters()) }, detail };
    })));
  }

  async memory(): Promise<MemoryReport> {
    const rs = await this.gated(() => Promise.all(this.pool.map((w) => this.request(w, { t: 'memory' }) as Promise<MemoryReport>)));
    const sum: MemoryReport = { tableBytes: 0, addressBytes: 0, addresses: 0, conntracks: 0, heapUsed: 0 };
    for (const r of rs) for (const k of Object.keys(sum) as (keyof MemoryReport)[]) sum[k] += r[k];
    return sum;
  }

  vrfNames(): string[] {
    return [...this.vrfs.keys()];
  }

  /** A virtual service of a live VRF's configuration (traffic aims at it), or undefined. */
  virtualService(vrf: string, name: string): { vip: string; port: number; protocol: 'tcp' | 'udp' } | undefined {
    const vs = this.vrfs.get(vrf)?.config.virtualServices.find((v) => v.name === name);
    return vs && { vip: vs.vip, port: vs.port, protocol: vs.protocol };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ticker.cancel();
    await this.rebalancing;
    await this.starting?.catch(() => undefined);
    await Promise.all(this.pool.map((w) => this.stop(w)));
    this.pool = [];
  }

  // ---- internals ----

  private live(vrf: string): LiveVrf {
    const v = this.vrfs.get(vrf);
    if (!v) throw new Error(`VRF ${JSON.stringify(vrf)} is not configured in the soft dataplane`);
    return v;
  }

  private groupByVrf<T>(items: T[], vrfOf: (x: T) => string): Map<string, T[]> {
    const m = new Map<string, T[]>();
    for (const x of items) {
      const k = vrfOf(x);
      let l = m.get(k);
      if (!l) m.set(k, (l = []));
      l.push(x);
    }
    return m;
  }

  private split<T>(items: T[], tupleOf: (x: T) => FlowTuple): T[][] {
    const n = this.pool.length;
    const parts: T[][] = this.pool.map(() => []);
    for (const x of items) parts[ownerWorker(tupleOf(x), n)]?.push(x);
    return parts;
  }

  // Ticks never pile up: while one runs, later ones collapse into a single follow-up at the then
  // current time (a ManualClock advance of an hour is one scan, not 3600).
  private tick(): void {
    if (this.closed) return;
    if (this.tickRunning) {
      this.tickAgain = true;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.tickAgain = false;
        await this.gated(() => this.all({ t: 'tick', now: this.clock.now() })).catch((e: Error) => log.error({ err: e.message }, 'expiry tick failed'));
      } while (this.tickAgain && !this.closed);
      this.tickRunning = undefined;
    };
    this.tickRunning = run();
  }

  private async settleTicks(): Promise<void> {
    for (let i = 0; i < 100 && this.tickRunning; i++) await this.tickRunning;
  }

  private async all(req: WorkerRequest, pool = this.pool): Promise<unknown[]> {
    return Promise.all(pool.map((w) => this.request(w, req)));
  }

  private request(w: WorkerHandle, req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (w.exited) return Promise.reject(new Error(`soft-engine worker ${w.index} has exited`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      w.worker.postMessage({ id, req }, transfer);
    });
  }

  private async spawn(n: number): Promise<WorkerHandle[]> {
    const handles: WorkerHandle[] = [];
    for (let index = 0; index < n; index++) handles.push(this.spawnOne(index));
    await Promise.all(handles.map((h) => this.request(h, { t: 'flush' })));
    return handles;
  }

  private spawnOne(index: number): WorkerHandle {
    const worker = new Worker(new URL('./worker-entry.js', import.meta.url), { workerData: { index } });
    const h: WorkerHandle = { worker, index, pending: new Map(), counters: {}, exited: false, stopping: false };
    worker.on('message', (m: WorkerMessageToMain) => this.onWorkerMessage(h, m));
    worker.on('error', (err) => log.error({ worker: index, err: err.message }, 'soft-engine worker failed'));
    worker.on('exit', (code) => {
      h.exited = true;
      for (const p of h.pending.values()) p.reject(new Error(`soft-engine worker ${index} exited with code ${code}`));
      h.pending.clear();
      if (!h.stopping && !this.closed && this.pool[index] === h) void this.restart(h, code);
    });
    return h;
  }

  // A crashed worker is replaced so the dataplane keeps running; its conntracks are gone (the
  // peer still holds the synchronised ones), which the log says, with how many.
  private async restart(dead: WorkerHandle, code: number): Promise<void> {
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    const lost = Object.fromEntries(Object.entries(dead.counters).map(([vrf, c]) => [vrf, c.conntracks]));
    if (this.restarts.length >= MAX_RESTARTS_PER_MINUTE) {
      log.fatal({ worker: dead.index, code, lost }, 'soft-engine worker died again; not restarting it (more than 3 restarts in a minute)');
      return;
    }
    this.restarts.push(now);
    log.error({ worker: dead.index, code, lost }, 'soft-engine worker died; restarting it, its conntracks are lost');
    for (const [vrf, n] of Object.entries(lost)) {
      const live = this.vrfs.get(vrf);
      if (live && n > 0) Atomics.sub(new Int32Array(live.vrfCount), 0, n);
    }
    this.retire(dead);
    const h = this.spawnOne(dead.index);
    this.pool[dead.index] = h;
    try {
      await this.request(h, { t: 'flush' });
      for (const live of this.vrfs.values()) await this.configureVrf([h], live);
      this.workerRestarts++;
    } catch (err) {
      log.error({ worker: dead.index, err: (err as Error).message }, 'restarted soft-engine worker failed to start');
    }
  }

  private retire(w: WorkerHandle): void {
    for (const [vrf, c] of Object.entries(w.counters)) {
      const acc = this.retired.get(vrf) ?? emptyCounters();
      for (const k of CUMULATIVE) acc[k] += c[k];
      this.retired.set(vrf, acc);
    }
  }

  /** For tests: end worker `index` the way a crash would. */
  async crashWorkerForTest(index: number): Promise<void> {
    const h = this.pool[index];
    if (!h) throw new RangeError(`no worker ${index}`);
    await h.worker.terminate();
  }

  /** How many crashed workers were replaced. */
  get restartedWorkers(): number {
    return this.workerRestarts;
  }

  private async stop(w: WorkerHandle): Promise<void> {
    if (w.exited) return;
    w.stopping = true;
    await w.worker.terminate();
  }

  private onWorkerMessage(w: WorkerHandle, m: WorkerMessageToMain): void {
    if (m.t === 'events') {
      Object.assign(w.counters, m.counters);
      for (const { vrf, packed } of m.events) {
        const r = new PackedReader(packed);
        for (let i = 0; i < r.count; i++) {
          const ev: ConntrackEvent = { kind: EVENT_KINDS[r.eventKind(i)] as ConntrackEvent['kind'], entry: r.entry(i, vrf), worker: w.index };
          for (const l of this.listeners) {
            try {
              l(ev);
            } catch (err) {
              log.error({ err: (err as Error).message }, 'conntrack event listener failed');
            }
          }
        }
      }
      for (const l of m.natLogs) {
        natLog.info({ ...l }, `port block ${l.event}`);
        for (const nl of this.natListeners) nl(l);
      }
      if (!w.exited) w.worker.postMessage({ t: 'ack' });
      return;
    }
    this.onReply(w, m);
  }

  private onReply(w: WorkerHandle, m: ReplyMessage): void {
    w.counters = m.counters;
    const p = w.pending.get(m.id);
    if (!p) return;
    w.pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m.result);
  }
}
