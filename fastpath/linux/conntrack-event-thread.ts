// Conntrack events of one namespace read by a thread of their own (docs/ha-sync.md § Event reading):
// the same events, in the same order, and the same loss accounting as ConntrackEventStream
// (conntrack-events.ts), with the reading and decoding off the engine's event loop. The socket is
// opened and subscribed here, synchronously (every event after start() returns is reported or
// counted as dropped); the thread reads it and posts packed batches (conntrack-event-decoder.ts,
// transferred, not copied), unpacked here into the notifications the engine has always had.
// The kernel's drop counter (SO_MEMINFO) is polled here as before: the fd is the process's.
// A thread that fails (or exits) while the reader is open is restarted on a new socket after a
// bounded back-off; the events it took and did not hand over, and those left in its socket, are
// reported as lost (onReaderRestart) so the engine repairs from a dump and the peers are resynced.
import { Worker } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import { UnsupportedProtocolError, type ConntrackNotification } from './ctnetlink-codec.js';
import { forEachPackedEvent, type PackedEventBatch } from './conntrack-event-decoder.js';
import { closeEventSocket, openEventSocket } from './conntrack-event-socket.js';
import { receiveDrops } from './netlink-socket-options.js';
import type { ConntrackEventStreamOptions } from './conntrack-events.js';
import type { EventThreadData, EventThreadMessage } from './conntrack-event-thread-worker.js';
import { EventDropCounter } from './event-drop-counter.js';

const log = logger('conntrack-events');

// As conntrack-events.ts: room for ~200,000 events; memory is used only while events wait.
const DEFAULT_RECEIVE_BUFFER = 256 << 20;
const DROP_POLL_MS = 100;
/** How long the thread's read waits before it looks at the stop flag again. */
const READ_TIMEOUT_MS = 50;
/** Events per batch at most (a burst travels in batches of this size, a trickle one by one). */
const BATCH_RECORDS = 2048;
/**
 * Batches the thread may have handed over and the engine not yet delivered. When the engine is
 * slower than the thread (a burst), the backlog stays in the socket's kernel buffer, as with a
 * reader on the event loop, instead of piling up here as batches: unbounded, 10^6 events left
 * ~56 MB of the agent's memory behind after they were delivered (ct-memory bench, master 151 B
 * per conntrack instead of 92). 32 batches keep the engine busy without a gap.
 */
export const MAX_BATCHES_IN_FLIGHT = 32;
/** Back-off before a failed thread is started again: doubles from the first to the last. */
const RESTART_FIRST_MS = 50;
const RESTART_MAX_MS = 5000;
/** A thread that ran this long before failing starts the back-off from the first step again. */
const RESTART_RESET_AFTER_MS = 30_000;

export interface ConntrackEventThreadOptions extends ConntrackEventStreamOptions {
  /**
   * The reading thread failed and a new one reads a new socket: `lost` events are known missed
   * (taken and not handed over, or left in the dead socket). Events of the gap between the two
   * sockets are not countable: treat every restart as a loss (resynchronise from a dump).
   */
  onReaderRestart?: (lost: number) => void;
}

export class ConntrackEventThread {
  private readonly dropCounter: EventDropCounter;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** No thread reads and none will (the reader is closed, or a restart could not open a socket). */
  private ended = false;
  /** Int32 [0]: stop flag; [1]: batches posted by the thread and not yet delivered; [2]: the thread's tid. */
  private readonly control = new SharedArrayBuffer(12);
  private worker!: Worker;
  private socketFd: number;
  /** The current thread said it closed its socket. */
  private socketClosedByThread = false;
  private workerStartedAt = 0;
  private restartDelayMs = RESTART_FIRST_MS;
  private restartTimer?: NodeJS.Timeout;
  /** Events the failed thread reported lost, reported with the restart. */
  private lostByFailedThread = 0;
  private resolveStopped!: () => void;
  /** Resolves when the reader is closed and its thread has ended (and closed the socket). */
  readonly stopped: Promise<void>;
  /**
   * Batches received, handed to the listener one per turn of the event loop: Node delivers every
   * message waiting on a port in one callback, and 10^5 events at once held the loop (and the sync
   * keepalives that share it) for seconds under load.
   */
  private queue: PackedEventBatch[] = [];
  private draining = false;
  private readonly deliver: (batch: PackedEventBatch) => void;
  /** Batches and events received from the thread (tests, benchmarks). */
  batches = 0;
  events = 0;
  /** Times a failed thread was replaced by a new one on a new socket. */
  restarts = 0;

  private constructor(
    fd: number,
    readonly namespace: string | undefined,
    listener: (n: ConntrackNotification) => void,
    onOverrun: (dropped: number) => void,
    private readonly options: ConntrackEventThreadOptions,
  ) {
    this.socketFd = fd;
    this.dropCounter = new EventDropCounter(namespace, onOverrun);
    const notHandled = (err: unknown): void => {
      if (!(err instanceof UnsupportedProtocolError)) log.error({ err: String(err) }, 'conntrack event not handled');
    };
    this.stopped = new Promise((r) => { this.resolveStopped = r; });
    this.deliver = (batch) => {
      try {
        forEachPackedEvent(batch, (event) => {
          try {
            listener(event);
          } catch (err) {
            notHandled(err);
          }
        }, notHandled);
      } catch (err) {
        log.error({ err: String(err) }, 'malformed conntrack event batch');
      }
    };
    this.startWorker();
    this.timer = setInterval(() => this.checkDrops(), DROP_POLL_MS);
    this.timer.unref();
  }

  /** The event socket's fd now (the thread closes it when it ends; a restart opens another). */
  get fd(): number {
    return this.socketFd;
  }

  /** A thread reading the current socket. */
  private startWorker(): void {
    const data: EventThreadData = { fd: this.socketFd, control: this.control, batchRecords: BATCH_RECORDS, maxBatchesInFlight: MAX_BATCHES_IN_FLIGHT };
    const worker = new Worker(new URL('./conntrack-event-thread-worker.js', import.meta.url), { workerData: data });
    this.worker = worker;
    this.socketClosedByThread = false;
    this.workerStartedAt = Date.now();
    worker.unref();
    const namespace = this.namespace;
    worker.on('message', (m: EventThreadMessage) => {
      if (m.t === 'batch') {
        if (this.closed) return;
        this.batches++;
        this.events += m.count;
        this.queue.push({ records: m.records, count: m.count, ...(m.raw ? { raw: m.raw } : {}) });
        this.scheduleDrain();
      } else if (m.t === 'error') {
        log.error({ namespace, err: m.message }, 'conntrack event thread');
      } else if (m.t === 'failed') {
        this.lostByFailedThread += m.lost;
        log.error({ namespace, err: m.message, lost: m.lost }, 'conntrack event thread failed');
      } else if (m.t === 'stopped' && worker === this.worker) {
        this.socketClosedByThread = true;
      }
    });
    worker.once('exit', (code) => this.onWorkerExit(worker, code));
    worker.on('error', (err) => log.error({ namespace, err: err.message }, 'conntrack event thread failed'));
  }

  private onWorkerExit(worker: Worker, code: number): void {
    if (worker !== this.worker) return;
    // A thread killed before its finally ran left its socket open: no thread reads it any more.
    if (!this.socketClosedByThread) this.closeSocket();
    if (this.closed) {
      this.ended = true;
      this.resolveStopped();
      return;
    }
    // Events are no longer read: said loudly, and a new thread on a new socket after the back-off.
    const ranMs = Date.now() - this.workerStartedAt;
    if (ranMs >= RESTART_RESET_AFTER_MS) this.restartDelayMs = RESTART_FIRST_MS;
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(RESTART_MAX_MS, this.restartDelayMs * 2);
    log.error({ namespace: this.namespace, code, restartInMs: delay }, 'conntrack event thread ended: conntrack events are not read until it is restarted');
    this.restartTimer = setTimeout(() => this.restart(), delay);
    this.restartTimer.unref();
  }

  private closeSocket(): void {
    try {
      closeEventSocket(this.socketFd);
    } catch (err) {
      log.warn({ namespace: this.namespace, err: String(err) }, 'cannot close the conntrack event socket');
    }
  }

  /** A new socket (subscribed now: events from here on are read) and a thread for it; the gap is reported as a loss. */
  private restart(): void {
    this.restartTimer = undefined;
    if (this.closed) {
      this.ended = true;
      this.resolveStopped();
      return;
    }
    let fd: number;
    try {
      fd = openEventSocket(this.namespace, this.options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER, READ_TIMEOUT_MS);
    } catch (err) {
      const delay = this.restartDelayMs;
      this.restartDelayMs = Math.min(RESTART_MAX_MS, this.restartDelayMs * 2);
      log.error({ namespace: this.namespace, err: String(err), retryInMs: delay }, 'cannot open a conntrack event socket for the restarted thread');
      this.restartTimer = setTimeout(() => this.restart(), delay);
      this.restartTimer.unref();
      return;
    }
    this.socketFd = fd;
    this.dropCounter.newSocket();
    this.startWorker();
    this.restarts++;
    const lost = this.lostByFailedThread;
    this.lostByFailedThread = 0;
    log.warn({ namespace: this.namespace, restarts: this.restarts, lost }, 'conntrack event thread restarted: events of the gap are lost');
    try {
      this.options.onReaderRestart?.(lost);
    } catch (err) {
      log.error({ err: String(err) }, 'event reader restart handler failed');
    }
  }

  private scheduleDrain(): void {
    if (this.draining) return;
    this.draining = true;
    setImmediate(() => this.drain());
  }

  /** One batch (at most BATCH_RECORDS events), then the loop's other work, then the next. */
  private drain(): void {
    this.draining = false;
    const batch = this.queue.shift();
    if (!batch || this.closed) return;
    this.deliver(batch);
    const control = new Int32Array(this.control);
    Atomics.sub(control, 1, 1);
    Atomics.notify(control, 1);
    if (this.queue.length > 0) this.scheduleDrain();
  }

  /** Batches the thread has handed over and the engine not yet delivered (at most MAX_BATCHES_IN_FLIGHT). */
  get batchesWaiting(): number {
    return Atomics.load(new Int32Array(this.control), 1);
  }

  /** The reading thread's kernel thread id (0 until it runs): its CPU time is /proc/self/task/<tid>/schedstat's. */
  get threadKernelId(): number {
    return Atomics.load(new Int32Array(this.control), 2);
  }

  /** Overruns seen: times the kernel dropped events for this reader (resynchronise from a dump). */
  get overruns(): number {
    return this.dropCounter.overruns;
  }

  /** Events the kernel dropped for lack of buffer room since the start. */
  get droppedEvents(): number {
    return this.dropCounter.total;
  }

  /** Subscribes (synchronously) and starts the reading thread; as ConntrackEventStream.start. */
  static start(
    listener: (n: ConntrackNotification) => void,
    onOverrun: (dropped: number) => void,
    options: ConntrackEventThreadOptions = {},
  ): ConntrackEventThread {
    const fd = openEventSocket(options.namespace, options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER, READ_TIMEOUT_MS);
    return new ConntrackEventThread(fd, options.namespace, listener, onOverrun, options);
  }

  /** Reads the kernel's drop counter; reports an overrun when it grew. Also called by the poll timer. */
  checkDrops(): number {
    if (this.closed || this.ended || this.restartTimer) return this.dropCounter.total;
    let drops: number;
    try {
      drops = receiveDrops(this.fd);
    } catch (err) {
      log.error({ namespace: this.namespace, err: String(err) }, 'cannot read the conntrack event socket\'s drop counter');
      return this.dropCounter.total;
    }
    return this.dropCounter.update(drops);
  }


  /** Stops reporting at once; the thread ends within READ_TIMEOUT_MS and closes the socket (see `stopped`). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    clearInterval(this.timer);
    Atomics.store(new Int32Array(this.control), 0, 1);
    if (this.restartTimer) {
      // Between a failed thread and its successor: no thread, its socket already closed.
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      this.ended = true;
      this.resolveStopped();
    }
  }
}
