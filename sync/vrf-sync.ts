// The synchronisation of one VRF: its connections to the peers (one client per worker), a sender
// (sync-sender.ts) that works while its HA group is master (rule 11) and a receiver
// (sync-receiver.ts) that works in every state; this class wires them to the clients and holds
// what the state data shows of both.
import type { ConntrackEvent, DataplaneEngine, HaRole, L4Proto } from '../fastpath/engine.js';
import type { Clock } from '../fastpath/clock.js';
import { logger } from '../core/log.js';
import type { Hello } from './handshake.js';
import { type ConnectionStatus, SyncClient, type SyncClientListener, type SyncClientStats } from './sync-client.js';
import { differingParts, type FingerprintPart, type VrfSyncConfig } from './sync-config.js';
import { canonicalAddress } from './peer-address.js';
import type { ReceiverSession } from './sync-listener.js';
import { SyncReceiver } from './sync-receiver.js';
import { type ManualSyncResult, SyncSender } from './sync-sender.js';
import type { FingerprintStatus, ResyncSummary, SyncNotification, SyncTuning } from './vrf-sync-types.js';
import type { Frame } from './protocol.js';
import { AntiEntropyRounds } from './anti-entropy/anti-entropy-rounds.js';
import { antiEntropyState, AntiEntropyStats } from './anti-entropy/anti-entropy-stats.js';
import { decodeDigestReply } from './anti-entropy/digest-frames.js';
import { DEFAULT_RANGES } from './anti-entropy/range-digest.js';

export type { FingerprintStatus, ResyncSummary, SyncNotification, SyncTuning } from './vrf-sync-types.js';
export { ctKey } from './conntrack-key.js';

const log = logger('sync');

interface PeerLink {
  name: string;
  clients: SyncClient[];
  fingerprint: FingerprintStatus;
  /** The peer's last fingerprint (from the handshake or a ConfigFingerprint frame). */
  remoteFingerprint?: Buffer;
  /** Parts that differ while fingerprint is mismatch. */
  differences: FingerprintPart[];
}

export class VrfSync implements SyncClientListener {
  readonly vrf: string;
  readonly peers: PeerLink[] = [];
  lastFullResync: ResyncSummary | undefined;
  /** Conntrack events the engine reported lost, and the full resyncs that repaired the peers at once. */
  eventsLost = 0;
  eventLossResyncs = 0;
  private readonly sender: SyncSender;
  private readonly receiver: SyncReceiver;
  private unsubscribeLoss: (() => void) | undefined;
  /** Anti-entropy (sync/anti-entropy/): the master's rounds, and what both sides counted. */
  readonly antiEntropyStats = new AntiEntropyStats();
  private readonly antiEntropy: AntiEntropyRounds;

  constructor(
    public config: VrfSyncConfig,
    private readonly engine: DataplaneEngine,
    clock: Clock,
    netClock: Clock,
    tuning: SyncTuning,
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
    const current = (): VrfSyncConfig => this.config;
    this.sender = new SyncSender(this.vrf, current, engine, clock, () => this.peers.map((p) => p.clients), notify, (s) => {
      this.lastFullResync = s;
    }, (done) => this.receiver.requestPeerTable(done));
    this.receiver = new SyncReceiver(this.vrf, current, engine, clock, tuning.nodeId, (peer, fp) => this.checkFingerprint(peer, fp), (s) => {
      this.lastFullResync = s;
    });
    this.receiver.attachAntiEntropy(this.antiEntropyStats, notify);
    this.antiEntropy = new AntiEntropyRounds(this.vrf, current, engine, netClock, this.sender, () => this.peers.map((p) => p.clients),
      this.antiEntropyStats, notify, tuning.antiEntropyRanges ?? DEFAULT_RANGES);
    this.sender.onRouted = (e) => this.antiEntropy.observe(e);
  }

  get role(): HaRole {
    return this.sender.role;
  }

  get receive(): number {
    return this.receiver.receive;
  }

  get receiveError(): number {
    return this.receiver.receiveError;
  }

  /** Delta resyncs the peers acknowledged (docs/ha-sync.md § Full resync). */
  get deltaResyncs(): number {
    return this.sender.deltaResyncs;
  }

  /** The latest acknowledged delta resync: conntracks it carried and its duration. */
  get lastDelta(): { changes: number; durationMs: number } | undefined {
    return this.sender.lastDelta;
  }

  /** Events held during a dump at most before a full resync replaces them (tests lower it). */
  set heldEventsLimit(n: number) {
    this.sender.heldLimit = n;
  }

  start(): void {
    if (!this.config.enabled) {
      for (const p of this.peers) for (const c of p.clients) c.status = 'disabled';
      return;
    }
    this.unsubscribeLoss = this.engine.onEventsLost?.((vrf, dropped) => {
      if (vrf !== this.vrf) return;
      this.eventsLost += dropped;
      if (this.sender.repairAfterLoss(dropped) > 0) this.eventLossResyncs++;
    });
    for (const p of this.peers) for (const c of p.clients) c.start();
    this.antiEntropy.configure(this.config.antiEntropyInterval ?? 0);
  }

  async stop(): Promise<void> {
    this.unsubscribeLoss?.();
    this.unsubscribeLoss = undefined;
    this.antiEntropy.stop();
    for (const p of this.peers) for (const c of p.clients) c.stop();
    await this.sender.stop();
  }

  /**
   * Settings that do not need new connections (delays, timeouts, mirrored services, the
   * configuration fingerprint: a changed one goes to the peers on the open connections).
   */
  update(config: VrfSyncConfig): void {
    const fingerprintChanged = !config.fingerprint.equals(this.config.fingerprint);
    this.config = config;
    if (config.enabled) this.antiEntropy.configure(config.antiEntropyInterval ?? 0);
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
    // What this node holds changes by itself as master: a peer that resyncs it later sends all.
    this.receiver.newTableEpoch(`role ${old} -> ${role}`);
    this.sender.setRole(role);
    this.antiEntropy.reset();
    log.info({ vrf: this.vrf, from: old, to: role }, 'sync follows HA group state');
  }

  // ---- dataplane events, full resync (rule 2), manual synchronisation (rule 8) ----

  onEvent(ev: ConntrackEvent): void {
    if (ev.kind !== 'new') this.antiEntropy.observe(ev.entry);
    this.sender.onEvent(ev);
  }

  requestResync(client: SyncClient): void {
    this.sender.requestResync(client);
  }

  /** Resolves when no resync is running or wanted (tests and the demo wait on it). */
  resyncIdle(): Promise<void> {
    return this.sender.resyncIdle();
  }

  /** The ha-fp-conntrack-synchronization RPC: runs on the master, completes in the background. */
  manualSync(): Promise<ManualSyncResult> {
    return this.sender.manualSync();
  }

  // ---- SyncClientListener ----

  up(client: SyncClient): void {
    this.notify({ kind: 'connection-up', vrf: this.vrf, peer: client.config.peer, client: client.name });
    // The link to this peer works again: its other connections waiting out a retry interval try
    // now, so that they come up with this one and share its full resync (sync-sender.ts).
    for (const p of this.peers) if (p.name === client.config.peer) for (const c of p.clients) if (c !== client) c.retryNow();
    if (this.role === 'master') this.requestResync(client); // rule 2
    else client.cancelDelta('not master'); // nothing to send: live messages must not wait for a delta
  }

  down(client: SyncClient, reason: string): void {
    this.sender.forget(client);
    this.antiEntropy.forget(client);
    this.notify({ kind: 'connection-down', vrf: this.vrf, peer: client.config.peer, client: client.name, reason });
  }

  caughtUp(client: SyncClient): void {
    log.info({ vrf: this.vrf, peer: client.config.peer, client: client.name }, 'peer caught up after overflow: full resync');
    this.requestResync(client);
  }

  peerWantsTable(client: SyncClient): void {
    if (this.role !== 'backup') {
      log.warn({ vrf: this.vrf, peer: client.config.peer }, 'the peer asked for our conntracks, but we are master too: not sent');
      return;
    }
    // The peer asks on each of our connections to it: each carries its worker's share.
    void this.sender.sendTableTo([client]);
  }

  serverFrame(client: SyncClient, frame: Frame): void {
    this.antiEntropy.onReply(client, decodeDigestReply(frame.payload));
  }

  /** One anti-entropy round now (tests, the benchmark); the number of connections a digest went to. */
  antiEntropyRound(): Promise<number> {
    return this.antiEntropy.runRound();
  }

  /** The `anti-entropy` container of the state data. */
  antiEntropyState(): Record<string, unknown> {
    return antiEntropyState(this.antiEntropyStats);
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
    // The peer reached us: the link is back, our own connections to it need not wait out a backoff.
    const remote = canonicalAddress(remoteAddress);
    for (const p of this.peers) for (const c of p.clients) if (canonicalAddress(c.config.address) === remote) c.retryNow();
    return this.receiver.accept(hello, remoteAddress);
  }

  // ---- state ----

  clientStats(): Array<{ peer: string; client: string; status: ConnectionStatus; stats: SyncClientStats; queued: number }> {
    return this.peers.flatMap((p) => p.clients.map((c) => ({ peer: p.name, client: c.name, status: c.status, stats: c.stats, queued: c.queued() })));
  }

  /**
   * On the master, the conntracks every peer acknowledged (sync-sender.ts); on a backup, the
   * synced conntracks its engine holds.
   */
  syncedCount(): number {
    if (this.role === 'master') return this.sender.syncedCount();
    try {
      return this.engine.counters(this.vrf).synced;
    } catch {
      return 0; // the VRF is not (or no longer) in the engine
    }
  }

  /** Connections (client names) that are up, and those that are not, with their status. */
  connections(): { up: string[]; down: string[] } {
    const up: string[] = [];
    const down: string[] = [];
    for (const p of this.peers) {
      for (const c of p.clients) (c.status === 'established' ? up : down).push(`${p.name}/${c.name} ${c.status}`);
    }
    return { up, down };
  }

  pendingCount(): number {
    return this.sender.pendingCount();
  }

  /** Events of an older incarnation of a synced conntrack (another NAT binding) dropped by the sender. */
  get olderIncarnationEvents(): number {
    return this.sender.olderIncarnationEvents;
  }

  /** Conntrack records sent to the peers and not yet acknowledged (0 on a backup: it sends nothing). */
  inFlightCount(): number {
    return this.sender.inFlightCount();
  }

  /** Conntrack records the peers' engines refused (acknowledged as refused) since this VRF's sync started. */
  peerRefusedCount(): number {
    return this.sender.peerRefusedCount();
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
