// The sending side of one VRF's synchronisation: turns the dataplane's conntrack events into
// messages on the right connection (rules 1, 3, 6, 7, 10), runs full resyncs (rule 2) and manual
// synchronisations (rule 8). It only sends while its HA group is master (rule 11).
import type { ConntrackEntry, ConntrackEvent, DataplaneEngine, FlowTuple, HaRole, L4Proto, PackedConntrackBatch } from '../fastpath/engine.js';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { ipv4TupleHash, ownerWorker } from '../fastpath/tuple-hash.js';
import { logger } from '../core/log.js';
import { IPv4PayloadBuilder, type SyncRecord } from './conntrack-codec.js';
import { ctKey, ESTABLISHED, ipv4Key, PROTO_NAMES, STATE_INDEX } from './conntrack-key.js';
import { TupleMap } from './tuple-map.js';
import { bindingTag, bindingTagIPv4, syncedState, syncedTag, syncedValue } from './synced-binding.js';
import { BulkKind, FrameType } from './protocol.js';
import type { SyncClient } from './sync-client.js';
import { type DeltaChange, opTuple } from './delta-log.js';
import type { BulkAck } from './ack-window.js';
import type { VrfSyncConfig } from './sync-config.js';
import type { ResyncSummary, SyncNotification } from './vrf-sync-types.js';

const log = logger('sync');

/** A manual synchronisation: what it sent and what the peers acknowledged of it. */
export interface ManualSyncResult {
  count: number;
  acknowledged: number;
  peerRefused: number;
  /** Every peer acknowledged its end. */
  complete: boolean;
  duration: number;
}

/** A full resync whose dump failed is tried again after this long. */
const RESYNC_RETRY_MS = 1000;

/**
 * Longest wait, before a full resync starts, for the other connections whose attempt is under way
 * (a handshake on a sync link takes a few ms; a peer that does not answer is not waited for long).
 */
export const RESYNC_GATHER_MS = 250;

/** Events held during a dump at most (a few hundred bytes each); beyond, a full resync follows. */
export const HELD_EVENTS_LIMIT = 500_000;

interface PendingInfo {
  entry: ConntrackEntry;
  dueAt: number;
}

/** Eligibility of entry i of a packed dump batch (plain IPv4, no virtual service). */
type PackedEligible = (b: PackedConntrackBatch, i: number) => boolean;

/** A bulk queued on its connections: what it carried, and per connection the peer's acknowledgement of its end. */
interface BulkSent {
  count: number;
  perWorker: number[];
  acks: Map<SyncClient, Promise<BulkAck>>;
}

/** What one peer acknowledged of a bulk. */
interface PeerBulkOutcome {
  peer: string;
  /** Acknowledged conntracks per worker whose connection acknowledged the bulk's end. */
  perWorker: Map<number, number>;
  /** Every connection of the peer that carried the bulk acknowledged its end. */
  complete: boolean;
  /** Conntracks the peer acknowledged as written (sent on acknowledged connections, less the refused). */
  acknowledged: number;
  refused: number;
}

/** What markSynced found. */
const enum Marked { Fresh, Again, Older }

export class SyncSender {
  role: HaRole = 'backup';
  /**
   * Conntracks sent (or found in a resync) and not destroyed since ("marked"); the synced count
   * is these less what the peers have not acknowledged or refused (see syncedCount).
   */
  private synced = new TupleMap();
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
  /** The peer's table was asked for once (a master that started empty): not again; and whether it arrived. */
  private pulled = false;
  private pullPending = false;
  /** Connections on which a table is being sent to a peer that asked for it (this node is its backup). */
  private tableSending = new Set<SyncClient>();
  /** Marked synced conntracks per owner worker (the connection they travel on). */
  private syncedPerWorker: number[] = [];
  /**
   * Connections whose peer acknowledged the end of a full resync since they came up and that are
   * still up: what was marked synced for their worker went out on them. The others' conntracks
   * are not counted as synced.
   */
  private inSync = new Set<SyncClient>();
  /** Dumps (full resync, manual synchronisation) in progress, and the events held meanwhile. */
  private dumping = 0;
  private held: ConntrackEvent[] = [];
  /** More events came during a dump than `heldLimit`: they are dropped and a full resync follows. */
  heldLimit = HELD_EVENTS_LIMIT;
  private heldOverflow = false;
  /** Full resyncs sent whose end the peers have not acknowledged yet. */
  private resyncsAcking = new Set<Promise<void>>();
  /** Per peer, the conntracks it acknowledged in the latest full resync of each worker's connection. */
  private resyncAcked = new Map<string, Map<number, number>>();
  private resyncAckedWorkers = 0;
  /** Anti-entropy (sync/anti-entropy/): told of every live message routed, counts dumps started. */
  onRouted: ((e: ConntrackEntry) => void) | undefined;
  bulkGeneration = 0;
  /** Established conntracks whose 'established' event never came, synchronised on a later update (see onUpdate). */
  lateEstablished = 0;
  /** Events of an older incarnation of a synced conntrack, dropped (sync/synced-binding.ts). */
  olderIncarnationEvents = 0;
  /** Full resyncs whose dump of the table failed (each tried again after RESYNC_RETRY_MS). */
  resyncFailures = 0;
  /** Delta resyncs the peers acknowledged (a connection back to a peer that kept its table). */
  deltaResyncs = 0;
  /** The latest acknowledged delta resync: conntracks it carried (records and deletes) and its duration. */
  lastDelta: { changes: number; durationMs: number } | undefined;

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
    /** Ask the peers for the synchronised conntracks they hold; `done` once all of it arrived. */
    private readonly askPeerTable?: (done: (count: number) => void) => void,
  ) {}

  async stop(): Promise<void> {
    this.stopped = true;
    this.tcpTimer?.cancel();
    await this.resyncIdle();
  }

  /** Rule 11: what was synced as master means nothing in the new role. */
  setRole(role: HaRole): void {
    this.role = role;
    this.synced.clear();
    this.syncedPerWorker.fill(0);
    this.clearPending();
    this.held = [];
    this.heldOverflow = false;
    this.cancelDeltas(`role switch to ${role}`);
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
   * Returns the connections resynced.
   */
  repairAfterLoss(dropped: number): number {
    if (this.role !== 'master' || !this.config().enabled || this.stopped) return 0;
    // Events were lost: this master held conntracks, even if none of their events reached us (a
    // master that started empty would otherwise refuse the full resync as "empty since start").
    if (dropped > 0) this.everHeld = true;
    // Connections that are down cannot know what changed either: their next resync is a full one.
    this.cancelDeltas('conntrack events lost on this master');
    const clients = this.peers().flat().filter((c) => c.status === 'established');
    log.warn({ vrf: this.vrf, dropped, connections: clients.length }, 'conntrack events lost: full resync of the peers now');
    for (const c of clients) this.requestResync(c);
    return clients.length;
  }

  /** No connection may take a delta resync: what changed is not known (the next resync of each is a full one). */
  private cancelDeltas(reason: string): void {
    for (const c of this.peers().flat()) c.cancelDelta(reason);
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
      const tag = bindingTag(e.reply);
      if (syncedTag(s) !== tag) {
        this.dropOlderIncarnation(e);
        return;
      }
      const state = STATE_INDEX.get(e.state) as number;
      if (syncedState(s) !== state) {
        this.synced.set(e.orig, syncedValue(state, tag));
        this.route(e, (c) => c.sendRecord(FrameType.CtUpdate, this.record(e, false)));
      }
      return;
    }
    const key = this.pending.size > 0 ? ctKey(e.orig) : undefined;
    const p = key === undefined ? undefined : this.pending.get(key);
    if (!p || key === undefined) {
      // Established, yet neither synced nor waiting for its delay: its 'established' event never
      // came (the linux engine tells transitions by the kernel's conntrack id, which two live
      // conntracks can share). It is that event now, or the conntrack would never be synced.
      if (e.state === 'established') {
        this.lateEstablished++;
        log.debug({ vrf: this.vrf, orig: ctKey(e.orig) }, 'established conntrack seen without its established event: synchronised now');
        this.onEstablished(e);
      }
      return;
    }
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
    // One lookup on the common path; an older incarnation's end (rare) puts the entry back.
    const s = this.synced.take(e.orig);
    if (s !== undefined && syncedTag(s) !== bindingTag(e.reply)) {
      this.synced.set(e.orig, s);
      this.dropOlderIncarnation(e);
      return;
    }
    if (this.pending.size > 0) this.pending.delete(ctKey(e.orig));
    if (s === undefined) return;
    this.countSynced(ownerWorker(e.orig, this.config().workers), -1);
    this.route(e, (c) => c.sendDelete(e.orig));
  }

  /**
   * An event of another incarnation of a synced conntrack (same original tuple, another NAT
   * binding than the one sent): an older one, read after a dump that carried the newer
   * (sync/synced-binding.ts). Dropped, and counted.
   */
  private dropOlderIncarnation(e: ConntrackEntry): void {
    this.olderIncarnationEvents++;
    log.debug({ vrf: this.vrf, orig: ctKey(e.orig), state: e.state }, 'event of an older incarnation of a synced conntrack (another NAT binding) dropped');
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

  /**
   * Marks `e` synced (its state and binding): FRESH when it was not before (for the
   * acknowledgements). From an event (`fromEvent`), a conntrack synced with another binding is of a
   * newer incarnation than `e`: nothing changes, OLDER. (A dump's entry is the table's own.)
   * `worker`: the conntrack's owner, when the caller has it already.
   */
  private markSynced(e: ConntrackEntry, worker?: number, fromEvent = false): Marked {
    const tag = bindingTag(e.reply);
    const prev = this.synced.set(e.orig, syncedValue(STATE_INDEX.get(e.state) as number, tag));
    if (prev === undefined) {
      this.countSynced(worker ?? ownerWorker(e.orig, this.config().workers), 1);
      return Marked.Fresh;
    }
    if (fromEvent && syncedTag(prev) !== tag) {
      this.synced.set(e.orig, prev);
      this.dropOlderIncarnation(e);
      return Marked.Older;
    }
    return Marked.Again;
  }

  private sendNew(e: ConntrackEntry): void {
    // The owner once for both (every conntrack of a burst comes here).
    const worker = ownerWorker(e.orig, this.config().workers);
    const marked = this.markSynced(e, worker, true);
    if (marked === Marked.Older) return;
    this.route(e, (c) => c.sendRecord(FrameType.CtNew, this.record(e, false), marked === Marked.Fresh), worker);
  }

  /** Rule 1: a conntrack always travels on the connection of its owning worker, to every peer. */
  private route(e: ConntrackEntry, fn: (c: SyncClient) => void, worker?: number): void {
    this.onRouted?.(e);
    const w = worker ?? ownerWorker(e.orig, this.config().workers);
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

  /**
   * Before a full resync starts, the connections that come up together join it: every attempt in
   * progress (TCP connect or handshake) ends first, up to RESYNC_GATHER_MS. One dump of the table
   * then serves all of them; without this the first connection's resync dumped the whole table
   * for its share, and the next one, up a millisecond later, dumped it again after it.
   */
  private async gatherConnections(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    const deadline = performance.now() + RESYNC_GATHER_MS;
    while (!this.stopped && performance.now() < deadline && this.peers().flat().some((c) => c.status === 'connecting')) {
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Resolves when no resync is running or wanted (tests and the demo wait on it). */
  async resyncIdle(): Promise<void> {
    // A pull of the peer's table (a master empty since start) is part of the resync: the peer's
    // answer starts the full resync that follows it (waited for while a connection can carry it).
    while (this.resyncRunning || this.resyncsAcking.size > 0 || this.pullInProgress()) {
      await this.resyncRunning;
      await Promise.all(this.resyncsAcking);
      if (this.pullInProgress()) await new Promise((r) => setTimeout(r, 5));
    }
  }

  private pullInProgress(): boolean {
    return this.pullPending && !this.stopped && this.peers().flat().some((c) => c.status === 'established');
  }

  private async runResyncs(): Promise<void> {
    await this.gatherConnections();
    while (this.resyncWanted.size > 0 && !this.stopped) {
      let targets = [...this.resyncWanted].filter((c) => c.status === 'established');
      this.resyncWanted.clear();
      if (this.role !== 'master' || !this.config().enabled || targets.length === 0) {
        for (const c of targets) c.cancelDelta('no resync sent');
        continue;
      }
      // Back to a peer that kept what it acknowledged, with every change since known: only those.
      const deltas = targets.filter((c) => c.deltaPending);
      if (deltas.length > 0) {
        targets = targets.filter((c) => !c.deltaPending);
        targets.push(...await this.sendDeltas(deltas));
        targets = targets.filter((c) => c.status === 'established');
        if (targets.length === 0) continue;
      }
      if (this.emptySinceStart()) {
        // A full resync makes the peer drop what it was not sent: from a master that lost its
        // table (a restart), it would wipe the peer's copy, the only one left. As a VRRP node
        // that comes back as backup, take the peer's table first, then push; failing that (the
        // peer had nothing either), refuse, and say so.
        const peers = [...new Set(targets.map((c) => c.config.peer))];
        for (const c of targets) this.inSync.add(c);
        if (this.pullPending) continue; // the peer's table is on its way: the resync follows it
        if (this.askPeerTable && !this.pulled) {
          this.pulled = true;
          this.pullPending = true;
          log.warn({ vrf: this.vrf, peers }, 'this master has held no conntrack since it started: taking the peer\'s conntracks first, then a full resync');
          this.askPeerTable((count) => {
            this.pullPending = false;
            if (count === 0) {
              // Nothing to reconcile: what this master has held since went out live.
              log.info({ vrf: this.vrf, peers }, 'the peer held no synchronised conntrack: no full resync needed');
              // The peer holds what these connections carried since they came up: a short outage
              // from here on can be repaired by a delta resync.
              // (Every such connection: those that came up while the peer's table was on its way too.)
              for (const c of this.peers().flat()) if (c.status === 'established' && this.inSync.has(c)) c.delta.arm(c.peerEpoch);
              return;
            }
            // They were written (the receiver acknowledged each frame after the engine applied it),
            // though the engine's counters may not show them yet: without this, the resync below
            // could still find the table "empty since start" and not be sent (seen in a test).
            this.everHeld = true;
            log.info({ vrf: this.vrf, peers, count }, 'the peer\'s conntracks arrived: full resync of the peers now');
            for (const c of this.peers().flat()) if (c.status === 'established') this.requestResync(c);
          });
          continue;
        }
        log.warn({ vrf: this.vrf, peers },
          'full resync not sent: this master has held no conntrack since it started; the peer keeps the conntracks it holds');
        continue;
      }
      const started = performance.now();
      let sent: BulkSent;
      try {
        sent = await this.bulkSend(targets, BulkKind.FullResync, (e) => this.resyncEligible(e), (b, i) => this.resyncEligiblePacked(b, i), false);
      } catch (err) {
        // The table could not be read (e.g. a kernel dump not answered in time): the peers did not
        // get it, so it is tried again, not given up (an unhandled failure here ended the process).
        this.resyncFailures++;
        log.error({ vrf: this.vrf, err: (err as Error).message, clients: targets.length, retryMs: RESYNC_RETRY_MS },
          'full resync failed: the table could not be read; trying again');
        const retry = setTimeout(() => {
          for (const c of targets) if (c.status === 'established' && !this.stopped) this.requestResync(c);
        }, RESYNC_RETRY_MS);
        retry.unref();
        continue;
      }
      log.info({ vrf: this.vrf, clients: targets.length, count: sent.count }, 'full resync sent: waiting for the peers to acknowledge its end');
      // The next resync (another connection that came up) need not wait for this one's ack.
      const acking = this.completeResync(sent, started).finally(() => this.resyncsAcking.delete(acking));
      this.resyncsAcking.add(acking);
    }
  }

  /** A full resync completes only once the peer acknowledged its end: it applied (or refused) all of it. */
  private async completeResync(sent: BulkSent, started: number): Promise<void> {
    for (const o of await this.outcome(sent, (c) => {
      if (c.status !== 'established') return;
      this.inSync.add(c);
      c.delta.arm(c.peerEpoch); // from here on, a delta resync can follow a short outage
    })) {
      if (!o.complete) {
        log.warn({ vrf: this.vrf, peer: o.peer, count: sent.count }, 'full resync not acknowledged by the peer (connection lost): not complete, the next connection resyncs again');
        continue;
      }
      // A resync may cover some connections only (the ones that came up): the count is the
      // latest acknowledged one of every worker's connection, as on the receiving side.
      const latest = this.resyncAcked.get(o.peer) ?? new Map<number, number>();
      if (latest.size > 0 && this.resyncAckedWorkers !== this.config().workers) latest.clear();
      this.resyncAckedWorkers = this.config().workers;
      for (const [w, n] of o.perWorker) latest.set(w, n);
      this.resyncAcked.set(o.peer, latest);
      let count = 0;
      for (const n of latest.values()) count += n;
      const summary: ResyncSummary = { time: new Date().toISOString(), duration: Math.round(performance.now() - started), count };
      this.onResyncSent(summary);
      log.info({ vrf: this.vrf, peer: o.peer, sent: sent.count, acknowledged: o.acknowledged, peerRefused: o.refused, durationMs: summary.duration },
        'full resync acknowledged by the peer');
      this.notify({ kind: 'full-resync-complete', vrf: this.vrf, peer: o.peer, summary });
    }
  }

  /**
   * Delta resyncs: each connection gets the last message of every conntrack that changed while it
   * was apart (deletes first: a conntrack ended and created again must lose its old NAT binding),
   * with events held meanwhile (they follow). Returns the connections that need a full resync
   * instead (their record was disarmed since they came up).
   */
  private async sendDeltas(targets: SyncClient[]): Promise<SyncClient[]> {
    const started = performance.now();
    const full: SyncClient[] = [];
    const acks: Array<{ c: SyncClient; changes: number; ack: Promise<BulkAck> }> = [];
    this.dumping++;
    try {
      for (const c of targets) {
        const changes = c.takeDelta();
        if (changes === undefined) {
          full.push(c);
          continue;
        }
        c.beginResync(BulkKind.Delta);
        const now = this.clock.now();
        for (const ch of changes.values()) if (ch.deletedBefore || ch.op.t === FrameType.CtDelete) c.bulk({ t: FrameType.CtDelete, tuple: opTuple(ch.op) });
        let records = 0;
        for (const ch of changes.values()) {
          if (ch.op.t === FrameType.CtDelete) continue;
          c.bulk({ t: ch.op.t, rec: this.aged(ch, now), fresh: ch.op.fresh ?? false });
          if (++records % 4096 === 0) await c.room();
        }
        acks.push({ c, changes: changes.size, ack: c.bulkEnd(BulkKind.Delta, records) });
      }
    } finally {
      if (--this.dumping === 0) this.releaseHeld();
    }
    const acking = Promise.all(acks.map(async ({ c, changes, ack }) => {
      const a = await ack;
      const fields = { vrf: this.vrf, peer: c.config.peer, client: c.name, changes };
      if (!a.acknowledged || c.status !== 'established') {
        log.warn(fields, 'delta resync not acknowledged by the peer (connection lost): the next connection resyncs in full');
        return;
      }
      this.inSync.add(c);
      c.delta.arm(c.peerEpoch);
      this.deltaResyncs++;
      const durationMs = Math.round(performance.now() - started);
      this.lastDelta = { changes, durationMs };
      log.info({ ...fields, peerRefused: a.refused, durationMs }, 'delta resync acknowledged by the peer');
    })).then(() => undefined);
    const tracked = acking.finally(() => this.resyncsAcking.delete(tracked));
    this.resyncsAcking.add(tracked);
    return full;
  }

  /** A change's record as of now: the time its conntrack had left, less what passed since it was routed. */
  private aged(ch: DeltaChange, now: number): SyncRecord {
    const op = ch.op as { rec: SyncRecord };
    const e = op.rec.entry;
    const elapsed = Math.floor((now - ch.at) / 1000);
    // The TCP `undefined` value (rule 3) is a configured value, not a countdown.
    if (elapsed <= 0 || (e.orig.proto === 'tcp' && e.state !== 'established')) return op.rec;
    return { ...op.rec, timeout: Math.max(1, op.rec.timeout - elapsed) };
  }

  /**
   * Waits for every connection's acknowledgement of a bulk's end (`acked` runs for each one
   * acknowledged) and sums it up per peer.
   */
  private async outcome(sent: BulkSent, acked: (c: SyncClient) => void): Promise<PeerBulkOutcome[]> {
    const byPeer = new Map<string, PeerBulkOutcome>();
    await Promise.all([...sent.acks].map(async ([c, p]) => {
      const a = await p;
      const peer = c.config.peer;
      const o = byPeer.get(peer) ?? { peer, perWorker: new Map(), complete: true, acknowledged: 0, refused: 0 };
      byPeer.set(peer, o);
      if (!a.acknowledged) {
        o.complete = false;
        return;
      }
      acked(c);
      const carried = sent.perWorker[c.config.worker] ?? 0;
      const refused = Math.min(carried, a.refused);
      o.refused += refused;
      o.acknowledged += carried - refused;
      o.perWorker.set(c.config.worker, carried - refused);
    }));
    return [...byPeer.values()];
  }

  /**
   * The peer, a master that restarted with an empty table, asked for ours (we are its backup):
   * every synchronised conntrack we hold goes to it as a full resync, on its owner's connection.
   */
  async sendTableTo(targets: SyncClient[]): Promise<void> {
    const up = targets.filter((c) => c.status === 'established' && !this.tableSending.has(c));
    if (this.role !== 'backup' || this.stopped || up.length === 0) return;
    for (const c of up) this.tableSending.add(c);
    try {
      const sent = await this.bulkSend(up, BulkKind.FullResync, (e) => e.synced === true && !e.alg && !e.noSync, (b, i) => b.synced(i) && !b.alg(i) && !b.noSync(i), false);
      for (const o of await this.outcome(sent, () => undefined)) {
        log.info({ vrf: this.vrf, peer: o.peer, acknowledged: o.acknowledged, peerRefused: o.refused, complete: o.complete },
          'synchronised conntracks sent to the restarted master that asked for them');
      }
    } finally {
      for (const c of up) this.tableSending.delete(c);
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
    if (!due) return this.resyncedAsHeld(e);
    if (this.pending.size > 0) this.pending.delete(ctKey(e.orig));
    this.markSynced(e);
    return true;
  }

  /**
   * A conntrack synced before and no longer established: the resync carries it as the table holds
   * it, so that is what is remembered as sent (its state and binding). False when not synced.
   */
  private resyncedAsHeld(e: ConntrackEntry): boolean {
    if (!this.synced.has(e.orig)) return false;
    this.synced.set(e.orig, syncedValue(STATE_INDEX.get(e.state) as number, bindingTag(e.reply)));
    return true;
  }

  /** Rule 8: everything established (or already synced) goes out now, with its activity time. */
  private manualEligible(e: ConntrackEntry): boolean {
    if (e.alg) return false;
    if (e.noSync || (e.virtualService !== undefined && !this.config().mirroredServices.has(e.virtualService))) return false;
    if (this.resyncedAsHeld(e)) return true;
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
    const value = syncedValue(state, bindingTagIPv4(b.ipv4(i, 2), b.ipv4(i, 3), b.port(i, 2), b.port(i, 3)));
    if (!due) {
      // As resyncedAsHeld: sent as the table holds it, if synced before.
      if (this.synced.getIPv4(proto, src, dst, sport, dport) === undefined) return false;
      this.synced.setIPv4(proto, src, dst, sport, dport, value);
      return true;
    }
    if (this.pending.size > 0) this.pending.delete(ipv4Key(proto, src, sport, dst, dport));
    if (this.synced.setIPv4(proto, src, dst, sport, dport, value) === undefined) this.countSynced(ipv4TupleHash(src) % this.config().workers, 1);
    return true;
  }

  /** Packed twin of manualEligible (see resyncEligiblePacked). */
  private manualEligiblePacked(b: PackedConntrackBatch, i: number): boolean {
    if (b.alg(i) || b.noSync(i)) return false;
    const proto = b.protoIndex(i);
    const src = b.ipv4(i, 0), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
    const value = syncedValue(b.stateIndex(i), bindingTagIPv4(b.ipv4(i, 2), b.ipv4(i, 3), b.port(i, 2), b.port(i, 3)));
    if (this.synced.getIPv4(proto, src, dst, sport, dport) !== undefined) {
      this.synced.setIPv4(proto, src, dst, sport, dport, value);
      return true;
    }
    if (b.stateIndex(i) !== ESTABLISHED) return false;
    if (this.pending.size > 0) this.pending.delete(ipv4Key(proto, src, sport, dst, dport));
    if (this.synced.setIPv4(proto, src, dst, sport, dport, value) === undefined) this.countSynced(ipv4TupleHash(src) % this.config().workers, 1);
    return true;
  }

  /** Dump the VRF once and send the eligible entries to each target on its worker's connection. */
  private async bulkSend(
    targets: SyncClient[], kind: BulkKind, eligible: (e: ConntrackEntry) => boolean, eligiblePacked: PackedEligible, withActivity: boolean,
  ): Promise<BulkSent> {
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
      this.cancelDeltas('conntrack events dropped during a dump');
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
  ): Promise<BulkSent> {
    const workers = this.config().workers;
    const byWorker: SyncClient[][] = Array.from({ length: workers }, () => []);
    for (const c of targets) {
      c.beginResync(kind);
      byWorker[c.config.worker]?.push(c);
    }
    let count = 0;
    const perWorker = new Array<number>(workers).fill(0);
    const sendEntry = (e: ConntrackEntry): void => {
      const marked = this.synced.size;
      if (!eligible(e)) return;
      const fresh = this.synced.size > marked;
      count++;
      const w = ownerWorker(e.orig, workers);
      const rec = this.record(e, withActivity);
      for (const c of byWorker[w] as SyncClient[]) c.bulk({ t: FrameType.CtNew, rec, fresh });
      perWorker[w] = (perWorker[w] as number) + 1;
    };
    try {
      // (A backup sending its table to a restarted master marks nothing.)
      if (this.role === 'master') this.synced.reserve(this.engine.counters(this.vrf).conntracks);
    } catch {
      // the VRF is being removed: the dump below says so
    }
    if (this.engine.dumpPacked) {
      // No entry object for plain IPv4 conntracks: fields -> wire records, one payload per frame.
      const builders = Array.from({ length: workers }, () => new IPv4PayloadBuilder());
      /** Conntracks new to the synced set in each builder's payload. */
      const fresh = new Array<number>(workers).fill(0);
      const ship = (w: number): void => {
        const b = builders[w] as IPv4PayloadBuilder;
        const n = b.count;
        const payload = b.take();
        for (const c of byWorker[w] as SyncClient[]) c.bulkPayload(payload, n, fresh[w]);
        fresh[w] = 0;
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
          const marked = this.synced.size;
          if (!eligiblePacked(batch, i)) continue;
          count++;
          const w = ipv4TupleHash(batch.ipv4(i, 0)) % workers;
          if (this.synced.size > marked) fresh[w] = (fresh[w] as number) + 1;
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
    const acks = new Map<SyncClient, Promise<BulkAck>>();
    for (const c of targets) acks.set(c, c.bulkEnd(kind, perWorker[c.config.worker] ?? 0));
    return { count, perWorker, acks };
  }

  /**
   * The ha-fp-conntrack-synchronization RPC: runs on the master, completes in the background,
   * when every peer acknowledged its end (or a connection was lost first). `acknowledged`: the
   * conntracks the least-served peer acknowledged as written; `peerRefused`: those its engine refused.
   */
  async manualSync(): Promise<ManualSyncResult> {
    if (this.role !== 'master') throw new Error(`VRF ${this.vrf} is not master of HA group ${this.config().listenHaGroup}: nothing to synchronise`);
    await this.resyncIdle();
    const targets = this.peers().flat().filter((c) => c.status === 'established');
    if (targets.length === 0) throw new Error(`VRF ${this.vrf}: no sync connection to a peer is up: nothing was synchronised`);
    const started = performance.now();
    const sent = await this.bulkSend(targets, BulkKind.Manual, (e) => this.manualEligible(e), (b, i) => this.manualEligiblePacked(b, i), true);
    const outcomes = await this.outcome(sent, () => undefined);
    const duration = Math.round(performance.now() - started);
    const least = outcomes.reduce((a, b) => (b.acknowledged < a.acknowledged ? b : a));
    const result: ManualSyncResult = {
      count: sent.count, acknowledged: least.acknowledged, peerRefused: least.refused, complete: outcomes.every((o) => o.complete), duration,
    };
    const fields = { vrf: this.vrf, ...result, durationMs: duration, connections: targets.length };
    if (result.complete) log.info(fields, 'manual synchronization complete: acknowledged by the peers');
    else log.warn({ ...fields, notAcknowledgedBy: outcomes.filter((o) => !o.complete).map((o) => o.peer) }, 'manual synchronization incomplete: a connection was lost before the peer acknowledged it');
    this.notify({ kind: 'manual-synchronization-complete', vrf: this.vrf, ...result });
    return result;
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
    const v = this.synced.get(orig);
    return v === undefined ? -1 : syncedState(v);
  }

  mirroredStateIPv4(proto: number, src: number, dst: number, sport: number, dport: number): number {
    const v = this.synced.getIPv4(proto, src, dst, sport, dport);
    return v === undefined ? -1 : syncedState(v);
  }

  // ---- state ----

  /**
   * Conntracks acknowledged by every peer: per worker, the marked conntracks less those still in
   * flight (sent, not acknowledged) and those the peer refused since the last bulk, counted
   * only while the worker's connection to every peer is up, not out of sync (queue overflow) and
   * its peer acknowledged a full resync since it came up; none when a peer was never reached.
   * Refusals and in-flight records are counts, not conntracks, so this errs low, never high.
   */
  syncedCount(): number {
    const peers = this.peers();
    if (peers.length === 0) return 0;
    let n = 0;
    for (let w = 0; w < this.syncedPerWorker.length; w++) {
      let unconfirmed = 0;
      const delivered = peers.every((clients) => {
        const c = clients[w];
        if (c === undefined || c.status !== 'established' || c.outOfSync || !this.inSync.has(c)) return false;
        unconfirmed += c.acks.inFlightFresh + c.acks.refusedSinceBulk;
        return true;
      });
      if (delivered) n += Math.max(0, (this.syncedPerWorker[w] ?? 0) - unconfirmed);
    }
    return n;
  }

  /** Conntrack records written to the peers and not yet acknowledged. */
  inFlightCount(): number {
    let n = 0;
    for (const clients of this.peers()) for (const c of clients) n += c.acks.inFlight;
    return n;
  }

  /** Conntrack records the peers acknowledged as refused by their engine. */
  peerRefusedCount(): number {
    let n = 0;
    for (const clients of this.peers()) for (const c of clients) n += c.acks.refusedTotal;
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
