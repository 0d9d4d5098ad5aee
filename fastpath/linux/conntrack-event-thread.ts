// Conntrack events of one namespace read by a thread of their own (docs/ha-sync.md § Event reading):
// the same events, in the same order, and the same loss accounting as ConntrackEventStream
// (conntrack-events.ts), with the reading and decoding off the engine's event loop. The socket is
// opened and subscribed here, synchronously (every event after start() returns is reported or
// counted as dropped); the thread reads it and posts packed batches (conntrack-event-decoder.ts,
// transferred, not copied), unpacked here into the notifications the engine has always had.
// The kernel's drop counter (SO_MEMINFO) is polled here as before: the fd is the process's.
import { Worker } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import { UnsupportedProtocolError, type ConntrackNotification } from './ctnetlink-codec.js';
import { forEachPackedEvent, type PackedEventBatch } from './conntrack-event-decoder.js';
import { openEventSocket } from './conntrack-event-socket.js';
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

export class ConntrackEventThread {
  private readonly dropCounter: EventDropCounter;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** The thread ended by itself: its socket is closed, the drop counter is no longer read. */
  private ended = false;
  /** Int32 [0]: stop flag; [1]: batches posted by the thread and not yet delivered. */
  private readonly control = new SharedArrayBuffer(8);
  private readonly worker: Worker;
  /** Resolves when the thread has ended (and closed the socket). */
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

  private constructor(
    /** The event socket's fd (the thread closes it when it ends). */
    readonly fd: number,
    readonly namespace: string | undefined,
    listener: (n: ConntrackNotification) => void,
    onOverrun: (dropped: number) => void,
  ) {
    this.dropCounter = new EventDropCounter(namespace, onOverrun);
    const notHandled = (err: unknown): void => {
      if (!(err instanceof UnsupportedProtocolError)) log.error({ err: String(err) }, 'conntrack event not handled');
    };
    const data: EventThreadData = { fd, control: this.control, batchRecords: BATCH_RECORDS, maxBatchesInFlight: MAX_BATCHES_IN_FLIGHT };
    this.worker = new Worker(new URL('./conntrack-event-thread-worker.js', import.meta.url), { workerData: data });
    this.worker.unref();
    let resolveStopped!: () => void;
    this.stopped = new Promise((r) => { resolveStopped = r; });
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
    this.worker.on('message', (m: EventThreadMessage) => {
      if (m.t === 'batch') {
        if (this.closed) return;
        this.batches++;
        this.events += m.count;
        this.queue.push({ records: m.records, count: m.count, ...(m.raw ? { raw: m.raw } : {}) });
        this.scheduleDrain();
      } else if (m.t === 'error') {
        log.error({ namespace, err: m.message }, 'conntrack event thread');
      }
    });
    this.worker.once('exit', (code) => {
      this.ended = true;
      clearInterval(this.timer);
      if (!this.closed) {
        // Events are no longer read: said loudly (the engine's counts and sync stop following the kernel).
        log.error({ namespace, code }, 'conntrack event thread ended: no more conntrack events are read');
      }
      resolveStopped();
    });
    this.worker.on('error', (err) => log.error({ namespace, err: err.message }, 'conntrack event thread failed'));
    this.timer = setInterval(() => this.checkDrops(), DROP_POLL_MS);
    this.timer.unref();
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
    options: ConntrackEventStreamOptions = {},
  ): ConntrackEventThread {
    const fd = openEventSocket(options.namespace, options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER, READ_TIMEOUT_MS);
    return new ConntrackEventThread(fd, options.namespace, listener, onOverrun);
  }

  /** Reads the kernel's drop counter; reports an overrun when it grew. Also called by the poll timer. */
  checkDrops(): number {
    if (this.closed || this.ended) return this.dropCounter.total;
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
  }
}
