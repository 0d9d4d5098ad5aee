// One synchronisation connection to one peer for one worker (the seed's npf_eventN client): it
// opens TCP from `source` to `address:port`, proves the shared secret, then sends batched
// conntrack messages from a bounded queue. A slow peer never stalls the dataplane and never grows
// memory: when the queue is full it is dropped, the connection is marked out of sync, and a full
// resync is requested once the socket has drained. A peer that cannot be reached is retried every
// backoffMinMs (jittered) for FAST_RETRY_WINDOW_MS, so a sync link that comes back is used within
// about that time, then with exponential backoff up to backoffMaxMs; a peer that
// answers but refuses (wrong secret, other protocol version) gets the exponential backoff at once.
// A connection from the peer to us, or another of our connections to it coming up (retryNow), means
// the link is back: we retry at once too.
import { connect, type Socket } from 'node:net';
import type { FlowTuple } from '../fastpath/engine.js';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { logger } from '../core/log.js';
import { deleteSize, encodeDeletes, encodeRecordBatch, type SyncRecord } from './conntrack-codec.js';
import { EMPTY, FrameDecoder, FrameEncoder, newFrameCipher } from './frame-codec.js';
import { decodeAck } from './ack-frame.js';
import { AckWindow, type BulkAck } from './ack-window.js';
import { DeltaLog, type LiveOp } from './delta-log.js';
import {
  decodeChallenge,
  decodeRefuse,
  decodeWelcome,
  encodeHello,
  encodeIdentity,
  newNonce,
  proofMatches,
  RefuseCode,
  secretKey,
  type SessionKeys,
  sessionKeys,
} from './handshake.js';
import { BulkKind, type Frame, FrameType, MAX_RECORDS_PER_FRAME, SyncAuthenticationError, SyncProtocolError } from './protocol.js';

/** The client's logger (tests watch it). */
export const clientLog = logger('sync-client');
const log = clientLog;

/**
 * `authentication-failed`: the last attempt failed because the secrets differ (the peer refused
 * our proof, or its own did not verify); it stays so while retrying until an attempt ends otherwise.
 */
export type ConnectionStatus = 'established' | 'connecting' | 'down' | 'disabled' | 'authentication-failed';

/** Where one connection attempt is in the handshake. */
interface Attempt {
  phase: 'hello' | 'deriving' | 'welcome' | 'data';
  helloPayload: Buffer;
  keys: SessionKeys | undefined;
  /** Why the attempt failed, when we know better than the socket. */
  error: Error | undefined;
}

export interface SyncClientConfig {
  vrf: string;
  peer: string;
  worker: number;
  workers: number;
  nodeId: string;
  /** The shared secret; '' when none is configured (then no connection is opened). */
  secret: string;
  fingerprint: Buffer;
  source: string;
  address: string;
  port: number;
  /** Most messages queued before the queue is dropped and the peer marked out of sync. */
  queueLimit: number;
  keepaliveMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export interface SyncClientListener {
  up(client: SyncClient): void;
  down(client: SyncClient, reason: string): void;
  peerFingerprint(client: SyncClient, fingerprint: Buffer, peerNodeId: string): void;
  /** The queue overflowed earlier and has now drained: the peer needs a full resync. */
  caughtUp(client: SyncClient): void;
  /** The peer asked for the synchronised conntracks this node holds (it restarted empty as master). */
  peerWantsTable?(client: SyncClient): void;
  /** A sealed frame from the server other than a keepalive (anti-entropy's DigestReply); throw SyncProtocolError to close. */
  serverFrame?(client: SyncClient, frame: Frame): void;
}

/** A bulk's end waits for the peer's acknowledgement of it. */
type BulkEndDone = (r: BulkAck) => void;

export interface SyncClientStats {
  transmit: number;
  transmitError: number;
  buildError: number;
  overflows: number;
  bytesOut: number;
  framesOut: number;
}

/** `fresh`: the conntrack was not in the sender's synced set before this record (see AckWindow). */
type QueuedOp =
  | { t: FrameType.CtNew | FrameType.CtUpdate; rec: SyncRecord; fresh?: boolean }
  /** A CT_NEW payload already encoded (a full resync read from packed records): `count` records. */
  | { t: FrameType.CtNew; payload: Buffer; count: number; fresh?: number }
  /** An anti-entropy frame already encoded (sync/anti-entropy/digest-frames.ts); `count` records it carries. */
  | { t: FrameType.DigestRequest | FrameType.RangeRepair | FrameType.RangeMarker; payload: Buffer; count: number }
  | { t: FrameType.CtDelete; tuple: FlowTuple }
  | { t: FrameType.BulkStart | FrameType.BulkEnd; kind: BulkKind; count: number; done?: BulkEndDone };

/** Bytes buffered in the socket before we stop writing and wait for 'drain'. */
const SOCKET_HIGH_WATER = 1 << 20;
const HANDSHAKE_TIMEOUT_MS = 5000;
/**
 * How long failed attempts in a row are retried at the short interval (backoffMinMs) before the
 * backoff grows: a connect on a link that is down fails at once, so these cost next to nothing,
 * and a sync link cut for up to a minute (a cable, a switch reboot) is used again within about
 * backoffMinMs of its return.
 */
export const FAST_RETRY_WINDOW_MS = 60_000;
/**
 * A TCP connect not answered within this time is given up and tried again (during the fast
 * retries only): on a link that drops packets instead of failing at once, the kernel would retry
 * the SYN after 1 s, then 3 s, and the link's return would wait for it. Sync links are direct or
 * short; a peer further than this (RTT) connects once the fast retries are over.
 */
export const CONNECT_TIMEOUT_MS = 400;

export class SyncClient {
  readonly name: string;
  status: ConnectionStatus = 'down';
  readonly stats: SyncClientStats = { transmit: 0, transmitError: 0, buildError: 0, overflows: 0, bytesOut: 0, framesOut: 0 };
  /** True after a queue overflow until the resync that repairs it starts. */
  outOfSync = false;
  /** What this connection sent that the peer has not acknowledged yet (reset when it comes up). */
  readonly acks = new AckWindow();
  /** What the peer has not received since it last held everything (delta-log.ts). */
  readonly delta = new DeltaLog();
  /** The table epoch the peer sent in this connection's welcome. */
  peerEpoch: Buffer | undefined;
  /**
   * Up again to a peer that holds what it acknowledged: live messages go on into the delta record
   * until the sender turns it into a delta resync (takeDelta), so that the delta stays the latest.
   */
  deltaPending = false;
  /** Data frames written and not acknowledged: their live messages (undefined: a frame that is not one). */
  private unacked: Array<{ seq: number; ops: LiveOp[] | undefined }> = [];
  private unackedHead = 0;

  private socket: Socket | undefined;
  private encoder = new FrameEncoder();
  private queue: QueuedOp[] = [];
  private head = 0;
  /** Records beyond one per queued op (encoded payloads hold many): the queue bound counts records. */
  private queuedExtra = 0;
  private flushScheduled = false;
  private waitingDrain = false;
  private roomWaiters: Array<() => void> = [];
  private stopped = true;
  private backoffMs: number;
  /** When the attempts in a row that failed began (netClock ms); undefined: the last one succeeded. */
  private failingSince: number | undefined;
  /** The peer refused (secret, version): no quick retries until an attempt ends otherwise. */
  private refusedByPeer = false;
  private reconnectTimer: TimerHandle | undefined;
  private connectTimer: TimerHandle | undefined;
  private keepaliveTimer: TimerHandle | undefined;
  private handshakeTimer: TimerHandle | undefined;
  private lastRx = 0;
  private lastTx = 0;
  /** Sequence number of the last data frame written (see AckWindow). */
  private lastSeq = 0;
  /** The last failure reason logged at warn (the same one again goes to debug). */
  private warnedReason: string | undefined;

  constructor(
    readonly config: SyncClientConfig,
    private readonly clock: Clock,
    private readonly netClock: Clock,
    private readonly listener: SyncClientListener,
  ) {
    this.name = `npf_event${config.worker}`;
    this.backoffMs = config.backoffMinMs;
  }

  /** Messages waiting to be written. */
  queued(): number {
    return this.queue.length - this.head + this.queuedExtra;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  /** Close for good (configuration removed); queued messages are dropped. */
  stop(): void {
    this.stopped = true;
    this.cancelDelta('stopped');
    this.reconnectTimer?.cancel();
    this.teardown('stopped');
    this.status = 'disabled';
  }

  /** A live message (from a dataplane event). Dropped silently while down: the reconnect resyncs. */
  send(op: QueuedOp): void {
    if (this.status !== 'established' || this.deltaPending) {
      // Not delivered now: kept for a delta resync if the record is armed (else the reconnect resyncs all).
      if (isLiveOp(op)) this.delta.record(op, this.clock.now());
      return;
    }
    if (this.outOfSync) return;
    if (this.queued() >= this.config.queueLimit) {
      this.delta.disarm('sync queue overflow');
      const lost = this.queued();
      this.stats.transmitError += lost;
      this.stats.overflows++;
      this.dropQueued();
      this.queue = [];
      this.head = 0;
      this.queuedExtra = 0;
      this.outOfSync = true;
      log.warn({ vrf: this.config.vrf, peer: this.config.peer, client: this.name, lost }, 'sync queue overflow: peer out of sync, full resync when it catches up');
      this.checkCaughtUp();
      return;
    }
    this.push(op);
  }

  sendRecord(kind: FrameType.CtNew | FrameType.CtUpdate, rec: SyncRecord, fresh = false): void {
    this.send({ t: kind, rec, fresh });
  }

  sendDelete(tuple: FlowTuple): void {
    this.send({ t: FrameType.CtDelete, tuple });
  }

  /** Bulk messages (resync, manual sync) are never dropped for space: the producer awaits room(). */
  bulk(op: QueuedOp): void {
    if (this.status !== 'established') return;
    this.push(op);
  }

  /** An encoded CT_NEW payload of `count` records (see encodeIPv4Record), sent as one frame. */
  bulkPayload(payload: Buffer, count: number, fresh = 0): void {
    if (this.status !== 'established' || count === 0) return;
    this.queuedExtra += count - 1;
    this.push({ t: FrameType.CtNew, payload, count, fresh });
  }

  /**
   * A bulk's end; resolves when the peer acknowledged it (everything the bulk carried was applied
   * or refused), or not when the connection is lost first.
   */
  bulkEnd(kind: BulkKind, count: number): Promise<BulkAck> {
    if (this.status !== 'established') return Promise.resolve({ acknowledged: false, refused: 0 });
    return new Promise((done) => this.push({ t: FrameType.BulkEnd, kind, count, done }));
  }

  /** Queued bulk ends that will never be written (the queue is dropped): not acknowledged. */
  private dropQueued(): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const op = this.queue[i] as QueuedOp;
      if ('done' in op && op.done) op.done({ acknowledged: false, refused: 0 });
    }
  }

  /** An anti-entropy frame (queued in order with the records, never dropped for space: the producer awaits room()). */
  bulkFrame(t: FrameType.DigestRequest | FrameType.RangeRepair | FrameType.RangeMarker, payload: Buffer, count: number): void {
    if (this.status !== 'established') return;
    this.queuedExtra += count - 1;
    this.push({ t, payload, count });
  }

  /** The delta record for a delta resync now (deltaPending ends: live messages are queued again after it). */
  takeDelta(): ReturnType<DeltaLog['take']> | undefined {
    this.deltaPending = false;
    return this.delta.armed ? this.delta.take() : undefined;
  }

  /** No delta resync for this connection: the next resync is a full one. */
  cancelDelta(reason: string): void {
    this.deltaPending = false;
    this.delta.disarm(reason);
  }

  /** Starting a resync repairs an overflow: live messages are accepted again from here on. */
  beginResync(kind: BulkKind): void {
    this.outOfSync = false;
    this.bulk({ t: FrameType.BulkStart, kind, count: 0 });
  }

  /** Resolves when the queue is below half its limit, or the connection is gone. */
  room(): Promise<void> {
    if (this.status !== 'established' || this.queued() < this.config.queueLimit / 2) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  private push(op: QueuedOp): void {
    this.queue.push(op);
    if (!this.flushScheduled && !this.waitingDrain) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private open(): void {
    if (this.config.secret === '') {
      // Defence in depth: YANG makes shared-secret mandatory; without one nothing is authenticated.
      this.status = 'down';
      log.error({ vrf: this.config.vrf, peer: this.config.peer, client: this.name }, 'no shared-secret configured: sync connection not opened');
      return;
    }
    if (this.status !== 'authentication-failed') this.status = 'connecting';
    const { address, port, source, secret, vrf } = this.config;
    const key = secretKey(secret, vrf);
    key.catch(() => undefined); // reported where it is awaited
    const socket = connect({ host: address, port, localAddress: source });
    socket.setNoDelay(true);
    this.socket = socket;
    this.encoder = new FrameEncoder();
    const decoder = new FrameDecoder();
    const attempt: Attempt = {
      phase: 'hello',
      helloPayload: encodeHello({ vrf, worker: this.config.worker, workers: this.config.workers, nonce: newNonce() }),
      keys: undefined,
      error: undefined,
    };
    const fail = (err: unknown): void => {
      attempt.error ??= err instanceof Error ? err : new Error(String(err));
      socket.destroy(attempt.error);
    };
    this.handshakeTimer = this.netClock.setTimer(HANDSHAKE_TIMEOUT_MS, () => fail(new Error('handshake timeout')));
    if (this.fastRetries()) {
      this.connectTimer = this.netClock.setTimer(CONNECT_TIMEOUT_MS, () => fail(new Error(`no TCP connection within ${CONNECT_TIMEOUT_MS} ms`)));
    }
    socket.on('connect', () => {
      this.connectTimer?.cancel();
      this.write(FrameType.Hello, attempt.helloPayload);
    });
    const onData = (data: Buffer): void => {
      this.lastRx = this.netClock.now();
      try {
        for (let frames = decoder.push(data); frames.length > 0 && !socket.destroyed; frames = decoder.push(EMPTY)) {
          for (const f of frames) this.onFrame(f, attempt, decoder, key, () => onData(EMPTY), fail);
          if (attempt.phase === 'deriving') return;
        }
      } catch (err) {
        // A welcome that does not open was sealed with other keys: the secrets differ.
        if (attempt.phase === 'welcome' && err instanceof SyncProtocolError && !(err instanceof SyncAuthenticationError)) {
          fail(new SyncAuthenticationError(`peer's welcome does not verify (${err.message})`));
        } else {
          fail(err);
        }
      }
    };
    socket.on('data', onData);
    socket.on('drain', () => {
      this.waitingDrain = false;
      this.flush();
    });
    socket.on('error', () => undefined); // reported by 'close'
    socket.on('close', () => {
      const err = attempt.error ?? (socket.errored as Error | null) ?? undefined;
      if (this.socket !== socket) return;
      this.teardown(err?.message ?? 'closed by peer', err instanceof SyncAuthenticationError);
      // A peer that answered and refused (secret, version) is not helped by quick retries.
      if (!this.stopped) this.scheduleReconnect(err instanceof SyncProtocolError);
    });
  }

  private onFrame(f: Frame, attempt: Attempt, decoder: FrameDecoder, key: Promise<Buffer>, resume: () => void, fail: (err: unknown) => void): void {
    if (f.type === FrameType.Refuse) {
      const r = decodeRefuse(f.payload);
      if (r.code === RefuseCode.AuthenticationFailed) throw new SyncAuthenticationError(`peer refused our proof of the shared secret: ${r.reason}`);
      throw new SyncProtocolError(`refused by peer: ${r.reason}`);
    }
    switch (attempt.phase) {
      case 'hello': {
        if (f.type !== FrameType.Challenge) throw new SyncProtocolError(`expected challenge, got frame type ${f.type}`);
        const challenge = f.payload;
        decodeChallenge(challenge);
        attempt.phase = 'deriving';
        const socket = this.socket as Socket;
        socket.pause();
        key.then((k) => {
          if (socket.destroyed) return;
          const keys = sessionKeys(k, attempt.helloPayload, challenge);
          attempt.keys = keys;
          this.write(FrameType.Auth, keys.clientProof);
          this.encoder.setCipher(newFrameCipher(keys.clientToServer));
          decoder.setCipher(newFrameCipher(keys.serverToClient));
          attempt.phase = 'welcome';
          socket.resume();
          resume();
        }, (err: unknown) => fail(new SyncProtocolError(`no usable shared-secret: ${(err as Error).message}`)));
        return;
      }
      case 'welcome': {
        if (f.type !== FrameType.Welcome) throw new SyncProtocolError(`expected welcome, got frame type ${f.type}`);
        const welcome = decodeWelcome(f.payload);
        if (!proofMatches(welcome.proof, (attempt.keys as SessionKeys).serverProof)) {
          throw new SyncAuthenticationError('peer failed to prove the shared secret');
        }
        this.write(FrameType.Identity, encodeIdentity({ nodeId: this.config.nodeId, fingerprint: this.config.fingerprint }));
        attempt.phase = 'data';
        this.handshakeTimer?.cancel();
        this.status = 'established';
        this.warnedReason = undefined;
        this.backoffMs = this.config.backoffMinMs;
        this.failingSince = undefined;
        this.refusedByPeer = false;
        this.outOfSync = false;
        this.acks.reset();
        this.lastSeq = 0;
        this.unacked = [];
        this.unackedHead = 0;
        this.peerEpoch = welcome.tableEpoch;
        this.deltaPending = this.delta.usableWith(welcome.tableEpoch);
        this.startKeepalive();
        log.info({
          vrf: this.config.vrf, peer: this.config.peer, client: this.name, peerNode: welcome.nodeId,
          resync: this.deltaPending ? `delta (${this.delta.size} conntracks changed)` : `full (${this.delta.disarmedBecause})`,
        }, 'sync connection established');
        this.listener.peerFingerprint(this, welcome.fingerprint, welcome.nodeId);
        this.listener.up(this);
        return;
      }
      case 'data':
        if (f.type === FrameType.Ack) {
          const ack = decodeAck(f.payload);
          this.acks.onAck(ack);
          this.pruneUnacked();
          if (ack.wantTable) this.listener.peerWantsTable?.(this);
          return;
        }
        if (f.type === FrameType.Keepalive) return;
        if (f.type !== FrameType.DigestReply || !this.listener.serverFrame) throw new SyncProtocolError(`unexpected frame type ${f.type} from the server`);
        this.listener.serverFrame(this, f);
        return;
      case 'deriving':
        throw new SyncProtocolError(`frame type ${f.type} before our proof was sent`);
    }
  }

  private startKeepalive(): void {
    const every = this.config.keepaliveMs;
    this.lastRx = this.netClock.now();
    this.keepaliveTimer = this.netClock.setInterval(every, () => {
      const now = this.netClock.now();
      if (now - this.lastRx > 3 * every) {
        this.socket?.destroy(new Error(`no keepalive from peer for ${now - this.lastRx} ms`));
        return;
      }
      if (now - this.lastTx >= every && this.queued() === 0) this.write(FrameType.Keepalive, Buffer.alloc(0));
    });
  }

  private teardown(reason: string, authenticationFailed = false): void {
    const wasUp = this.status === 'established';
    const wasAuthFailed = this.status === 'authentication-failed';
    this.handshakeTimer?.cancel();
    this.connectTimer?.cancel();
    this.keepaliveTimer?.cancel();
    const lost = this.queued();
    this.stats.transmitError += lost;
    if (wasUp) this.keepLostForDelta();
    this.unacked = [];
    this.unackedHead = 0;
    this.dropQueued();
    this.acks.lost();
    this.queue = [];
    this.head = 0;
    this.queuedExtra = 0;
    this.waitingDrain = false;
    const s = this.socket;
    this.socket = undefined;
    s?.destroy();
    this.status = this.stopped ? 'disabled' : authenticationFailed ? 'authentication-failed' : 'down';
    this.releaseWaiters();
    const fields = { vrf: this.config.vrf, peer: this.config.peer, client: this.name, reason };
    if (wasUp) {
      (reason === 'stopped' ? log.info.bind(log) : log.warn.bind(log))({ ...fields, lost }, 'sync connection down');
      this.listener.down(this, reason);
    } else if (authenticationFailed) {
      // Once per episode: the status stays authentication-failed while the retries fail alike.
      if (!wasAuthFailed) {
        log.warn(fields, 'sync peer authentication failed (wrong shared secret?): retrying');
        this.listener.down(this, `authentication-failed: ${reason}`);
      } else {
        log.debug(fields, 'sync connection attempt failed');
      }
    } else if (reason !== 'stopped') {
      // A peer speaking another protocol version is worth a warning (once), not a debug line.
      if (reason.includes('protocol version') && reason !== this.warnedReason) {
        this.warnedReason = reason;
        log.warn(fields, 'sync connection refused: protocol version mismatch');
      } else {
        log.debug(fields, 'sync connection attempt failed');
      }
    }
  }

  /**
   * The connection is going down: its live messages never acknowledged (written or still queued)
   * join the delta record; anything else lost with it (a resync's or anti-entropy's frames), an
   * overflow or a refusal by the peer makes the record incomplete: the next resync is a full one.
   */
  private keepLostForDelta(): void {
    if (!this.delta.armed) return;
    if (this.outOfSync) return this.cancelDelta('sync queue overflow');
    if (this.acks.refusedSinceBulk > 0) return this.cancelDelta(`the peer refused ${this.acks.refusedSinceBulk} records`);
    const ops: LiveOp[] = [];
    for (let i = this.unackedHead; i < this.unacked.length; i++) {
      const u = this.unacked[i] as { ops: LiveOp[] | undefined };
      if (u.ops === undefined) return this.cancelDelta('a resync or anti-entropy repair frame was not acknowledged');
      for (const op of u.ops) ops.push(op);
    }
    for (let i = this.head; i < this.queue.length; i++) {
      const op = this.queue[i] as QueuedOp;
      if (op.t === FrameType.DigestRequest) continue;
      if (!isLiveOp(op)) return this.cancelDelta('a resync or anti-entropy repair frame was not sent');
      ops.push(op);
    }
    this.delta.recordLost(ops, this.clock.now());
  }

  /** Frames the peer acknowledged no longer need their messages. */
  private pruneUnacked(): void {
    const upTo = this.acks.acknowledgedUpTo();
    while (this.unackedHead < this.unacked.length && (this.unacked[this.unackedHead] as { seq: number }).seq <= upTo) this.unackedHead++;
    if (this.unackedHead === this.unacked.length) {
      this.unacked = [];
      this.unackedHead = 0;
    } else if (this.unackedHead > 1024 && this.unackedHead * 2 > this.unacked.length) {
      this.unacked = this.unacked.slice(this.unackedHead);
      this.unackedHead = 0;
    }
  }

  /** A data frame was written (lastSeq): remember its live messages until the peer acknowledges it. */
  private noteWritten(before: number, ops: LiveOp[] | undefined): void {
    if (this.lastSeq === before) return;
    this.unacked.push({ seq: this.lastSeq, ops });
  }

  /** Whether the next attempt comes at the short interval (and its TCP connect is time-limited). */
  private fastRetries(): boolean {
    return !this.refusedByPeer && (this.failingSince === undefined || this.netClock.now() - this.failingSince < FAST_RETRY_WINDOW_MS);
  }

  /**
   * The next attempt: every backoffMinMs (jittered) while the failures in a row are younger than
   * FAST_RETRY_WINDOW_MS (an established connection ends them), then doubling up to backoffMaxMs;
   * a refusal by the peer goes to the doubling at once.
   */
  private scheduleReconnect(refused: boolean): void {
    this.failingSince ??= this.netClock.now();
    this.refusedByPeer = refused;
    const jitter = 0.5 + Math.random() / 2;
    let delay: number;
    if (this.fastRetries()) {
      delay = Math.round(this.config.backoffMinMs * jitter);
    } else {
      delay = Math.round(this.backoffMs * jitter);
      this.backoffMs = Math.min(this.config.backoffMaxMs, this.backoffMs * 2);
    }
    this.reconnectTimer?.cancel();
    this.reconnectTimer = this.netClock.setTimer(delay, () => {
      this.reconnectTimer = undefined;
      if (!this.stopped) this.open();
    });
  }

  /**
   * The peer reached us (its own sync connection arrived): the link works, so an attempt waiting
   * out a backoff starts now, and the next failures are retried at the short interval again.
   */
  retryNow(): void {
    if (this.stopped || this.reconnectTimer === undefined || this.status === 'authentication-failed') return;
    this.reconnectTimer.cancel();
    this.reconnectTimer = undefined;
    this.failingSince = undefined;
    this.backoffMs = this.config.backoffMinMs;
    this.open();
  }

  /** Tell the peer our configuration fingerprint changed (config.fingerprint), without reconnecting. */
  sendFingerprint(): void {
    if (this.status === 'established') this.write(FrameType.ConfigFingerprint, this.config.fingerprint);
  }

  /**
   * Writes one frame; once established every frame but keepalives is a data frame the peer
   * acknowledges, counted here with the conntrack `records` it carries (`fresh`: new to the synced set).
   */
  private write(type: FrameType, payload: Buffer, records = 0, fresh = 0): boolean {
    const s = this.socket;
    if (!s || s.destroyed) return false;
    const parts = this.encoder.encode(type, payload);
    if (this.status === 'established' && type !== FrameType.Keepalive) this.lastSeq = this.acks.wrote(records, fresh);
    s.cork();
    for (const p of parts) {
      s.write(p);
      this.stats.bytesOut += p.length;
    }
    s.uncork();
    this.stats.framesOut++;
    this.lastTx = this.netClock.now();
    return s.writableLength < SOCKET_HIGH_WATER;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.status !== 'established' || !this.socket) return;
    const now = this.clock.now();
    while (this.head < this.queue.length) {
      const first = this.queue[this.head] as QueuedOp;
      let ok: boolean;
      if ('payload' in first) {
        this.head++;
        this.queuedExtra -= first.count - 1;
        this.stats.transmit += first.count;
        const before = this.lastSeq;
        ok = this.write(first.t, first.payload, first.count, 'fresh' in first ? (first.fresh ?? 0) : 0);
        // An anti-entropy digest changes nothing on the peer: losing it leaves a delta possible.
        this.noteWritten(before, first.t === FrameType.DigestRequest ? [] : undefined);
      } else if (first.t === FrameType.BulkStart || first.t === FrameType.BulkEnd) {
        this.head++;
        const p = Buffer.allocUnsafe(5);
        p.writeUInt8(first.kind, 0);
        p.writeUInt32BE(first.count, 1);
        if (first.t === FrameType.BulkStart) this.acks.bulkStarted();
        const before = this.lastSeq;
        ok = this.write(first.t, p);
        // A delta resync's markers carry nothing a delta would need again; a full resync's do.
        this.noteWritten(before, first.kind === BulkKind.Delta ? [] : undefined);
        if (first.done) {
          if (this.lastSeq !== before) void this.acks.waitFor(this.lastSeq).then(first.done);
          else first.done({ acknowledged: false, refused: 0 }); // the socket is gone
        }
      } else {
        ok = this.flushRun(first.t, now);
      }
      if (!ok) {
        this.waitingDrain = true;
        break;
      }
    }
    if (this.head >= this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 4096) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.queued() < this.config.queueLimit / 2) this.releaseWaiters();
    this.checkCaughtUp();
  }

  /** Encode a run of consecutive messages of one type as one frame. */
  private flushRun(type: FrameType.CtNew | FrameType.CtUpdate | FrameType.CtDelete, now: number): boolean {
    const end = Math.min(this.queue.length, this.head + MAX_RECORDS_PER_FRAME);
    const sizes: number[] = [];
    if (type === FrameType.CtDelete) {
      const tuples: FlowTuple[] = [];
      while (this.head < end) {
        const op = this.queue[this.head] as QueuedOp;
        if (op.t !== type) break;
        this.head++;
        try {
          sizes.push(deleteSize(op.tuple));
          tuples.push(op.tuple);
        } catch (err) {
          this.buildError(err);
        }
      }
      if (tuples.length === 0) return true;
      this.stats.transmit += tuples.length;
      const before = this.lastSeq;
      const ok = this.write(type, encodeDeletes(tuples, sizes));
      this.noteWritten(before, tuples.map((tuple) => ({ t: FrameType.CtDelete, tuple })));
      return ok;
    }
    const recs: SyncRecord[] = [];
    let ops: LiveOp[] = [];
    while (this.head < end) {
      const op = this.queue[this.head] as QueuedOp;
      if (op.t !== type || !('rec' in op)) break;
      this.head++;
      recs.push(op.rec);
      ops.push(op);
    }
    if (recs.length === 0) return true;
    // Checked and encoded in one pass; what cannot be encoded is left out (a build error).
    const { payload, errors } = encodeRecordBatch(recs, now);
    if (errors.length > 0) {
      const left = new Set<number>();
      for (const { index, err } of errors) {
        this.buildError(err);
        left.add(index);
      }
      ops = ops.filter((_, i) => !left.has(i));
      if (ops.length === 0) return true;
    }
    let fresh = 0;
    for (const op of ops) if ('fresh' in op && op.fresh) fresh++;
    this.stats.transmit += ops.length;
    const before = this.lastSeq;
    const ok = this.write(type, payload, ops.length, fresh);
    this.noteWritten(before, ops);
    return ok;
  }

  private buildError(err: unknown): void {
    this.stats.buildError++;
    log.warn({ vrf: this.config.vrf, client: this.name, err: (err as Error).message }, 'conntrack message could not be built');
  }

  private releaseWaiters(): void {
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const r of w) r();
  }

  private checkCaughtUp(): void {
    if (this.outOfSync && this.queued() === 0 && !this.waitingDrain && this.status === 'established') {
      // Let the caller start the resync outside of this call stack.
      setImmediate(() => {
        if (this.outOfSync && this.status === 'established') this.listener.caughtUp(this);
      });
    }
  }
}

/** A live conntrack message (not a resync's encoded payload, a marker or an anti-entropy frame). */
function isLiveOp(op: QueuedOp): op is LiveOp {
  return op.t === FrameType.CtDelete || ((op.t === FrameType.CtNew || op.t === FrameType.CtUpdate) && 'rec' in op);
}
