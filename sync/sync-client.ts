// One synchronisation connection to one peer for one worker (the seed's npf_eventN client): it
// opens TCP from `source` to `address:port`, proves the shared secret, then sends batched
// conntrack messages from a bounded queue. A slow peer never stalls the dataplane and never grows
// memory: when the queue is full it is dropped, the connection is marked out of sync, and a full
// resync is requested once the socket has drained. A dead peer is retried with exponential backoff.
import { connect, type Socket } from 'node:net';
import type { FlowTuple } from '../fastpath/engine.js';
import type { Clock, TimerHandle } from '../fastpath/clock.js';
import { logger } from '../core/log.js';
import { deleteSize, encodeDeletes, encodeRecords, recordSize, type SyncRecord } from './conntrack-codec.js';
import { EMPTY, FrameDecoder, FrameEncoder, FrameMac } from './frame-codec.js';
import {
  clientProof,
  decodeHelloAck,
  decodeRefuse,
  encodeHello,
  type HandshakeBinding,
  newNonce,
  proofMatches,
  serverProof,
  sessionKey,
} from './handshake.js';
import { BulkKind, type Frame, FrameType, MAX_RECORDS_PER_FRAME, SyncProtocolError } from './protocol.js';

const log = logger('sync-client');

export type ConnectionStatus = 'established' | 'connecting' | 'down' | 'disabled';

export interface SyncClientConfig {
  vrf: string;
  peer: string;
  worker: number;
  workers: number;
  nodeId: string;
  /** '' when no shared secret is configured (channel not authenticated, only integrity-checked). */
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
}

export interface SyncClientStats {
  transmit: number;
  transmitError: number;
  buildError: number;
  overflows: number;
  bytesOut: number;
  framesOut: number;
}

type QueuedOp =
  | { t: FrameType.CtNew | FrameType.CtUpdate; rec: SyncRecord }
  /** A CT_NEW payload already encoded (a full resync read from packed records): `count` records. */
  | { t: FrameType.CtNew; payload: Buffer; count: number }
  | { t: FrameType.CtDelete; tuple: FlowTuple }
  | { t: FrameType.BulkStart | FrameType.BulkEnd; kind: BulkKind; count: number };

/** Bytes buffered in the socket before we stop writing and wait for 'drain'. */
const SOCKET_HIGH_WATER = 1 << 20;
const HANDSHAKE_TIMEOUT_MS = 5000;

export class SyncClient {
  readonly name: string;
  status: ConnectionStatus = 'down';
  readonly stats: SyncClientStats = { transmit: 0, transmitError: 0, buildError: 0, overflows: 0, bytesOut: 0, framesOut: 0 };
  /** True after a queue overflow until the resync that repairs it starts. */
  outOfSync = false;

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
  private reconnectTimer: TimerHandle | undefined;
  private keepaliveTimer: TimerHandle | undefined;
  private handshakeTimer: TimerHandle | undefined;
  private lastRx = 0;
  private lastTx = 0;

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
    this.reconnectTimer?.cancel();
    this.teardown('stopped');
    this.status = 'disabled';
  }

  /** A live message (from a dataplane event). Dropped silently while down: the reconnect resyncs. */
  send(op: QueuedOp): void {
    if (this.status !== 'established' || this.outOfSync) return;
    if (this.queued() >= this.config.queueLimit) {
      const lost = this.queued();
      this.stats.transmitError += lost;
      this.stats.overflows++;
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

  sendRecord(kind: FrameType.CtNew | FrameType.CtUpdate, rec: SyncRecord): void {
    this.send({ t: kind, rec });
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
  bulkPayload(payload: Buffer, count: number): void {
    if (this.status !== 'established' || count === 0) return;
    this.queuedExtra += count - 1;
    this.push({ t: FrameType.CtNew, payload, count });
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
    this.status = 'connecting';
    const { address, port, source } = this.config;
    const socket = connect({ host: address, port, localAddress: source });
    socket.setNoDelay(true);
    this.socket = socket;
    this.encoder = new FrameEncoder();
    const decoder = new FrameDecoder();
    const binding: HandshakeBinding = { clientNonce: newNonce(), serverNonce: Buffer.alloc(0), vrf: this.config.vrf, worker: this.config.worker };
    this.handshakeTimer = this.netClock.setTimer(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error('handshake timeout')));
    socket.on('connect', () => {
      this.write(FrameType.Hello, encodeHello({
        nodeId: this.config.nodeId,
        vrf: this.config.vrf,
        worker: this.config.worker,
        workers: this.config.workers,
        fingerprint: this.config.fingerprint,
        nonce: binding.clientNonce,
      }));
    });
    socket.on('data', (data: Buffer) => {
      this.lastRx = this.netClock.now();
      try {
        for (let frames = decoder.push(data); frames.length > 0 && !socket.destroyed; frames = decoder.push(EMPTY)) {
          for (const f of frames) this.onFrame(f, binding, decoder);
        }
      } catch (err) {
        socket.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.on('drain', () => {
      this.waitingDrain = false;
      this.flush();
    });
    socket.on('error', () => undefined); // reported by 'close'
    socket.on('close', () => {
      const reason = (socket.errored as Error | null)?.message ?? 'closed by peer';
      if (this.socket !== socket) return;
      this.teardown(reason);
      if (!this.stopped) this.scheduleReconnect();
    });
  }

  private onFrame(f: Frame, binding: HandshakeBinding, decoder: FrameDecoder): void {
    if (this.status === 'connecting') {
      if (f.type === FrameType.Refuse) throw new SyncProtocolError(`refused by peer: ${decodeRefuse(f.payload)}`);
      if (f.type !== FrameType.HelloAck) throw new SyncProtocolError(`expected hello-ack, got frame type ${f.type}`);
      const ack = decodeHelloAck(f.payload);
      binding.serverNonce = ack.nonce;
      if (!proofMatches(ack.proof, serverProof(this.config.secret, binding))) {
        throw new SyncProtocolError('peer failed to prove the shared secret');
      }
      this.write(FrameType.Auth, clientProof(this.config.secret, binding));
      const key = sessionKey(this.config.secret, binding);
      this.encoder.setMac(new FrameMac(key, 'client->server'));
      decoder.setMac(new FrameMac(key, 'server->client'));
      this.handshakeTimer?.cancel();
      this.status = 'established';
      this.backoffMs = this.config.backoffMinMs;
      this.outOfSync = false;
      this.startKeepalive();
      log.info({ vrf: this.config.vrf, peer: this.config.peer, client: this.name, peerNode: ack.nodeId }, 'sync connection established');
      this.listener.peerFingerprint(this, ack.fingerprint, ack.nodeId);
      this.listener.up(this);
      return;
    }
    if (f.type !== FrameType.Keepalive) throw new SyncProtocolError(`unexpected frame type ${f.type} from the server`);
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

  private teardown(reason: string): void {
    const wasUp = this.status === 'established';
    this.handshakeTimer?.cancel();
    this.keepaliveTimer?.cancel();
    const lost = this.queued();
    this.stats.transmitError += lost;
    this.queue = [];
    this.head = 0;
    this.queuedExtra = 0;
    this.waitingDrain = false;
    const s = this.socket;
    this.socket = undefined;
    s?.destroy();
    this.status = this.stopped ? 'disabled' : 'down';
    this.releaseWaiters();
    if (wasUp) {
      (reason === 'stopped' ? log.info.bind(log) : log.warn.bind(log))({ vrf: this.config.vrf, peer: this.config.peer, client: this.name, reason, lost }, 'sync connection down');
      this.listener.down(this, reason);
    } else if (reason !== 'stopped') {
      log.debug({ vrf: this.config.vrf, peer: this.config.peer, client: this.name, reason }, 'sync connection attempt failed');
    }
  }

  private scheduleReconnect(): void {
    const jitter = 0.5 + Math.random() / 2;
    const delay = Math.round(this.backoffMs * jitter);
    this.backoffMs = Math.min(this.config.backoffMaxMs, this.backoffMs * 2);
    this.reconnectTimer = this.netClock.setTimer(delay, () => {
      if (!this.stopped) this.open();
    });
  }

  /** Tell the peer our configuration fingerprint changed (config.fingerprint), without reconnecting. */
  sendFingerprint(): void {
    if (this.status === 'established') this.write(FrameType.ConfigFingerprint, this.config.fingerprint);
  }

  private write(type: FrameType, payload: Buffer): boolean {
    const s = this.socket;
    if (!s || s.destroyed) return false;
    const parts = this.encoder.encode(type, payload);
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
        ok = this.write(first.t, first.payload);
      } else if (first.t === FrameType.BulkStart || first.t === FrameType.BulkEnd) {
        this.head++;
        const p = Buffer.allocUnsafe(5);
        p.writeUInt8(first.kind, 0);
        p.writeUInt32BE(first.count, 1);
        ok = this.write(first.t, p);
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
      return this.write(type, encodeDeletes(tuples, sizes));
    }
    const recs: SyncRecord[] = [];
    while (this.head < end) {
      const op = this.queue[this.head] as QueuedOp;
      if (op.t !== type || !('rec' in op)) break;
      this.head++;
      try {
        sizes.push(recordSize(op.rec));
        recs.push(op.rec);
      } catch (err) {
        this.buildError(err);
      }
    }
    if (recs.length === 0) return true;
    this.stats.transmit += recs.length;
    return this.write(type, encodeRecords(recs, sizes, now));
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
