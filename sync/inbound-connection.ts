// One accepted sync connection from a configured peer address: the handshake of handshake.ts from
// the server side (the client proves the secret first; the listener sends nothing derived from the
// secret before that proof has verified), then sealed conntrack frames applied strictly in order,
// the socket paused while the engine catches up.
import type { Socket } from 'node:net';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { logger } from '../core/log.js';
import { EMPTY, FrameDecoder, FrameEncoder, newFrameCipher } from './frame-codec.js';
import {
  decodeAuth,
  decodeHello,
  decodeIdentity,
  encodeChallenge,
  encodeRefuse,
  encodeWelcome,
  type Hello,
  newNonce,
  proofMatches,
  RefuseCode,
  secretKey,
  sessionKeys,
} from './handshake.js';
import { type Frame, FrameType, SyncAuthenticationError, SyncProtocolError } from './protocol.js';
import type { RateLimitedWarning } from './rate-limited-warning.js';

/** The listener's logger (tests watch it for the reasons connections are closed with). */
export const listenerLog = logger('sync-listener');

/** What a VRF offers an incoming connection that said hello for it. */
export interface ReceiverSession {
  secret: string;
  nodeId: string;
  fingerprint: Buffer;
  /** The receiver's table epoch, sent in the welcome (see handshake.ts Welcome). */
  tableEpoch(): Buffer;
  /**
   * Apply one authenticated frame (in order); throw SyncProtocolError to close the connection.
   * `reply` sends a sealed frame back to the client (anti-entropy's DigestReply).
   */
  apply(frame: Frame, reply: (type: FrameType, payload: Buffer) => void): Promise<void>;
  /** The peer proved the shared secret; the hello's nodeId and fingerprint are now filled in. */
  authenticated?(): void;
  /** The data phase began: frames can go back to the peer (acknowledgements) on `link`. */
  dataPhase?(link: ReceiverLink): void;
  /** A protocol or authentication problem on this connection (counted as receive-error). */
  error(reason: string): void;
  closed(): void;
}

/** What a session may use of its connection once the handshake is done. */
export interface ReceiverLink {
  /** Send a sealed frame to the peer (nothing once the connection is closed). */
  reply(type: FrameType, payload: Buffer): void;
  readonly netClock: Clock;
}

/**
 * Finds the VRF and peer for a hello; a string is the reason for refusing. The hello's nodeId and
 * fingerprint are empty until the peer has authenticated (they travel sealed).
 */
export type ReceiverResolver = (hello: Hello, remoteAddress: string) => ReceiverSession | string;

/** What the listener lends each of its connections. */
export interface InboundHost {
  resolver(vrf: string): ReceiverResolver | undefined;
  readonly netClock: Clock;
  readonly keepaliveMs: number;
  readonly warnings: RateLimitedWarning;
  /** A peer failed to prove the secret (the listener counts it). */
  authenticationFailed(): void;
}

const HANDSHAKE_TIMEOUT_MS = 5000;
/** Frames decoded but not yet applied before the socket is paused. */
const MAX_PENDING_FRAMES = 16;
/**
 * Frames whose engine write may be in progress at once. In a burst the master's frames are small
 * (what one turn of its loop gathered, a few hundred records): with 8 in flight, ha2 held ~4,000
 * records at the writers and took the next frame only when the oldest write came back, so its
 * intake was bounded by the writer threads' round trip, and 20,000 records waited in the socket
 * when the burst ended (bench sync-burst, counts at the burst's end). The writer pool coalesces
 * what is in flight into chunks of 1,024; 32 frames are at most ~2 MB per connection.
 */
const MAX_INFLIGHT = 32;

type Phase = 'hello' | 'deriving' | 'auth' | 'identity' | 'data';

export class InboundConnection {
  vrf = '';
  private worker = 0;
  private phase: Phase = 'hello';
  private readonly decoder = new FrameDecoder();
  private readonly encoder = new FrameEncoder();
  private session: ReceiverSession | undefined;
  private hello: Hello | undefined;
  private helloPayload: Buffer = EMPTY;
  private challengePayload: Buffer = EMPTY;
  private key: Buffer | undefined;
  private queue: Frame[] = [];
  private applying = false;
  private lastRx: number;
  private lastTx: number;
  private keepalive: TimerHandle | undefined;
  private readonly handshakeTimer: TimerHandle;

  constructor(
    readonly socket: Socket,
    readonly remote: string,
    private readonly host: InboundHost,
  ) {
    const clock = host.netClock;
    this.lastRx = this.lastTx = clock.now();
    this.handshakeTimer = clock.setTimer(HANDSHAKE_TIMEOUT_MS, () => this.fail('handshake timeout'));
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      this.handshakeTimer.cancel();
      this.keepalive?.cancel();
      this.session?.closed();
    });
  }

  /** Close at once (the VRF is gone). */
  destroy(): void {
    this.socket.destroy();
  }

  private readonly reply = (type: FrameType, payload: Buffer): void => this.send(type, payload);

  private send(type: FrameType, payload: Buffer): void {
    if (this.socket.destroyed) return;
    for (const p of this.encoder.encode(type, payload)) this.socket.write(p);
    this.lastTx = this.host.netClock.now();
  }

  /** Close with a logged reason; before the data phase the client is told why (in clear, no secret in it). */
  private fail(reason: string, refuse?: RefuseCode): void {
    if (this.socket.destroyed) return;
    const fields = { remote: this.remote, vrf: this.vrf || undefined, worker: this.worker, phase: this.phase, reason };
    if (refuse === RefuseCode.AuthenticationFailed) {
      this.host.authenticationFailed();
      this.host.warnings.warn(`auth|${this.remote}|${this.vrf}`, fields, 'sync peer failed authentication (wrong shared secret?): connection refused');
    } else {
      this.host.warnings.warn(`closed|${this.remote}`, fields, 'sync connection refused or closed');
    }
    this.session?.error(reason);
    this.queue = [];
    if (refuse !== undefined && this.phase !== 'data' && this.phase !== 'identity') {
      try {
        this.send(FrameType.Refuse, encodeRefuse(refuse, reason));
      } catch {
        // nothing more to say
      }
      this.socket.end();
      this.socket.destroySoon();
    } else {
      this.socket.destroy();
    }
  }

  private onData(data: Buffer): void {
    this.lastRx = this.host.netClock.now();
    try {
      for (let frames = this.decoder.push(data); frames.length > 0 && !this.socket.destroyed; frames = this.decoder.push(EMPTY)) {
        for (const f of frames) this.onFrame(f);
        // While the secret key is derived the next frames wait in the decoder (socket paused).
        if (this.phase === 'deriving') return;
      }
    } catch (err) {
      this.fail(err instanceof Error ? err.message : String(err), err instanceof SyncAuthenticationError ? RefuseCode.AuthenticationFailed : undefined);
      return;
    }
    if (this.queue.length >= MAX_PENDING_FRAMES) this.socket.pause();
    void this.pump();
  }

  private onFrame(f: Frame): void {
    switch (this.phase) {
      case 'hello':
        this.onHello(f);
        return;
      case 'auth':
        this.onAuth(f);
        return;
      case 'identity':
        this.onIdentity(f);
        return;
      case 'data':
        if (f.type !== FrameType.Keepalive) this.queue.push(f);
        return;
      case 'deriving':
        throw new SyncProtocolError('frame while the handshake is paused');
    }
  }

  private onHello(f: Frame): void {
    if (f.type !== FrameType.Hello) throw new SyncProtocolError(`expected hello, got frame type ${f.type}`);
    const hello = decodeHello(f.payload);
    this.vrf = hello.vrf;
    this.worker = hello.worker;
    const found = this.host.resolver(hello.vrf)?.(hello, this.remote) ?? `VRF ${hello.vrf} has no ha-fp-conntrack here`;
    if (typeof found === 'string') {
      this.fail(found, RefuseCode.Refused);
      return;
    }
    this.session = found;
    this.hello = hello;
    this.helloPayload = f.payload;
    this.phase = 'deriving';
    this.socket.pause();
    secretKey(found.secret, hello.vrf).then(
      (key) => {
        if (this.socket.destroyed) return;
        this.key = key;
        this.challengePayload = encodeChallenge(newNonce());
        this.send(FrameType.Challenge, this.challengePayload);
        this.phase = 'auth';
        this.socket.resume();
        this.onData(EMPTY); // frames the client pipelined meanwhile
      },
      (err: unknown) => this.fail(`no usable shared-secret on this node for VRF ${hello.vrf}: ${(err as Error).message}`, RefuseCode.Refused),
    );
  }

  private onAuth(f: Frame): void {
    if (f.type !== FrameType.Auth) throw new SyncProtocolError(`expected auth, got frame type ${f.type}`);
    const keys = sessionKeys(this.key as Buffer, this.helloPayload, this.challengePayload);
    if (!proofMatches(decodeAuth(f.payload), keys.clientProof)) {
      throw new SyncAuthenticationError('authentication failed: the peer did not prove the shared secret');
    }
    // Only now does anything derived from the secret go out: the welcome, sealed, with our proof.
    this.decoder.setCipher(newFrameCipher(keys.clientToServer));
    this.encoder.setCipher(newFrameCipher(keys.serverToClient));
    const s = this.session as ReceiverSession;
    this.phase = 'identity';
    this.send(FrameType.Welcome, encodeWelcome({ proof: keys.serverProof, nodeId: s.nodeId, fingerprint: s.fingerprint, tableEpoch: s.tableEpoch() }));
  }

  private onIdentity(f: Frame): void {
    if (f.type !== FrameType.Identity) throw new SyncProtocolError(`expected identity, got frame type ${f.type}`);
    const id = decodeIdentity(f.payload);
    const hello = this.hello as Hello;
    hello.nodeId = id.nodeId;
    hello.fingerprint = id.fingerprint;
    this.phase = 'data';
    this.handshakeTimer.cancel();
    const clock = this.host.netClock;
    const every = this.host.keepaliveMs;
    this.keepalive = clock.setInterval(every, () => {
      const now = clock.now();
      // While we hold the peer back (paused socket, frames being applied) its silence is ours.
      if (this.applying || this.queue.length > 0 || this.socket.isPaused()) this.lastRx = now;
      if (now - this.lastRx > 3 * every) this.fail(`no message from peer for ${now - this.lastRx} ms`);
      else if (now - this.lastTx >= every) this.send(FrameType.Keepalive, EMPTY);
    });
    listenerLog.info({ remote: this.remote, vrf: this.vrf, worker: this.worker, peerNode: id.nodeId }, 'sync peer authenticated');
    this.session?.authenticated?.();
    this.session?.dataPhase?.({ reply: (type, payload) => this.send(type, payload), netClock: clock });
  }

  // Frames are handed to the VRF in order; up to MAX_INFLIGHT engine writes overlap (the engine
  // keeps call order), so decoding the next frame runs while the workers store the previous one.
  private async pump(): Promise<void> {
    const session = this.session;
    if (this.applying || !session || this.phase !== 'data') return;
    this.applying = true;
    const inflight: Promise<void>[] = [];
    try {
      while (this.queue.length > 0 && !this.socket.destroyed) {
        const f = this.queue.shift() as Frame;
        inflight.push(session.apply(f, this.reply).catch((err: unknown) => this.fail(err instanceof Error ? err.message : String(err))));
        if (inflight.length >= MAX_INFLIGHT) await inflight.shift();
        if (this.queue.length < MAX_PENDING_FRAMES / 2 && this.socket.isPaused()) this.socket.resume();
      }
      await Promise.all(inflight);
    } finally {
      this.applying = false;
    }
    if (this.queue.length > 0 && !this.socket.destroyed) void this.pump();
  }
}
