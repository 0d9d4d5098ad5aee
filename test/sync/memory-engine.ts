// A small in-memory DataplaneEngine for the sync tests: a Map per VRF, events emitted as the
// test drives flows, expiry by the injected clock, and the HA semantics sync relies on (rule 4:
// synced entries never expire on a backup and their traffic is blocked; rule 5: after a switch to
// master an unused synced entry lives its whole current timeout from the switch, or from the
// synchronised activity time after a manual synchronisation). It lets the sync tests run without
// worker threads; the soft engine (fastpath/) implements the same contract for real.
import type {
  ConntrackEntry, ConntrackEvent, DataplaneEngine, EngineCounters, FailoverPolicy, FlowTuple, HaRole, TcpState, VrfDataplaneConfig,
} from '../../fastpath/engine.js';
import type { Clock, TimerHandle } from '../../fastpath/clock.js';
import { ownerWorker } from '../../fastpath/tuple-hash.js';

interface Stored {
  entry: ConntrackEntry;
  deadline: number;
}

function key(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

export function reverse(t: FlowTuple): FlowTuple {
  return { proto: t.proto, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport };
}

function zero(): EngineCounters {
  return { conntracks: 0, synced: 0, created: 0, destroyed: 0, dropsTableFull: 0, dropsFirewall: 0, dropsBackup: 0, natAllocFailures: 0 };
}

export class MemoryEngine implements DataplaneEngine {
  readonly kind = 'soft' as const;
  readonly tables = new Map<string, Map<string, Stored>>();
  private roles = new Map<string, HaRole>();
  private policies = new Map<string, FailoverPolicy>();
  private stats = new Map<string, EngineCounters>();
  private listeners = new Set<(ev: ConntrackEvent) => void>();
  private lossListeners = new Set<(vrf: string, dropped: number) => void>();
  /** Tests: conntracks this engine refuses to write from sync (as a kernel may); not counted as written. */
  refuse: ((e: ConntrackEntry) => boolean) | undefined;
  /**
   * Tests: dumps read a copy of the table taken at their start (as a kernel dump read from a socket
   * buffer may be older than the events already handled), and call this between batches.
   */
  betweenDumpBatches: ((batchesDone: number) => void | Promise<void>) | undefined;
  /** Tests: events are swallowed (lost) while set; `reportLoss` then tells the listeners. */
  losingEvents = false;
  private lost = 0;
  /** Tests: events are held back while set (read late, as from a kernel socket); `releaseDelayed` delivers them. */
  delayingEvents = false;
  private delayed: ConntrackEvent[] = [];
  private sweeper: TimerHandle;

  constructor(
    private readonly clock: Clock,
    public workers = 2,
    /** Timeouts used by the flow helpers (seconds). */
    public timeouts = { established: 300, udp: 120, icmp: 30, finWait: 120 },
  ) {
    this.sweeper = clock.setInterval(1000, () => this.expire());
  }

  async prepareVrf(_config: VrfDataplaneConfig): Promise<void> {}

  async applyVrf(name: string, config: VrfDataplaneConfig | undefined): Promise<void> {
    if (config) this.table(name);
    else this.tables.delete(name);
  }

  async abortVrf(_name: string): Promise<void> {}

  async setWorkers(n: number): Promise<void> {
    this.workers = n;
  }

  async setRole(vrf: string, role: HaRole): Promise<void> {
    const old = this.role(vrf);
    this.roles.set(vrf, role);
    const now = this.clock.now();
    for (const s of this.table(vrf).values()) {
      if (!s.entry.synced) continue;
      if (role === 'backup') {
        s.deadline = Infinity; // rule 4
      } else if (old === 'backup') {
        s.deadline = this.failoverDeadline(vrf, s.entry, now); // rule 5
      }
    }
  }

  private failoverDeadline(vrf: string, e: ConntrackEntry, now: number): number {
    const timeoutMs = e.timeout * 1000;
    if (e.activitySynced && e.lastActivity + timeoutMs > now) return e.lastActivity + timeoutMs;
    const grace = this.policies.get(vrf)?.graceSeconds[e.orig.proto];
    if (grace !== undefined && grace < e.timeout) return now + grace * 1000 + Math.random() * (timeoutMs - grace * 1000);
    return now + timeoutMs;
  }

  setFailoverPolicy(vrf: string, policy: FailoverPolicy): void {
    this.policies.set(vrf, policy);
  }

  role(vrf: string): HaRole {
    return this.roles.get(vrf) ?? 'master';
  }

  onEvent(listener: (ev: ConntrackEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async dump(vrf: string, batch: (entries: ConntrackEntry[]) => void | Promise<void>): Promise<void> {
    let out: ConntrackEntry[] = [];
    const hook = this.betweenDumpBatches;
    const rows = hook ? [...this.table(vrf).values()].map((s) => ({ entry: { ...s.entry } })) : this.table(vrf).values();
    let done = 0;
    for (const s of rows) {
      out.push({ ...s.entry });
      if (out.length === 1000) {
        await batch(out);
        out = [];
        if (hook) await hook(++done);
      }
    }
    if (out.length > 0) await batch(out);
  }

  onEventsLost(listener: (vrf: string, dropped: number) => void): () => void {
    this.lossListeners.add(listener);
    return () => this.lossListeners.delete(listener);
  }

  /** Tests: the events held back while `delayingEvents` was set are delivered now, in their order. */
  releaseDelayed(): number {
    const held = this.delayed;
    this.delayed = [];
    for (const ev of held) for (const l of this.listeners) l(ev);
    return held.length;
  }

  /** Tests: the events swallowed since `losingEvents` was set are reported lost. */
  reportLoss(vrf: string): number {
    const n = this.lost;
    this.lost = 0;
    for (const l of this.lossListeners) l(vrf, n);
    return n;
  }

  async upsert(entries: ConntrackEntry[]): Promise<number> {
    const now = this.clock.now();
    let written = 0;
    for (const e of entries) {
      if (this.refuse?.(e)) continue;
      written++;
      const t = this.table(e.vrf);
      const k = key(e.orig);
      if (!t.has(k)) this.counter(e.vrf).created++;
      const backup = this.role(e.vrf) === 'backup';
      t.set(k, { entry: { ...e, synced: true }, deadline: backup ? Infinity : now + e.timeout * 1000 });
    }
    return written;
  }

  async remove(vrf: string, tuples: FlowTuple[]): Promise<number> {
    let n = 0;
    const t = this.table(vrf);
    for (const tu of tuples) if (t.delete(key(tu))) n++;
    return n;
  }

  counters(vrf: string): EngineCounters {
    const t = this.table(vrf);
    let synced = 0;
    for (const s of t.values()) if (s.entry.synced) synced++;
    return { ...this.counter(vrf), conntracks: t.size, synced };
  }

  async close(): Promise<void> {
    this.sweeper.cancel();
    this.listeners.clear();
  }

  // ---- flow helpers for the tests ----

  get(vrf: string, orig: FlowTuple): ConntrackEntry | undefined {
    return this.table(vrf).get(key(orig))?.entry;
  }

  deadline(vrf: string, orig: FlowTuple): number | undefined {
    return this.table(vrf).get(key(orig))?.deadline;
  }

  /** A connection opens and is answered: events new then established. */
  open(vrf: string, orig: FlowTuple, opts: { alg?: boolean; virtualService?: string; establish?: boolean; reply?: FlowTuple } = {}): ConntrackEntry {
    const now = this.clock.now();
    const timeout = orig.proto === 'tcp' ? this.timeouts.established : orig.proto === 'udp' ? this.timeouts.udp : this.timeouts.icmp;
    const e: ConntrackEntry = {
      vrf, orig, reply: opts.reply ?? reverse(orig), state: 'syn-sent', timeout, alg: opts.alg ?? false, establishedAt: 0, lastActivity: now,
    };
    if (opts.virtualService) e.virtualService = opts.virtualService;
    this.table(vrf).set(key(orig), { entry: e, deadline: now + timeout * 1000 });
    this.counter(vrf).created++;
    this.emit('new', e);
    if (opts.establish !== false) {
      e.state = 'established';
      e.establishedAt = now;
      this.emit('established', e);
    }
    return e;
  }

  /** The answer arrives: the entry enters established (event 'established'). */
  establish(vrf: string, orig: FlowTuple): void {
    const s = this.table(vrf).get(key(orig));
    if (!s) return;
    s.entry.state = 'established';
    s.entry.establishedAt = this.clock.now();
    this.emit('established', s.entry);
  }

  /** A packet of the flow: refreshes activity; blocked on a backup for synced entries (rule 4). */
  packet(vrf: string, orig: FlowTuple): boolean {
    const s = this.table(vrf).get(key(orig));
    if (!s) return false;
    if (this.role(vrf) === 'backup' && s.entry.synced) {
      this.counter(vrf).dropsBackup++;
      return false;
    }
    const now = this.clock.now();
    s.entry.lastActivity = now;
    if (s.deadline !== Infinity) s.deadline = now + s.entry.timeout * 1000;
    this.emit('update', s.entry);
    return true;
  }

  /** TCP state change (e.g. FIN): the entry leaves established. */
  setState(vrf: string, orig: FlowTuple, state: TcpState, timeout: number): void {
    const s = this.table(vrf).get(key(orig));
    if (!s) return;
    s.entry.state = state;
    s.entry.timeout = timeout;
    if (s.deadline !== Infinity) s.deadline = this.clock.now() + timeout * 1000;
    this.emit('update', s.entry);
  }

  destroy(vrf: string, orig: FlowTuple): void {
    const t = this.table(vrf);
    const s = t.get(key(orig));
    if (!s) return;
    t.delete(key(orig));
    this.counter(vrf).destroyed++;
    this.emit('destroy', s.entry);
  }

  private expire(): void {
    const now = this.clock.now();
    for (const [vrf, t] of this.tables) {
      for (const [k, s] of t) {
        if (s.deadline > now) continue;
        t.delete(k);
        this.counter(vrf).destroyed++;
        this.emit('destroy', s.entry);
      }
    }
  }

  private emit(kind: ConntrackEvent['kind'], e: ConntrackEntry): void {
    if (this.losingEvents) {
      this.lost++;
      return;
    }
    const ev: ConntrackEvent = { kind, entry: { ...e, orig: { ...e.orig }, reply: { ...e.reply } }, worker: ownerWorker(e.orig, this.workers) };
    if (this.delayingEvents) {
      this.delayed.push(ev);
      return;
    }
    for (const l of this.listeners) l(ev);
  }

  private table(vrf: string): Map<string, Stored> {
    let t = this.tables.get(vrf);
    if (!t) {
      t = new Map();
      this.tables.set(vrf, t);
    }
    return t;
  }

  private counter(vrf: string): EngineCounters {
    let c = this.stats.get(vrf);
    if (!c) {
      c = zero();
      this.stats.set(vrf, c);
    }
    return c;
  }
}
