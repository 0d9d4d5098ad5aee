// The receiving side: one TCP server per local (address, port), shared by every VRF that listens
// there. A connection from an address that is no configured peer of any of those VRFs is closed
// at accept, before a byte of it is read (the server accepts paused); each peer address has its
// own connection slots, so no other host can use them up. Accepted connections run the handshake
// and then apply conntracks (inbound-connection.ts).
import { createServer, type Server, type Socket } from 'node:net';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { InboundConnection, type InboundHost, listenerLog as log, type ReceiverResolver } from './inbound-connection.js';
import { canonicalAddress } from './peer-address.js';
import { RateLimitedWarning } from './rate-limited-warning.js';

export type { ReceiverResolver, ReceiverSession } from './inbound-connection.js';

/**
 * Connections one peer address may hold per VRF that lists it: a peer needs one per worker
 * (nb-event-threads, at most 32), and reconnects may briefly overlap the old ones.
 */
export const PEER_SLOTS_PER_VRF = 64;

interface Attachment {
  resolver: ReceiverResolver;
  peers: ReadonlySet<string>;
}

export interface SyncListenerStats {
  /** Connections closed at accept: the source is no configured peer. */
  refusedNonPeer: number;
  /** Connections closed at accept: the peer address already held all its slots. */
  refusedOverLimit: number;
  /** Peers that failed to prove the shared secret. */
  authenticationFailures: number;
}

export class SyncListener implements InboundHost {
  readonly stats: SyncListenerStats = { refusedNonPeer: 0, refusedOverLimit: 0, authenticationFailures: 0 };
  readonly warnings: RateLimitedWarning;
  listening = false;
  private server: Server | undefined;
  private connections = new Set<InboundConnection>();
  private perSource = new Map<string, number>();
  private attachments = new Map<string, Attachment>();
  private retryTimer: TimerHandle | undefined;
  private closed = false;
  private listenFailures = 0;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly netClock: Clock,
    readonly keepaliveMs: number,
  ) {
    this.warnings = new RateLimitedWarning(log, netClock);
  }

  /** Register one VRF: its resolver (hellos name their VRF) and its peers' addresses. */
  attach(vrf: string, resolver: ReceiverResolver, peerAddresses: readonly string[]): void {
    this.attachments.set(vrf, { resolver, peers: new Set(peerAddresses.map(canonicalAddress)) });
  }

  /** VRFs attached. */
  attachedCount(): number {
    return this.attachments.size;
  }

  detach(vrf: string): number {
    this.attachments.delete(vrf);
    for (const c of this.connections) if (c.vrf === vrf) c.destroy();
    return this.attachments.size;
  }

  resolver(vrf: string): ReceiverResolver | undefined {
    return this.attachments.get(vrf)?.resolver;
  }

  authenticationFailed(): void {
    this.stats.authenticationFailures++;
  }

  /** Connections `remote` may hold at once (0: not a peer of any VRF here). */
  private slotsOf(remote: string): number {
    let vrfs = 0;
    for (const a of this.attachments.values()) if (a.peers.has(remote)) vrfs++;
    return vrfs * PEER_SLOTS_PER_VRF;
  }

  start(): void {
    // Paused: nothing is read from a connection before its source address has been checked.
    const server = createServer({ pauseOnConnect: true }, (s) => this.accept(s));
    this.server = server;
    server.on('error', (err: NodeJS.ErrnoException) => {
      // Logged at the first failure and then every 30th (e.g. the source address is not up yet).
      if (this.listenFailures++ % 30 === 0) {
        log.error({ address: this.address, port: this.port, err: err.message, failures: this.listenFailures }, 'sync listener cannot listen; retrying (250 ms doubling to 5 s)');
      }
      this.listening = false;
      const delay = Math.min(5000, 250 * 2 ** Math.min(5, this.listenFailures - 1));
      if (!this.closed) this.retryTimer = this.netClock.setTimer(delay, () => this.start());
    });
    server.listen({ host: this.address, port: this.port, backlog: 1024 }, () => {
      this.listening = true;
      this.listenFailures = 0;
      log.info({ address: this.address, port: this.port }, 'sync listener up');
    });
  }

  /**
   * Bind now, once, for the prepare phase of a commit: rejects with the bind error (port taken,
   * address not local) instead of retrying as start() does. Once bound it serves like start().
   */
  async bind(): Promise<void> {
    // Paused: nothing is read from a connection before its source address has been checked.
    const server = createServer({ pauseOnConnect: true }, (s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.address, port: this.port, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err: Error) => log.error({ address: this.address, port: this.port, err: err.message }, 'sync listener error'));
    this.server = server;
    this.listening = true;
    log.info({ address: this.address, port: this.port }, 'sync listener up');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.retryTimer?.cancel();
    for (const c of this.connections) c.destroy();
    const server = this.server;
    this.server = undefined;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const remote = canonicalAddress(socket.remoteAddress ?? '');
    const slots = this.slotsOf(remote);
    if (slots === 0) {
      this.stats.refusedNonPeer++;
      socket.resetAndDestroy();
      this.warnings.warn(`non-peer|${remote}`, { remote, port: this.port, refused: this.stats.refusedNonPeer }, 'sync connection from an address that is no configured peer: closed at accept');
      return;
    }
    const held = this.perSource.get(remote) ?? 0;
    if (held >= slots) {
      this.stats.refusedOverLimit++;
      socket.resetAndDestroy();
      this.warnings.warn(`limit|${remote}`, { remote, port: this.port, held, slots }, 'sync peer holds all its connection slots: new connection closed at accept');
      return;
    }
    this.perSource.set(remote, held + 1);
    const conn = new InboundConnection(socket, remote, this);
    this.connections.add(conn);
    socket.on('close', () => {
      this.connections.delete(conn);
      const n = (this.perSource.get(remote) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(remote);
      else this.perSource.set(remote, n);
    });
    socket.resume();
  }
}
