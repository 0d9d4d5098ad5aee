// The synchronisation of one VRF: turns the dataplane's conntrack events into messages on the
// right connection (rules 1, 3, 6, 7, 10), runs full resyncs (rule 2) and manual synchronisations
// (rule 8), and applies what the peers send into the local engine. It only sends while its HA
// group is master (rule 11); the receiving side works in every state.
import type { ConntrackEntry, ConntrackEvent, DataplaneEngine, FlowTuple, HaRole, L4Proto, PackedConntrackBatch } from '../fastpath/engine.js';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { ipv4TupleHash, ownerWorker } from '../fastpath/tuple-hash.js';
import { logger } from '../core/log.js';
import {
  decodeDeletes, decodeEntries, forEachIPv4Orig, IPv4PayloadBuilder, isPlainIPv4Payload, STATES, type SyncRecord,
} from './conntrack-codec.js';
import { TupleMap } from './tuple-map.js';
import { readIPv6, writeIPv6 } from './ip-bytes.js';
import { FINGERPRINT_BYTES, type Hello } from './handshake.js';
import { BulkKind, type Frame, FrameType, SyncProtocolError } from './protocol.js';
import { type ConnectionStatus, SyncClient, type SyncClientListener, type SyncClientStats } from './sync-client.js';
import { differingParts, type FingerprintPart, type VrfSyncConfig } from './sync-config.js';
import type { ReceiverSession } from './sync-listener.js';

const log = logger('sync');

export interface SyncTuning {
  queueLimit: number;
  keepaliveMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  /** Identifies this node in the hello (host name by default). */
  nodeId: string;
}

export type SyncNotification =
  | { kind: 'connection-up'; vrf: string; peer: string; client: string }
  | { kind: 'connection-down'; vrf: string; peer: string; client: string; reason: string }
  | { kind: 'full-resync-complete'; vrf: string; peer: string; summary: ResyncSummary }
  | { kind: 'manual-synchronization-complete'; vrf: string; count: number; duration: number }
  | { kind: 'peer-configuration-mismatch'; vrf: string; peer: string; local: string; remote: string; differences: FingerprintPart[] };

export interface ResyncSummary {
  /** ISO date-and-time of completion. */
  time: string;
  /** Milliseconds. */
  duration: number;
  count: number;
}

export type FingerprintStatus = 'match' | 'mismatch' | 'unknown';


interface PendingInfo {
  entry: ConntrackEntry;
  dueAt: number;
}

interface PeerLink {
  name: string;
  clients: SyncClient[];
  fingerprint: FingerprintStatus;
  /** The peer's last fingerprint (hello, hello-ack or a ConfigFingerprint frame). */
  remoteFingerprint?: Buffer;
  /** Parts that differ while fingerprint is mismatch. */
  differences: FingerprintPart[];
}

/** What the receiving side remembers of one incoming connection. */
interface InboundSession {
  peer: string;
  worker: number;
  workers: number;
  /** Keys carried by the full resync in progress on this connection. */
  bulkSeen: TupleMap | undefined;
  /**
   * A full resync is in progress on this connection into a table that held no synced conntrack
   * when it began: nothing can be stale, so no key is recorded and nothing is purged at its end.
   */
  bulkFresh: boolean;
}

const STATE_INDEX = new Map(STATES.map((st, i) => [st, i]));
const ESTABLISHED = STATE_INDEX.get('established') as number;
const PROTO_NAMES: readonly L4Proto[] = ['tcp', 'udp', 'icmp'];

/** Text of a 32-bit IPv4 value. */
function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Eligibility of entry i of a packed dump batch (plain IPv4, no virtual service). */
type PackedEligible = (b: PackedConntrackBatch, i: number) => boolean;

export function ctKey(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

function bump(m: Map<string, number>, k: string | undefined, by: number): void {
  if (k === undefined) return;
  const n = (m.get(k) ?? 0) + by;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
}

/** One text per address: IPv4-mapped IPv6 as IPv4, IPv6 in RFC 5952 form (configured vs. seen). */
function plainAddress(a: string): string {
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  if (!a.includes(':')) return a;
  try {
    const b = Buffer.alloc(16);
    writeIPv6(a, b, 0);
    return readIPv6(b, 0);
  } catch {
    return a;
  }
}

export class VrfSync implements SyncClientListener {
  readonly vrf: string;
  role: HaRole = 'backup';
  readonly peers: PeerLink[] = [];
  receive = 0;
  receiveError = 0;
  lastFullResync: ResyncSummary | undefined;
  /** Conntracks sent (or found in a resync) and not destroyed since: the "synced" count. */
  private synced = new TupleMap();
  /** Virtual service of the synced conntracks that have one (mirroring counters). */
  private syncedVs = new Map<string, string>();
  /** Established conntracks waiting for their synchronization delay (rule 6). */
  private pending = new Map<string, PendingInfo>();
  private tcpDue: Array<{ key: string; dueAt: number }> = [];
  private tcpDueHead = 0;
  private tcpTimer: TimerHandle | undefined;
  private mirroredActive = new Map<string, number>();
  /** On the standby: mirrored conntrack -> its virtual service (for mirrored-connections-on-standby). */
  private mirroredStandbyKeys = new Map<string, string>();
  private mirroredStandby = new Map<string, number>();
  private resyncWanted = new Set<SyncClient>();
  private resyncRunning: Promise<void> | undefined;
  private receivedBulkStart = 0;
  /**
   * Records handed to the engine by the receiving side, per sending worker ("workers/worker"),
   * counted before the write resolves; and the engine's synced count before the first of them.
   */
  private acceptedByOwner = new Map<string, number>();
  private syncedBeforeReceiving: number | undefined;
  private stopped = false;

  constructor(
    public config: VrfSyncConfig,
    private readonly engine: DataplaneEngine,
    private readonly clock: Clock,
    netClock: Clock,
    private readonly tuning: SyncTuning,
    private readonly notify: (n: SyncNotification) => void,
  ) {
    this.vrf = config.vrf;
    for (const p of config.peers) {
      const link: PeerLink = { name: p.name, clients: [], fingerprint: 'unknown', differences: [] };
      for (let w = 0; w < config.workers; w++) {
        link.clients.push(new SyncClient({
          vrf: config.vrf, peer: p.name, worker: w, workers: config.workers, nodeId: tuning.nodeId,
          secret: config.secret, fingerprint: config.fingerprint, source: p.source, address: p.address, port: p.port,
          queueLimit: tuning.queueLimit, keepaliveMs: tuning.keepaliveMs, backoffMinMs: tuning.backoffMinMs, backoffMaxMs: tuning.backoffMaxMs,
        }, clock, netClock, this));
      }
      this.peers.push(link);
    }
  }

  start(): void {
    if (!this.config.enabled) {
      for (const p of this.peers) for (const c of p.clients) c.status = 'disabled';
      return;
    }
    for (const p of this.peers) for (const c of p.clients) c.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.tcpTimer?.cancel();
    for (const p of this.peers) for (const c of p.clients) c.stop();
    await this.resyncRunning;
  }

  /**
   * Settings that do not need new connections (delays, timeouts, mirrored services, the
   * configuration fingerprint: a changed one goes to the peers on the open connections).
   */
  update(config: VrfSyncConfig): void {
    const fingerprintChanged = !config.fingerprint.equals(this.config.fingerprint);
    this.config = config;
    if (!fingerprintChanged) return;
    for (const p of this.peers) {
      for (const c of p.clients) {
        c.config.fingerprint = config.fingerprint;
        c.sendFingerprint();
      }
      if (p.remoteFingerprint) this.checkFingerprint(p.name, p.remoteFingerprint);
    }
  }

  // ---- roles (rule 11) ----

  setRole(role: HaRole): void {
    if (role === this.role) return;
    const old = this.role;
    this.role = role;
    this.synced.clear();
    this.syncedVs.clear();
    this.mirroredActive.clear();
    this.clearPending();
    if (role === 'master') {
      // The standby copies are ours now; the peer (the new backup) gets everything we hold.
      this.mirroredStandbyKeys.clear();
      this.mirroredStandby.clear();
      for (const p of this.peers) for (const c of p.clients) if (c.status === 'established') this.requestResync(c);
    }
    log.info({ vrf: this.vrf, from: old, to: role }, 'sync follows HA group state');
  }

  private clearPending(): void {
    this.pending.clear();
    this.tcpDue = [];
    this.tcpDueHead = 0;
    this.tcpTimer?.cancel();
    this.tcpTimer = undefined;
  }

  // ---- dataplane events (rules 3, 6, 7, 10) ----

  onEvent(ev: ConntrackEvent): void {
    if (this.role !== 'master' || !this.config.enabled || this.stopped) return;
    const e = ev.entry;
    if (e.alg) return; // rule 7
    // Rule 10, from the engine's mark or from the configuration sync holds.
    if (e.noSync || (e.virtualService !== undefined && !this.config.mirroredServices.has(e.virtualService))) return;
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
    const delayMs = this.config.delays[e.orig.proto].synchronization * 1000;
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
    if (this.syncedVs.size > 0) {
      const key = ctKey(e.orig);
      const vs = this.syncedVs.get(key);
      if (vs !== undefined) {
        this.syncedVs.delete(key);
        bump(this.mirroredActive, vs, -1);
      }
    }
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
    if (e.orig.proto === 'tcp' && e.state !== 'established') return this.config.timeouts.tcpUndefined;
    return e.timeout;
  }

  private record(e: ConntrackEntry, withActivity: boolean): SyncRecord {
    return { entry: e, withActivity, timeout: this.timeoutOf(e) };
  }

  private markSynced(e: ConntrackEntry): void {
    this.synced.set(e.orig, STATE_INDEX.get(e.state) as number);
    if (e.virtualService !== undefined) {
      const key = ctKey(e.orig);
      const old = this.syncedVs.get(key);
      if (old === e.virtualService) return;
      bump(this.mirroredActive, old, -1);
      this.syncedVs.set(key, e.virtualService);
      bump(this.mirroredActive, e.virtualService, 1);
    }
  }

  private sendNew(e: ConntrackEntry): void {
    this.markSynced(e);
    this.route(e, (c) => c.sendRecord(FrameType.CtNew, this.record(e, false)));
  }

  /** Rule 1: a conntrack always travels on the connection of its owning worker, to every peer. */
  private route(e: ConntrackEntry, fn: (c: SyncClient) => void): void {
    const w = ownerWorker(e.orig, this.config.workers);
    for (const p of this.peers) fn(p.clients[w] as SyncClient);
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
      if (this.role !== 'master' || !this.config.enabled || targets.length === 0) continue;
      const started = performance.now();
      const count = await this.bulkSend(targets, BulkKind.FullResync, (e) => this.resyncEligible(e), (b, i) => this.resyncEligiblePacked(b, i), false);
      const summary: ResyncSummary = { time: new Date().toISOString(), duration: Math.round(performance.now() - started), count };
      this.lastFullResync = summary;
      log.info({ vrf: this.vrf, clients: targets.length, count, durationMs: summary.duration }, 'full resync sent');
      const peers = new Set(targets.map((c) => c.config.peer));
      for (const peer of peers) this.notify({ kind: 'full-resync-complete', vrf: this.vrf, peer, summary });
    }
  }

  /** What a resync carries: what was synchronised, plus established conntracks whose delay passed. */
  private resyncEligible(e: ConntrackEntry): boolean {
    if (e.alg) return false;
    if (e.noSync || (e.virtualService !== undefined && !this.config.mirroredServices.has(e.virtualService))) return false;
    // Established and past its delay (or held from the former master): sent, whether or not
    // already marked; otherwise only if it was synchronised before (e.g. left established since).
    let due = e.state === 'established';
    if (due && !e.synced) {
      const d = this.config.delays[e.orig.proto].synchronization * 1000;
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
    if (e.noSync || (e.virtualService !== undefined && !this.config.mirroredServices.has(e.virtualService))) return false;
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
      const d = this.config.delays[PROTO_NAMES[proto] as L4Proto].synchronization * 1000;
      if (d > 0) due = proto === 0 ? this.clock.now() - b.establishedAt(i) >= d : b.lastActivity(i) >= b.establishedAt(i) + d;
    }
    const src = b.ipv4(i, 0), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
    if (!due) return this.synced.getIPv4(proto, src, dst, sport, dport) !== undefined;
    if (this.pending.size > 0) this.pending.delete(`${PROTO_NAMES[proto]}|${ipv4Text(src)}|${sport}|${ipv4Text(dst)}|${dport}`);
    this.synced.setIPv4(proto, src, dst, sport, dport, state);
    return true;
  }

  /** Packed twin of manualEligible (see resyncEligiblePacked). */
  private manualEligiblePacked(b: PackedConntrackBatch, i: number): boolean {
    if (b.alg(i) || b.noSync(i)) return false;
    const proto = b.protoIndex(i);
    const src = b.ipv4(i, 0), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
    if (this.synced.getIPv4(proto, src, dst, sport, dport) !== undefined) return true;
    if (b.stateIndex(i) !== ESTABLISHED) return false;
    if (this.pending.size > 0) this.pending.delete(`${PROTO_NAMES[proto]}|${ipv4Text(src)}|${sport}|${ipv4Text(dst)}|${dport}`);
    this.synced.setIPv4(proto, src, dst, sport, dport, ESTABLISHED);
    return true;
  }

  /** Dump the VRF once and send the eligible entries to each target on its worker's connection. */
  private async bulkSend(
    targets: SyncClient[], kind: BulkKind, eligible: (e: ConntrackEntry) => boolean, eligiblePacked: PackedEligible, withActivity: boolean,
  ): Promise<number> {
    const workers = this.config.workers;
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
        const tcpUndefined = this.config.timeouts.tcpUndefined;
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
    return count;
  }

  /** The ha-fp-conntrack-synchronization RPC: runs on the master, completes in the background. */
  async manualSync(): Promise<{ count: number; duration: number }> {
    if (this.role !== 'master') throw new Error(`VRF ${this.vrf} is not master of HA group ${this.config.listenHaGroup}: nothing to synchronise`);
    await this.resyncIdle();
    const targets = this.peers.flatMap((p) => p.clients).filter((c) => c.status === 'established');
    const started = performance.now();
    const count = targets.length === 0 ? 0 : await this.bulkSend(targets, BulkKind.Manual, (e) => this.manualEligible(e), (b, i) => this.manualEligiblePacked(b, i), true);
    const duration = Math.round(performance.now() - started);
    log.info({ vrf: this.vrf, count, durationMs: duration, connections: targets.length }, 'manual synchronization complete');
    this.notify({ kind: 'manual-synchronization-complete', vrf: this.vrf, count, duration });
    return { count, duration };
  }

  // ---- SyncClientListener ----

  up(client: SyncClient): void {
    this.notify({ kind: 'connection-up', vrf: this.vrf, peer: client.config.peer, client: client.name });
    if (this.role === 'master') this.requestResync(client); // rule 2
  }

  down(client: SyncClient, reason: string): void {
    this.resyncWanted.delete(client);
    this.notify({ kind: 'connection-down', vrf: this.vrf, peer: client.config.peer, client: client.name, reason });
  }

  caughtUp(client: SyncClient): void {
    log.info({ vrf: this.vrf, peer: client.config.peer, client: client.name }, 'peer caught up after overflow: full resync');
    this.requestResync(client);
  }

  peerFingerprint(client: SyncClient, fingerprint: Buffer): void {
    this.checkFingerprint(client.config.peer, fingerprint);
  }

  private checkFingerprint(peer: string, fingerprint: Buffer): void {
    const link = this.peers.find((p) => p.name === peer);
    if (!link) return;
    link.remoteFingerprint = fingerprint;
    const differences = differingParts(this.config.fingerprint, fingerprint);
    const status: FingerprintStatus = differences.length === 0 ? 'match' : 'mismatch';
    if (status === link.fingerprint && differences.join() === link.differences.join()) return;
    link.fingerprint = status;
    link.differences = differences;
    if (status === 'mismatch') {
      const local = this.config.fingerprint.toString('hex');
      const remote = fingerprint.toString('hex');
      log.warn({ vrf: this.vrf, peer, differences, local, remote }, 'peer configuration differs from ours');
      this.notify({ kind: 'peer-configuration-mismatch', vrf: this.vrf, peer, local, remote, differences });
    } else {
      log.info({ vrf: this.vrf, peer }, 'peer configuration matches ours');
    }
  }

  // ---- receiving side ----

  /** Resolver for the listener: accept only hellos from a configured peer address. */
  accept(hello: Hello, remoteAddress: string): ReceiverSession | string {
    if (!this.config.enabled) return `ha-fp-conntrack is disabled in VRF ${this.vrf}`;
    const remote = plainAddress(remoteAddress);
    const peer = this.config.peers.find((p) => plainAddress(p.address) === remote);
    if (!peer) {
      this.receiveError++;
      return `${remote} is not a peer of VRF ${this.vrf}`;
    }
    const inbound: InboundSession = { peer: peer.name, worker: hello.worker, workers: hello.workers, bulkSeen: undefined, bulkFresh: false };
    return {
      secret: this.config.secret,
      nodeId: this.tuning.nodeId,
      fingerprint: this.config.fingerprint,
      authenticated: () => this.checkFingerprint(peer.name, hello.fingerprint),
      apply: (f) => this.apply(f, inbound),
      error: () => {
        this.receiveError++;
      },
      closed: () => undefined,
    };
  }

  /**
   * After a full resync on one connection, synced entries of that connection's worker that the
   * resync did not carry were destroyed on the master while we were apart: remove them (on a
   * backup they would never expire).
   */
  private async purgeStale(inbound: InboundSession, seen: TupleMap): Promise<number> {
    const stale: FlowTuple[] = [];
    const check = (e: ConntrackEntry): void => {
      if (!e.synced || ownerWorker(e.orig, inbound.workers) !== inbound.worker) return;
      if (!seen.has(e.orig)) stale.push(e.orig);
    };
    if (this.engine.dumpPacked) {
      // Plain IPv4 entries are checked on their fields; only stale ones become tuple objects.
      await this.engine.dumpPacked(this.vrf, (b) => {
        for (let i = 0; i < b.count; i++) {
          if (!b.isPlainIPv4(i)) {
            check(b.entry(i));
            continue;
          }
          const src = b.ipv4(i, 0);
          if (!b.synced(i) || ipv4TupleHash(src) % inbound.workers !== inbound.worker) continue;
          const proto = b.protoIndex(i), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
          if (seen.getIPv4(proto, src, dst, sport, dport) === undefined) {
            stale.push({ proto: PROTO_NAMES[proto] as L4Proto, src: ipv4Text(src), dst: ipv4Text(dst), sport, dport });
          }
        }
      });
    } else {
      await this.engine.dump(this.vrf, (batch) => {
        for (const e of batch) check(e);
      });
    }
    if (stale.length === 0) return 0;
    for (let i = 0; i < stale.length; i += 4096) await this.engine.remove(this.vrf, stale.slice(i, i + 4096));
    for (const t of stale) {
      const key = ctKey(t);
      const vs = this.mirroredStandbyKeys.get(key);
      if (vs === undefined) continue;
      this.mirroredStandbyKeys.delete(key);
      bump(this.mirroredStandby, vs, -1);
    }
    log.info({ vrf: this.vrf, worker: inbound.worker, removed: stale.length }, 'stale synced conntracks removed after a full resync');
    return stale.length;
  }

  private noteAccepted(inbound: InboundSession, n: number): void {
    this.syncedBeforeReceiving ??= this.engineSynced();
    const key = `${inbound.workers}/${inbound.worker}`;
    this.acceptedByOwner.set(key, (this.acceptedByOwner.get(key) ?? 0) + n);
  }

  /**
   * Whether a full resync starting on this connection can find no stale entry: the engine held no
   * synced conntrack before we received any, and nothing was received that this connection's
   * worker owns (a conntrack always travels on its owner's connection; a different worker count
   * on the sender changes the owners, so then anything received counts).
   */
  private nothingToPurge(inbound: InboundSession): boolean {
    if ((this.syncedBeforeReceiving ?? this.engineSynced()) !== 0) return false;
    for (const [key, n] of this.acceptedByOwner) {
      if (n === 0) continue;
      const [workers, worker] = key.split('/').map(Number);
      if (workers !== inbound.workers || worker === inbound.worker) return false;
    }
    return true;
  }

  /** Synced conntracks the engine holds in this VRF (-1 when it cannot tell). */
  private engineSynced(): number {
    try {
      return this.engine.counters(this.vrf).synced;
    } catch {
      return -1;
    }
  }

  private async apply(f: Frame, inbound: InboundSession): Promise<void> {
    switch (f.type) {
      case FrameType.CtNew:
      case FrameType.CtUpdate: {
        // Fast path: plain IPv4 records go to the engine as received, no object per conntrack.
        if (this.engine.upsertIPv4Records && isPlainIPv4Payload(f.payload)) {
          const count = f.payload.readUInt16BE(0);
          this.noteAccepted(inbound, count);
          const seen = inbound.bulkSeen;
          if (seen) forEachIPv4Orig(f.payload, (proto, src, dst, sport, dport) => seen.setIPv4(proto, src, dst, sport, dport, 0));
          try {
            await this.engine.upsertIPv4Records(this.vrf, f.payload.subarray(2));
          } catch (err) {
            this.receiveError += count;
            log.error({ vrf: this.vrf, err: (err as Error).message, count }, 'engine refused synced conntracks');
            return;
          }
          this.receive += count;
          return;
        }
        const entries = decodeEntries(f.payload, this.vrf, this.clock.now());
        this.noteAccepted(inbound, entries.length);
        // Recorded before the engine call: a pipelined bulk end may purge before this write resolves.
        const seen = inbound.bulkSeen;
        if (seen) for (const e of entries) seen.set(e.orig, 0);
        try {
          await this.engine.upsert(entries);
        } catch (err) {
          this.receiveError += entries.length;
          log.error({ vrf: this.vrf, err: (err as Error).message, count: entries.length }, 'engine refused synced conntracks');
          return;
        }
        this.receive += entries.length;
        for (const e of entries) {
          if (e.virtualService === undefined) continue;
          const key = ctKey(e.orig);
          const old = this.mirroredStandbyKeys.get(key);
          if (old === e.virtualService) continue;
          bump(this.mirroredStandby, old, -1);
          this.mirroredStandbyKeys.set(key, e.virtualService);
          bump(this.mirroredStandby, e.virtualService, 1);
        }
        return;
      }
      case FrameType.CtDelete: {
        const tuples = decodeDeletes(f.payload);
        try {
          await this.engine.remove(this.vrf, tuples);
        } catch (err) {
          this.receiveError += tuples.length;
          log.error({ vrf: this.vrf, err: (err as Error).message }, 'engine refused synced deletes');
          return;
        }
        this.receive += tuples.length;
        for (const t of tuples) {
          const key = ctKey(t);
          const vs = this.mirroredStandbyKeys.get(key);
          if (vs === undefined) continue;
          this.mirroredStandbyKeys.delete(key);
          bump(this.mirroredStandby, vs, -1);
        }
        return;
      }
      case FrameType.BulkStart: {
        if (f.payload.length !== 5) throw new SyncProtocolError('bad bulk-start');
        this.receivedBulkStart = performance.now();
        if (f.payload.readUInt8(0) === BulkKind.FullResync) {
          // Counted synchronously in frame order, so records still being written count too.
          inbound.bulkFresh = this.nothingToPurge(inbound);
          inbound.bulkSeen = inbound.bulkFresh ? undefined : new TupleMap();
        }
        return;
      }
      case FrameType.BulkEnd: {
        if (f.payload.length !== 5) throw new SyncProtocolError('bad bulk-end');
        const kind = f.payload.readUInt8(0);
        if (kind === BulkKind.FullResync && (inbound.bulkSeen || inbound.bulkFresh)) {
          const seen = inbound.bulkSeen;
          inbound.bulkSeen = undefined;
          inbound.bulkFresh = false;
          if (seen) await this.purgeStale(inbound, seen);
          this.lastFullResync = {
            time: new Date().toISOString(),
            duration: Math.round(performance.now() - this.receivedBulkStart),
            count: f.payload.readUInt32BE(1),
          };
        }
        return;
      }
      case FrameType.ConfigFingerprint: {
        if (f.payload.length !== FINGERPRINT_BYTES) throw new SyncProtocolError(`config fingerprint of ${f.payload.length} bytes`);
        this.checkFingerprint(inbound.peer, Buffer.from(f.payload));
        return;
      }
      default:
        throw new SyncProtocolError(`unexpected frame type ${f.type} from a sync client`);
    }
  }

  // ---- state ----

  clientStats(): Array<{ peer: string; client: string; status: ConnectionStatus; stats: SyncClientStats; queued: number }> {
    return this.peers.flatMap((p) => p.clients.map((c) => ({ peer: p.name, client: c.name, status: c.status, stats: c.stats, queued: c.queued() })));
  }

  syncedCount(): number {
    return this.synced.size;
  }

  pendingCount(): number {
    let queued = 0;
    for (const p of this.peers) for (const c of p.clients) queued += c.queued();
    return this.pending.size + queued;
  }

  mirrorCounters(): Map<string, { active: number; standby: number }> {
    const out = new Map<string, { active: number; standby: number }>();
    for (const vs of this.config.mirroredServices) {
      out.set(vs, { active: this.mirroredActive.get(vs) ?? 0, standby: this.mirroredStandby.get(vs) ?? 0 });
    }
    for (const [vs, n] of this.mirroredStandby) if (!out.has(vs)) out.set(vs, { active: 0, standby: n });
    return out;
  }

  /** Every client's connection is up (tests and the demo wait on it). */
  allEstablished(): boolean {
    return this.peers.every((p) => p.clients.every((c) => c.status === 'established'));
  }

  graceEffective(proto: L4Proto): boolean | undefined {
    const g = this.config.delays[proto].grace;
    if (g === undefined) return undefined;
    const t = this.config.timeouts;
    const established = proto === 'tcp' ? t.tcpEstablished : proto === 'udp' ? t.udp : t.icmp;
    return g <= established;
  }
}
