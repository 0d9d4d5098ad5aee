// The sending side of one VRF's synchronisation: turns the dataplane's conntrack events into
// messages on the right connection (rules 1, 3, 6, 7, 10), runs full resyncs (rule 2) and manual
// synchronisations (rule 8). It only sends while its HA group is master (rule 11).
import type { ConntrackEntry, ConntrackEvent, DataplaneEngine, FlowTuple, HaRole, L4Proto, PackedConntrackBatch } from '../fastpath/engine.js';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { ipv4TupleHash, ownerWorker } from '../fastpath/tuple-hash.js';
import { logger } from '../core/log.js';
import { IPv4PayloadBuilder, type SyncRecord } from './conntrack-codec.js';
import { ctKey, ESTABLISHED, ipv4Key, PROTO_NAMES, STATE_INDEX } from './conntrack-key.js';
import { MirrorCounters } from './mirror-counters.js';
import { TupleMap } from './tuple-map.js';
import { BulkKind, FrameType } from './protocol.js';
import type { SyncClient } from './sync-client.js';
import type { VrfSyncConfig } from './sync-config.js';
import type { ResyncSummary, SyncNotification } from './vrf-sync-types.js';

const log = logger('sync');

/** Events held during a dump at most (a few hundred bytes each); beyond, a full resync follows. */
export const HELD_EVENTS_LIMIT = 500_000;

interface PendingInfo {
  entry: ConntrackEntry;
  dueAt: number;
}

/** Eligibility of entry i of a packed dump batch (plain IPv4, no virtual service). */
type PackedEligible = (b: PackedConntrackBatch, i: number) => boolean;

export class SyncSender {
  role: HaRole = 'backup';
  /** Conntracks sent (or found in a resync) and not destroyed since: the "synced" count. */
  private synced = new TupleMap();
  /** Synced conntracks per mirrored virtual service (mirror-conn-list-on-active). */
  readonly mirrored = new MirrorCounters();
  /** Established conntracks waiting for their synchronization delay (rule 6). */
  private pending = new Map<string, PendingInfo>();
  private tcpDue: Array<{ key: string; dueAt: number }> = [];
  private tcpDueHead = 0;
  private tcpTimer: TimerHandle | undefined;
  private resyncWanted = new Set<SyncClient>();
  private resyncRunning: Promise<void> | undefined;
  private stopped = false;
  /** A conntrack was seen (event or table) since this sender started: an empty table is real. */
  private everHeld = false;
  /** Marked synced conntracks per owner worker (the connection they travel on). */
  private syncedPerWorker: number[] = [];
  /**
   * Connections that carried a full resync since they came up and are still up: what was marked
   * synced for their worker went out on them. The others' conntracks are not counted as synced.
   */
  private inSync = new Set<SyncClient>();
  /** Dumps (full resync, manual synchronisation) in progress, and the events held meanwhile. */
  private dumping = 0;
  private held: ConntrackEvent[] = [];
  /** More events came during a dump than `heldLimit`: they are dropped and a full resync follows. */
  heldLimit = HELD_EVENTS_LIMIT;
  private heldOverflow = false;
  /** Anti-entropy (sync/anti-entropy/): told of every live message routed, counts dumps started. */
  onRouted: ((e: ConntrackEntry) => void) | undefined;
  bulkGeneration = 0;

  constructor(
    private readonly vrf: string,
    /** The VRF's current sync configuration (changes without new connections). */
    private readonly config: () => VrfSyncConfig,
    private readonly engine: DataplaneEngine,
    private readonly clock: Clock,
    /** Per peer, its clients indexed by worker. */
    private readonly peers: () => SyncClient[][],
    private readonly notify: (n: SyncNotification) => void,
    private readonly onResyncSent: (summary: ResyncSummary) => void,
  ) {}

  async stop(): Promise<void> {
    this.stopped = true;
    this.tcpTimer?.cancel();
    await this.resyncRunning;
  }

  /** Rule 11: what was synced as master means nothing in the new role. */
  setRole(role: HaRole): void {
    this.role = role;
    this.synced.clear();
    this.syncedPerWorker.fill(0);
    this.mirrored.clear();
    this.clearPending();
    this.held = [];
    this.heldOverflow = false;
    if (role === 'master') {
      // The peer (the new backup) gets everything we hold.
      for (const clients of this.peers()) for (const c of clients) if (c.status === 'established') this.requestResync(c);
    }
  }

  private clearPending(): void {
    this.pending.clear();
    this.tcpDue = [];
    this.tcpDueHead = 0;
    this.tcpTimer?.cancel();
    this.tcpTimer = undefined;
  }

  /**
   * The engine lost conntrack events (its event buffer overran): which conntracks changed is
   * unknown, so every connection that is up gets a full resync now rather than at the next one.
   */
  repairAfterLoss(dropped: number): void {
    if (this.role !== 'master' || !this.config().enabled || this.stopped) return;
    const clients = this.peers().flat().filter((c) => c.status === 'established');
    log.warn({ vrf: this.vrf, dropped, connections: clients.length }, 'conntrack events lost: full resync of the peers now');
    for (const c of clients) this.requestResync(c);
  }

  /** A connection went down: a resync it wanted is moot (the next "up" asks again). */
  forget(client: SyncClient): void {
    this.resyncWanted.delete(client);
    this.inSync.delete(client);
  }

  private countSynced(worker: number, by: number): void {
    this.syncedPerWorker[worker] = (this.syncedPerWorker[worker] ?? 0) + by;
  }

  // ---- dataplane events (rules 3, 6, 7, 10) ----

  onEvent(ev: ConntrackEvent): void {
    if (this.role !== 'master' || !this.config().enabled || this.stopped) return;
    this.everHeld = true;
    if (this.dumping > 0) {
      // A dump in progress may still carry this conntrack as it was before the event: the event
      // goes out after the dump, so the peer ends with what happened last.
      if (this.held.length < this.heldLimit) {
        this.held.push(ev);
      } else if (!this.heldOverflow) {
        this.heldOverflow = true;
        log.warn({ vrf: this.vrf, held: this.held.length }, 'too many conntrack events during a dump: a full resync follows it');
      }
      return;
    }
    const e = ev.entry;
    if (e.alg) return; // rule 7
    // Rule 10, from the engine's mark or from the configuration sync holds.
    if (e.noSync || (e.virtualService !== undefined && !this.config().mirroredServices.has(e.virtualService))) return;
    switch (ev.kind) {
      case 'new':
        return; // rule 7: not established yet
      case 'established':
        this.onEstablished(e);
        return;
      case 'update':
        this.onUpdate(e);
        return;
      case 'destroy':
        this.onDestroy(e);
        return;
    }
  }

  private onEstablished(e: ConntrackEntry): void {
    const delayMs = this.config().delays[e.orig.proto].synchronization * 1000;
    if (delayMs <= 0) {
      this.sendNew(e); // (re-established and already synced: the same upsert again, harmless)
      return;
    }
    if (this.synced.has(e.orig)) {
      this.onUpdate(e);
      return;
    }
    const key = ctKey(e.orig);
    const dueAt = (e.establishedAt || this.clock.now()) + delayMs;
    this.pending.set(key, { entry: e, dueAt });
    if (e.orig.proto === 'tcp') {
      this.tcpDue.push({ key, dueAt });
      this.armTcpTimer();
    }
  }

  private onUpdate(e: ConntrackEntry): void {
    const s = this.synced.get(e.orig);
    if (s !== undefined) {
      const state = STATE_INDEX.get(e.state) as number;
      if (s !== state) {
        this.synced.set(e.orig, state);
        this.route(e, (c) => c.sendRecord(FrameType.CtUpdate, this.record(e, false)));
      }
      return;
    }
    if (this.pending.size === 0) return;
    const key = ctKey(e.orig);
    const p = this.pending.get(key);
    if (!p) return;
    p.entry = e;
    if (e.orig.proto === 'tcp') {
      if (e.state !== 'established') this.pending.delete(key); // rule 6: only while still established
      return;
    }
    // UDP/ICMP: sent only when traffic is seen after the delay (rule 6).
    if (this.clock.now() >= p.dueAt && e.lastActivity >= p.dueAt) {
      this.pending.delete(key);
      this.sendNew(e);
    }
  }

  private onDestroy(e: ConntrackEntry): void {
    if (this.pending.size > 0) this.pending.delete(ctKey(e.orig));
    if (!this.synced.delete(e.orig)) return;
    this.countSynced(ownerWorker(e.orig, this.config().workers), -1);
    this.mirrored.delete(ctKey(e.orig));
    this.route(e, (c) => c.sendDelete(e.orig));
  }

  private armTcpTimer(): void {
    if (this.tcpTimer || this.tcpDueHead >= this.tcpDue.length) return;
    const head = this.tcpDue[this.tcpDueHead] as { dueAt: number };
    this.tcpTimer = this.clock.setTimer(Math.max(0, head.dueAt - this.clock.now()), () => {
      this.tcpTimer = undefined;
      this.fireTcpDue();
    });
  }

  /** TCP conntracks are sent once the delay has passed, even without traffic, if still established. */
  private fireTcpDue(): void {
    const now = this.clock.now();
    while (this.tcpDueHead < this.tcpDue.length) {
      const d = this.tcpDue[this.tcpDueHead] as { key: string; dueAt: number };
      if (d.dueAt > now) break;
      this.tcpDueHead++;
      const p = this.pending.get(d.key);
      if (!p || p.dueAt !== d.dueAt) continue;
      this.pending.delete(d.key);
      if (p.entry.state === 'established') this.sendNew(p.entry);
    }
    if (this.tcpDueHead > 1024 && this.tcpDueHead * 2 > this.tcpDue.length) {
      this.tcpDue = this.tcpDue.slice(this.tcpDueHead);
      this.tcpDueHead = 0;
    }
    this.armTcpTimer();
  }

  /** Timeout announced to the peer: the TCP `undefined` value once a TCP conntrack left established (rule 3). */
  private timeoutOf(e: ConntrackEntry): number {
    if (e.orig.proto === 'tcp' && e.state !== 'established') return this.config().timeouts.tcpUndefined;
    return e.timeout;
  }

  private record(e: ConntrackEntry, withActivity: boolean): SyncRecord {
    return { entry: e, withActivity, timeout: this.timeoutOf(e) };
  }

  private markSynced(e: ConntrackEntry): void {
    const before = this.synced.size;
    this.synced.set(e.orig, STATE_INDEX.get(e.state) as number);
    if (this.synced.size > before) this.countSynced(ownerWorker(e.orig, this.config().workers), 1);
    if (e.virtualService !== undefined) this.mirrored.set(ctKey(e.orig), e.virtualService);
  }

  private sendNew(e: ConntrackEntry): void {
    this.markSynced(e);
    this.route(e, (c) => c.sendRecord(FrameType.CtNew, this.record(e, false)));
  }

  /** Rule 1: a conntrack always travels on the connection of its owning worker, to every peer. */
  private route(e: ConntrackEntry, fn: (c: SyncClient) => void): void {
    this.onRouted?.(e);
    const w = ownerWorker(e.orig, this.config().workers);
    for (const clients of this.peers()) fn(clients[w] as SyncClient);
  }

  // ---- full resync (rule 2) and manual synchronisation (rule 8) ----

  requestResync(client: SyncClient): void {
    this.resyncWanted.add(client);
    if (!this.resyncRunning) {
      this.resyncRunning = this.runResyncs().finally(() => {
        this.resyncRunning = undefined;
      });
    }
  }

  /** Resolves when no resync is running or wanted (tests and the demo wait on it). */
  async resyncIdle(): Promise<void> {
    while (this.resyncRunning) await this.resyncRunning;
  }

  private async runResyncs(): Promise<void> {
    await new Promise((r) => setImmediate(r)); // gather the connections that come up together
    while (this.resyncWanted.size > 0 && !this.stopped) {
      const targets = [...this.resyncWanted].filter((c) => c.status === 'established');
      this.resyncWanted.clear();
      if (this.role !== 'master' || !this.config().enabled || targets.length === 0) continue;
      if (this.emptySinceStart()) {
        // A full resync makes the peer drop what it was not sent: from a master that lost its
        // table (a restart), it would wipe the peer's copy, the only one left. Refuse, and say so.
        log.warn({ vrf: this.vrf, peers: [...new Set(targets.map((c) => c.config.peer))] },
          'full resync not sent: this master has held no conntrack since it started; the peer keeps the conntracks it holds');
        for (const c of targets) this.inSync.add(c);
        continue;
      }
      const started = performance.now();
      const count = await this.bulkSend(targets, BulkKind.FullResync, (e) => this.resyncEligible(e), (b, i) => this.resyncEligiblePacked(b, i), false);
      const summary: ResyncSummary = { time: new Date().toISOString(), duration: Math.round(performance.now() - started), count };
      this.onResyncSent(summary);
      log.info({ vrf: this.vrf, clients: targets.length, count, durationMs: summary.duration }, 'full resync sent');
      const peers = new Set(targets.map((c) => c.config.peer));
      for (const peer of peers) this.notify({ kind: 'full-resync-complete', vrf: this.vrf, peer, summary });
    }
  }

  /** The engine holds no conntrack in this VRF and this sender has seen none since it started. */
  private emptySinceStart(): boolean {
    if (this.everHeld) return false;
    let held: number;
    try {
      held = this.engine.counters(this.vrf).conntracks;
    } catch {
      return false; // the VRF is being removed: the dump says so
    }
    if (held > 0) this.everHeld = true;
    return held === 0;
  }

  /** What a resync carries: what was synchronised, plus established conntracks whose delay passed. */
  private resyncEligible(e: ConntrackEntry): boolean {
    if (e.alg) return false;
    if (e.noSync || (e.virtualService !== undefined && !this.config().mirroredServices.has(e.virtualService))) return false;
    // Established and past its delay (or held from the former master): sent, whether or not
    // already marked; otherwise only if it was synchronised before (e.g. left established since).
    let due = e.state === 'established';
    if (due && !e.synced) {
      const d = this.config().delays[e.orig.proto].synchronization * 1000;
      if (d > 0) due = e.orig.proto === 'tcp' ? this.clock.now() - e.establishedAt >= d : e.lastActivity >= e.establishedAt + d;
    }
    if (!due) return this.synced.has(e.orig);
    if (this.pending.size > 0) this.pending.delete(ctKey(e.orig));
    this.markSynced(e);
    return true;
  }

  /** Rule 8: everything established (or already synced) goes out now, with its activity time. */
  private manualEligible(e: ConntrackEntry): boolean {
    if (e.alg) return false;
    if (e.noSync || (e.virtualService !== undefined && !this.config().mirroredServices.has(e.virtualService))) return false;
    if (this.synced.has(e.orig)) return true;
    if (e.state !== 'established') return false;
    if (this.pending.size > 0) this.pending.delete(ctKey(e.orig));
    this.markSynced(e);
    return true;
  }

  /**
   * Packed twin of resyncEligible for a plain IPv4 entry without a virtual service (the engine's
   * dumpPacked): the same decisions, on fields instead of an entry object.
   */
  private resyncEligiblePacked(b: PackedConntrackBatch, i: number): boolean {
    if (b.alg(i) || b.noSync(i)) return false;
    const proto = b.protoIndex(i);
    const state = b.stateIndex(i);
    let due = state === ESTABLISHED;
    if (due && !b.synced(i)) {
      const d = this.config().delays[PROTO_NAMES[proto] as L4Proto].synchronization * 1000;
      if (d > 0) due = proto === 0 ? this.clock.now() - b.establishedAt(i) >= d : b.lastActivity(i) >= b.establishedAt(i) + d;
    }
    const src = b.ipv4(i, 0), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
    if (!due) return this.synced.getIPv4(proto, src, dst, sport, dport) !== undefined;
    if (this.pending.size > 0) this.pending.delete(ipv4Key(proto, src, sport, dst, dport));
    const before = this.synced.size;
    this.synced.setIPv4(proto, src, dst, sport, dport, state);
    if (this.synced.size > before) this.countSynced(ipv4TupleHash(src) % this.config().workers, 1);
    return true;
  }

  /** Packed twin of manualEligible (see resyncEligiblePacked). */
  private manualEligiblePacked(b: PackedConntrackBatch, i: number): boolean {
    if (b.alg(i) || b.noSync(i)) return false;
    const proto = b.protoIndex(i);
    const src = b.ipv4(i, 0), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
    if (this.synced.getIPv4(proto, src, dst, sport, dport) !== undefined) return true;
    if (b.stateIndex(i) !== ESTABLISHED) return false;
    if (this.pending.size > 0) this.pending.delete(ipv4Key(proto, src, sport, dst, dport));
    const before = this.synced.size;
    this.synced.setIPv4(proto, src, dst, sport, dport, ESTABLISHED);
    if (this.synced.size > before) this.countSynced(ipv4TupleHash(src) % this.config().workers, 1);
    return true;
  }

  /** Dump the VRF once and send the eligible entries to each target on its worker's connection. */
  private async bulkSend(
    targets: SyncClient[], kind: BulkKind, eligible: (e: ConntrackEntry) => boolean, eligiblePacked: PackedEligible, withActivity: boolean,
  ): Promise<number> {
    this.dumping++;
    this.bulkGeneration++;
    try {
      return await this.dumpAndSend(targets, kind, eligible, eligiblePacked, withActivity);
    } finally {
      if (--this.dumping === 0) this.releaseHeld();
    }
  }

  /** The events held during a dump, in their order, now that the dump's records are queued. */
  private releaseHeld(): void {
    if (this.heldOverflow) {
      // Some events were dropped: the peers get the whole table again instead.
      this.heldOverflow = false;
      this.held = [];
      for (const c of this.peers().flat()) if (c.status === 'established') this.requestResync(c);
      return;
    }
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    log.debug({ vrf: this.vrf, events: held.length }, 'conntrack events held during a dump sent after it');
    for (const ev of held) this.onEvent(ev);
  }

  private async dumpAndSend(
    targets: SyncClient[], kind: BulkKind, eligible: (e: ConntrackEntry) => boolean, eligiblePacked: PackedEligible, withActivity: boolean,
  ): Promise<number> {
    const workers = this.config().workers;
    const byWorker: SyncClient[][] = Array.from({ length: workers }, () => []);
    for (const c of targets) {
      c.beginResync(kind);
      byWorker[c.config.worker]?.push(c);
    }
    let count = 0;
    const perWorker = new Array<number>(workers).fill(0);
    const sendEntry = (e: ConntrackEntry): void => {
      if (!eligible(e)) return;
      count++;
      const w = ownerWorker(e.orig, workers);
      const rec = this.record(e, withActivity);
      for (const c of byWorker[w] as SyncClient[]) c.bulk({ t: FrameType.CtNew, rec });
      perWorker[w] = (perWorker[w] as number) + 1;
    };
    try {
      this.synced.reserve(this.engine.counters(this.vrf).conntracks);
    } catch {
      // the VRF is being removed: the dump below says so
    }
    if (this.engine.dumpPacked) {
      // No entry object for plain IPv4 conntracks: fields -> wire records, one payload per frame.
      const builders = Array.from({ length: workers }, () => new IPv4PayloadBuilder());
      const ship = (w: number): void => {
        const b = builders[w] as IPv4PayloadBuilder;
        const n = b.count;
        const payload = b.take();
        for (const c of byWorker[w] as SyncClient[]) c.bulkPayload(payload, n);
      };
      await this.engine.dumpPacked(this.vrf, async (batch) => {
        const now = this.clock.now();
        const tcpUndefined = this.config().timeouts.tcpUndefined;
        for (let i = 0; i < batch.count; i++) {
          if (!batch.isPlainIPv4(i)) {
            sendEntry(batch.entry(i));
            continue;
          }
          const timeout = batch.protoIndex(i) === 0 && batch.stateIndex(i) !== ESTABLISHED ? tcpUndefined : batch.timeout(i);
          if (!IPv4PayloadBuilder.encodable(timeout)) {
            sendEntry(batch.entry(i)); // the object path counts it as a build error
            continue;
          }
          if (!eligiblePacked(batch, i)) continue;
          count++;
          const w = ipv4TupleHash(batch.ipv4(i, 0)) % workers;
          perWorker[w] = (perWorker[w] as number) + 1;
          const b = builders[w] as IPv4PayloadBuilder;
          b.add(batch, i, timeout, withActivity, now);
          if (b.full) ship(w);
        }
        // Nothing stays behind across an await: live messages queued meanwhile come after these.
        for (let w = 0; w < workers; w++) if ((builders[w] as IPv4PayloadBuilder).count > 0) ship(w);
        await Promise.all(targets.map((c) => c.room()));
      });
    } else {
      await this.engine.dump(this.vrf, async (batch) => {
        for (const e of batch) sendEntry(e);
        await Promise.all(targets.map((c) => c.room()));
      });
    }
    for (const c of targets) c.bulk({ t: FrameType.BulkEnd, kind, count: perWorker[c.config.worker] ?? 0 });
    if (kind === BulkKind.FullResync) for (const c of targets) if (c.status === 'established') this.inSync.add(c);
    return count;
  }

  /** The ha-fp-conntrack-synchronization RPC: runs on the master, completes in the background. */
  async manualSync(): Promise<{ count: number; duration: number }> {
    if (this.role !== 'master') throw new Error(`VRF ${this.vrf} is not master of HA group ${this.config().listenHaGroup}: nothing to synchronise`);
    await this.resyncIdle();
    const targets = this.peers().flat().filter((c) => c.status === 'established');
    if (targets.length === 0) throw new Error(`VRF ${this.vrf}: no sync connection to a peer is up: nothing was synchronised`);
    const started = performance.now();
    const count = await this.bulkSend(targets, BulkKind.Manual, (e) => this.manualEligible(e), (b, i) => this.manualEligiblePacked(b, i), true);
    const duration = Math.round(performance.now() - started);
    log.info({ vrf: this.vrf, count, durationMs: duration, connections: targets.length }, 'manual synchronization complete');
    this.notify({ kind: 'manual-synchronization-complete', vrf: this.vrf, count, duration });
    return { count, duration };
  }

  // ---- anti-entropy hooks (sync/anti-entropy/) ----

  /** Runs `fn` with conntrack events held, as during a dump: they are sent after what `fn` queued. */
  async holdEvents<T>(fn: () => Promise<T>): Promise<T> {
    this.dumping++;
    try {
      return await fn();
    } finally {
      if (--this.dumping === 0) this.releaseHeld();
    }
  }

  /** A connection whose peer should hold exactly what we marked synced for its worker now. */
  verifiable(c: SyncClient): boolean {
    return this.role === 'master' && !this.stopped && c.status === 'established' && !c.outOfSync && this.inSync.has(c) &&
      !this.resyncWanted.has(c) && this.resyncRunning === undefined;
  }

  /** The state index last sent for this conntrack, -1 when it is not synced. */
  mirroredState(orig: FlowTuple): number {
    return this.synced.get(orig) ?? -1;
  }

  mirroredStateIPv4(proto: number, src: number, dst: number, sport: number, dport: number): number {
    return this.synced.getIPv4(proto, src, dst, sport, dport) ?? -1;
  }

  // ---- state ----

  /**
   * Conntracks marked synced whose connection to every peer is up, not out of sync (queue
   * overflow) and carried a full resync since it came up; none when a peer was never reached.
   */
  syncedCount(): number {
    const peers = this.peers();
    if (peers.length === 0) return 0;
    let n = 0;
    for (let w = 0; w < this.syncedPerWorker.length; w++) {
      const delivered = peers.every((clients) => {
        const c = clients[w];
        return c !== undefined && c.status === 'established' && !c.outOfSync && this.inSync.has(c);
      });
      if (delivered) n += this.syncedPerWorker[w] ?? 0;
    }
    return n;
  }

  /** Every marked conntrack, delivered or not (tests). */
  markedCount(): number {
    return this.synced.size;
  }

  pendingCount(): number {
    let queued = 0;
    for (const clients of this.peers()) for (const c of clients) queued += c.queued();
    return this.pending.size + queued;
  }
}
