// The receiving side: one TCP server per local (address, port), shared by every VRF that listens
// there. Each accepted connection must say hello for a VRF whose ha-fp-conntrack knows the remote
// address as a peer, then prove the shared secret, before any conntrack message is looked at.
// Frames are applied strictly in order; the socket is paused while the engine catches up.
import { createServer, type Server, type Socket } from 'node:net';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { logger } from '../core/log.js';
import { EMPTY, FrameDecoder, FrameEncoder, FrameMac } from './frame-codec.js';
import {
  clientProof,
  decodeAuth,
  decodeHello,
  encodeHelloAck,
  encodeRefuse,
  type HandshakeBinding,
  type Hello,
  newNonce,
  proofMatches,
  serverProof,
  sessionKey,
} from './handshake.js';
import { type Frame, FrameType, SyncProtocolError } from './protocol.js';

const log = logger('sync-listener');

/** What a VRF offers an incoming connection that said hello for it. */
export interface ReceiverSession {
  secret: string;
  nodeId: string;
  fingerprint: Buffer;
  /** Apply one authenticated frame (in order); throw SyncProtocolError to close the connection. */
  apply(frame: Frame): Promise<void>;
  /** The peer proved the shared secret. */
  authenticated?(): void;
  /** A protocol or authentication problem on this connection (counted as receive-error). */
  error(reason: string): void;
  closed(): void;
}

/** Finds the VRF and peer for a hello; a string is the reason for refusing. */
export type ReceiverResolver = (hello: Hello, remoteAddress: string) => ReceiverSession | string;

const HANDSHAKE_TIMEOUT_MS = 5000;
/** Frames decoded but not yet applied before the socket is paused. */
const MAX_PENDING_FRAMES = 16;
/** Connections a listener holds at once (authenticated or not): bounds what strangers can cost. */
const MAX_CONNECTIONS = 512;
/** Frames whose engine write may be in progress at once. */
const MAX_INFLIGHT = 8;

export class SyncListener {
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  private resolvers = new Map<string, ReceiverResolver>();
  private retryTimer: TimerHandle | undefined;
  private closed = false;
  private listenFailures = 0;
  listening = false;

  constructor(
    readonly address: string,
    readonly port: number,
    private readonly netClock: Clock,
    private readonly keepaliveMs: number,
  ) {}

  /** Register the resolver of one VRF (hellos name their VRF). */
  attach(vrf: string, resolver: ReceiverResolver): void {
    this.resolvers.set(vrf, resolver);
  }

  /** VRFs attached. */
  attachedCount(): number {
    return this.resolvers.size;
  }

  detach(vrf: string): number {
    this.resolvers.delete(vrf);
    for (const s of this.sockets) {
      if ((s as Socket & { vrf?: string }).vrf === vrf) s.destroy();
    }
    return this.resolvers.size;
  }

  start(): void {
    const server = createServer((s) => this.accept(s));
    // Peers need workers x peers connections; anything far beyond is refused by the kernel accept.
    server.maxConnections = MAX_CONNECTIONS;
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
    server.listen({ host: this.address, port: this.port }, () => {
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
    const server = createServer((s) => this.accept(s));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.address, port: this.port }, () => {
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
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const remote = socket.remoteAddress ?? '?';
    const decoder = new FrameDecoder();
    const encoder = new FrameEncoder();
    const binding: HandshakeBinding = { clientNonce: Buffer.alloc(0), serverNonce: newNonce(), vrf: '', worker: 0 };
    let session: ReceiverSession | undefined;
    let phase: 'hello' | 'auth' | 'data' = 'hello';
    let queue: Frame[] = [];
    let applying = false;
    let lastRx = this.netClock.now();
    let lastTx = lastRx;
    let keepalive: TimerHandle | undefined;
    const handshakeTimer = this.netClock.setTimer(HANDSHAKE_TIMEOUT_MS, () => fail('handshake timeout'));

    const send = (type: FrameType, payload: Buffer): void => {
      if (socket.destroyed) return;
      for (const p of encoder.encode(type, payload)) socket.write(p);
      lastTx = this.netClock.now();
    };
    const fail = (reason: string, refuse = false): void => {
      if (socket.destroyed) return;
      log.warn({ remote, vrf: binding.vrf || undefined, worker: binding.worker, reason }, 'sync connection refused or closed');
      session?.error(reason);
      if (refuse && phase !== 'data') {
        try {
          send(FrameType.Refuse, encodeRefuse(reason));
        } catch {
          // nothing more to say
        }
        socket.end();
        socket.destroySoon();
      } else {
        socket.destroy();
      }
      queue = [];
    };
    // Frames are handed to the VRF in order; up to MAX_INFLIGHT engine writes overlap (the engine
    // keeps call order), so decoding the next frame runs while the workers store the previous one.
    const pump = async (): Promise<void> => {
      if (applying || !session) return;
      applying = true;
      const inflight: Promise<void>[] = [];
      try {
        while (queue.length > 0 && !socket.destroyed) {
          const f = queue.shift() as Frame;
          inflight.push(session.apply(f).catch((err: unknown) => fail(err instanceof Error ? err.message : String(err))));
          if (inflight.length >= MAX_INFLIGHT) await inflight.shift();
          if (queue.length < MAX_PENDING_FRAMES / 2 && socket.isPaused()) socket.resume();
        }
        await Promise.all(inflight);
      } finally {
        applying = false;
      }
      if (queue.length > 0 && !socket.destroyed) void pump();
    };

    socket.on('data', (data: Buffer) => {
      lastRx = this.netClock.now();
      try {
        for (let frames = decoder.push(data); frames.length > 0 && !socket.destroyed; frames = decoder.push(EMPTY)) for (const f of frames) {
          if (phase === 'hello') {
            if (f.type !== FrameType.Hello) throw new SyncProtocolError(`expected hello, got frame type ${f.type}`);
            const hello = decodeHello(f.payload);
            binding.vrf = hello.vrf;
            binding.worker = hello.worker;
            binding.clientNonce = hello.nonce;
            const found = this.resolvers.get(hello.vrf)?.(hello, remote) ?? `VRF ${hello.vrf} has no ha-fp-conntrack here`;
            if (typeof found === 'string') {
              fail(found, true);
              return;
            }
            session = found;
            (socket as Socket & { vrf?: string }).vrf = hello.vrf;
            send(FrameType.HelloAck, encodeHelloAck({
              nodeId: found.nodeId,
              fingerprint: found.fingerprint,
              nonce: binding.serverNonce,
              proof: serverProof(found.secret, binding),
            }));
            phase = 'auth';
          } else if (phase === 'auth') {
            if (f.type !== FrameType.Auth) throw new SyncProtocolError(`expected auth, got frame type ${f.type}`);
            const s = session as ReceiverSession;
            if (!proofMatches(decodeAuth(f.payload), clientProof(s.secret, binding))) {
              fail('peer failed to prove the shared secret', true);
              return;
            }
            const key = sessionKey(s.secret, binding);
            decoder.setMac(new FrameMac(key, 'client->server'));
            encoder.setMac(new FrameMac(key, 'server->client'));
            phase = 'data';
            handshakeTimer.cancel();
            keepalive = this.netClock.setInterval(this.keepaliveMs, () => {
              const now = this.netClock.now();
              // While we hold the peer back (paused socket, frames being applied) its silence is ours.
              if (applying || queue.length > 0 || socket.isPaused()) lastRx = now;
              if (now - lastRx > 3 * this.keepaliveMs) fail(`no message from peer for ${now - lastRx} ms`);
              else if (now - lastTx >= this.keepaliveMs) send(FrameType.Keepalive, Buffer.alloc(0));
            });
            log.info({ remote, vrf: binding.vrf, worker: binding.worker }, 'sync peer authenticated');
            s.authenticated?.();
          } else if (f.type !== FrameType.Keepalive) {
            queue.push(f);
          }
        }
      } catch (err) {
        fail(err instanceof Error ? err.message : String(err));
        return;
      }
      if (queue.length >= MAX_PENDING_FRAMES) socket.pause();
      void pump();
    });
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      this.sockets.delete(socket);
      handshakeTimer.cancel();
      keepalive?.cancel();
      session?.closed();
    });
  }
}
