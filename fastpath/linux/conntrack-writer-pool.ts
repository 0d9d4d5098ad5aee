// Bulk conntrack writes on several threads. The main thread encodes the datagrams (cheap); each
// writer thread sends them on its own ctnetlink socket in the namespace, where the kernel does the
// expensive part (conntrack allocation, NAT binding, hash insertion) in the sending thread. With
// one thread this is what ConntrackNetlink does; with two or more, creates run on several cores.
// Concurrent batches are coalesced: sync hands the engine many small frames at once (a burst of
// kernel events makes frames of a few dozen conntracks), and each on its own would cost a message
// between threads and a datagram; they wait in one queue and leave in chunks of up to
// MESSAGES_PER_CHUNK, in the order they came, each batch's messages consecutive.
import { Worker } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import {
  IPV4_RECORD_BYTES, MessageBuilder, NLM_F_ACK, writeCreate, writeRecordCreate, writeRecordUpdate, writeUpdate,
  type ConntrackWrite, type RecordWriteOptions,
} from './ctnetlink-codec.js';
import type { BatchResult } from './conntrack-netlink.js';
import { SLOT_BYTES, type WriterReply, type WriterRequest } from './conntrack-writer-protocol.js';
import { UpsertOrder, upsertConntracks, type UpsertResult } from './conntrack-upsert.js';

const log = logger('conntrack-writer');

const MESSAGES_PER_DATAGRAM = 256;
/** Messages handed to a thread at once (in datagrams of MESSAGES_PER_DATAGRAM): one message between threads per chunk. */
const MESSAGES_PER_CHUNK = 1024;
/**
 * Chunks a writer has unanswered at most (16 datagrams): enough that the next datagram is always
 * waiting when the kernel finishes one (with 4 datagrams the thread idled between sync frames), and
 * the socket's receive buffer (8 MB) holds their answers even if every message is refused.
 */
const IN_FLIGHT_PER_WRITER = 4;
const START_TIMEOUT_MS = 10_000;

/** Writes the message of one write (a ConntrackWrite, or the index of a packed record) into a datagram. */
type ItemWriter<T> = (b: MessageBuilder, item: T, seq: number, flags: number) => void;

/** A batch waiting for (or in) chunks: its messages go out in order, from `next` on. */
interface QueuedBatch {
  writes: readonly unknown[];
  write: ItemWriter<never>;
  /** Writes already placed in a chunk. */
  next: number;
  /** Chunks holding some of its writes and not yet answered. */
  outstanding: number;
  result: BatchResult;
  settled: boolean;
  resolve: (r: BatchResult) => void;
  reject: (e: Error) => void;
}

/** The writes of one batch in a chunk: writes[from, from + count) are messages [at, at + count) of the chunk. */
interface ChunkPart {
  batch: QueuedBatch;
  from: number;
  count: number;
  at: number;
}

interface Writer {
  worker: Worker;
  seq: number;
  /** IN_FLIGHT_PER_WRITER slots of SLOT_BYTES shared with the thread, and the free ones. */
  slots: Uint8Array;
  freeSlots: number[];
  waiting: (() => void)[];
  pending: Map<number, { resolve: (f: { index: number; errno: number }[]) => void; reject: (e: Error) => void }>;
  /** Why the thread is gone, once it is: chunks for it fail at once instead of waiting forever. */
  gone?: Error;
}

export class ConntrackWriterPool {
  private nextId = 1;
  private turn = 0;
  private closed = false;
  /** Creates or updates first, as the last upserts went (conntrack-upsert.ts). */
  private readonly order = new UpsertOrder();
  private readonly builder = new MessageBuilder(SLOT_BYTES);
  private readonly queue: QueuedBatch[] = [];
  private pumping = false;
  /** Chunks handed to the threads and the messages in them (batches coalesce: fewer chunks than batches). */
  readonly stats = { chunks: 0, messages: 0 };

  private constructor(
    private readonly writers: Writer[],
    readonly namespace: string | undefined,
    /** Netlink port ids of the writers' sockets (events caused by their writes carry them). */
    readonly ports: ReadonlySet<number>,
  ) {}

  /** Starts `threads` writer threads whose sockets live in `namespace`. */
  static async start(namespace: string | undefined, threads: number): Promise<ConntrackWriterPool> {
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`writer threads must be an integer >= 1, got ${threads}`);
    const writers: Writer[] = [];
    const ports = new Set<number>();
    try {
      for (let i = 0; i < threads; i++) {
        const shared = new SharedArrayBuffer(IN_FLIGHT_PER_WRITER * SLOT_BYTES);
        const worker = new Worker(new URL('./conntrack-writer-worker.js', import.meta.url), { workerData: { namespace, slots: shared } });
        const writer: Writer = {
          worker, seq: 1, slots: new Uint8Array(shared), freeSlots: Array.from({ length: IN_FLIGHT_PER_WRITER }, (_, k) => k),
          waiting: [], pending: new Map(),
        };
        writers.push(writer);
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('conntrack writer thread did not start')), START_TIMEOUT_MS);
          worker.once('message', (m: { ready: boolean; port?: number; error?: string }) => {
            clearTimeout(timer);
            if (m.port !== undefined) ports.add(m.port);
            if (m.ready) resolve(); else reject(new Error(`conntrack writer thread: ${m.error ?? 'failed'}`));
          });
          worker.once('error', (err) => { clearTimeout(timer); reject(err); });
        });
        worker.on('message', (reply: WriterReply) => {
          const p = writer.pending.get(reply.id);
          if (!p) return;
          writer.pending.delete(reply.id);
          if (writer.pending.size === 0) worker.unref(); // idle writers do not keep the process alive
          if ('error' in reply) p.reject(new Error(reply.error)); else p.resolve(reply.failures);
        });
        worker.on('error', (err) => {
          log.error({ err: err.message }, 'conntrack writer thread failed');
          writer.gone ??= err;
          for (const p of writer.pending.values()) p.reject(err);
          writer.pending.clear();
        });
        // A thread that ends (other than by close()) answers nothing more: what it held fails now
        // (the caller counts it in receive-error) rather than never, which would stall its connection.
        worker.on('exit', (code) => {
          writer.gone ??= new Error(`conntrack writer thread exited (code ${code})`);
          if (writer.pending.size > 0) log.error({ code, chunks: writer.pending.size }, 'conntrack writer thread exited with chunks unanswered');
          for (const p of writer.pending.values()) p.reject(writer.gone);
          writer.pending.clear();
        });
        worker.unref();
      }
    } catch (err) {
      for (const w of writers) void w.worker.terminate();
      throw err;
    }
    return new ConntrackWriterPool(writers, namespace, ports);
  }

  get threads(): number {
    return this.writers.length;
  }

  /** The next thread in turn that is still there. */
  private nextWriter(): Writer | undefined {
    for (let i = 0; i < this.writers.length; i++) {
      const writer = this.writers[this.turn++ % this.writers.length] as Writer;
      if (!writer.gone) return writer;
    }
    return undefined;
  }

  private async takeSlot(writer: Writer): Promise<number> {
    while (writer.freeSlots.length === 0) await new Promise<void>((resolve) => writer.waiting.push(resolve));
    return writer.freeSlots.pop() as number;
  }

  private releaseSlot(writer: Writer, slot: number): void {
    writer.freeSlots.push(slot);
    writer.waiting.shift()?.();
  }

  /** Copies the chunk into the writer's slot and hands it over; resolves with the refusals (index in the chunk). */
  private send(writer: Writer, slot: number, chunk: Buffer, datagrams: number[]): Promise<{ index: number; errno: number }[]> {
    if (writer.gone) throw writer.gone;
    if (chunk.length > SLOT_BYTES) throw new Error(`chunk of ${chunk.length} bytes does not fit a ${SLOT_BYTES}-byte slot`);
    writer.slots.set(chunk, slot * SLOT_BYTES);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      writer.pending.set(id, { resolve, reject });
      writer.worker.ref(); // an answer is due: keep the process alive for it
      writer.worker.postMessage({ id, slot, datagrams } satisfies WriterRequest);
    });
  }

  private batch<T>(writes: T[], write: ItemWriter<T>): Promise<BatchResult> {
    if (this.closed) return Promise.reject(new Error('conntrack writer pool is closed'));
    if (writes.length === 0) return Promise.resolve({ written: 0, failures: [] });
    return new Promise((resolve, reject) => {
      this.queue.push({ writes, write, next: 0, outstanding: 0, result: { written: 0, failures: [] }, settled: false, resolve, reject });
      void this.pump();
    });
  }

  /** Sends the queue in chunks while there is one; batches that arrive meanwhile join the next chunk. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const writer = this.nextWriter();
        if (!writer) {
          // Every thread is gone: nothing can be written (each batch fails, counted by its caller).
          const err = new Error(`every conntrack writer thread is gone (${this.writers[0]?.gone?.message ?? 'no thread'})`);
          for (const batch of [...this.queue]) this.fail(batch, err);
          break;
        }
        const slot = await this.takeSlot(writer);
        const chunk = this.encodeChunk(writer);
        if (!chunk) {
          this.releaseSlot(writer, slot);
          continue;
        }
        const { parts, datagrams, bytes } = chunk;
        this.stats.chunks++;
        for (const part of parts) this.stats.messages += part.count;
        let sent: Promise<{ index: number; errno: number }[]>;
        try {
          sent = this.send(writer, slot, bytes, datagrams);
        } catch (err) {
          this.releaseSlot(writer, slot);
          for (const part of parts) this.fail(part.batch, err as Error);
          continue;
        }
        sent.then((failures) => this.answer(parts, failures), (err: Error) => {
          for (const part of parts) this.fail(part.batch, err);
        }).finally(() => this.releaseSlot(writer, slot));
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Encodes the head of the queue, up to MESSAGES_PER_CHUNK messages, into datagrams of
   * MESSAGES_PER_DATAGRAM (one ack each); a batch whose writes cannot be encoded (bad input) is
   * refused with the encoder's error and the chunk is made without it. Undefined: nothing left.
   */
  private encodeChunk(writer: Writer): { parts: ChunkPart[]; datagrams: number[]; bytes: Buffer } | undefined {
    for (;;) {
      const parts: ChunkPart[] = [];
      let total = 0;
      for (const batch of this.queue) {
        if (total >= MESSAGES_PER_CHUNK) break;
        const count = Math.min(batch.writes.length - batch.next, MESSAGES_PER_CHUNK - total);
        parts.push({ batch, from: batch.next, count, at: total });
        total += count;
      }
      if (total === 0) return undefined;
      // One builder for the pool, reused: encoding makes no garbage per datagram.
      const builder = this.builder.reset();
      const datagrams: number[] = [];
      let seq = writer.seq;
      let p = 0;
      let j = 0;
      let current: ChunkPart | undefined;
      try {
        for (let d = 0; d < total; d += MESSAGES_PER_DATAGRAM) {
          const n = Math.min(MESSAGES_PER_DATAGRAM, total - d);
          if (seq + n >= 0xfffffff0) seq = 1; // seqs stay consecutive within a datagram
          const offset = builder.size;
          for (let i = 0; i < n; i++) {
            while ((current = parts[p] as ChunkPart) && j >= current.count) {
              p++;
              j = 0;
            }
            (current.batch.write as ItemWriter<unknown>)(builder, current.batch.writes[current.from + j], seq + i, i === n - 1 ? NLM_F_ACK : 0);
            j++;
          }
          datagrams.push(offset, builder.size - offset, seq, n);
          seq += n;
        }
      } catch (err) {
        // Bad input in one batch: it fails as a whole (as before coalescing); the others go on.
        if (!current) throw err;
        this.fail(current.batch, err as Error);
        continue;
      }
      writer.seq = seq;
      for (const part of parts) {
        part.batch.next += part.count;
        part.batch.outstanding++;
      }
      while (this.queue.length > 0 && (this.queue[0] as QueuedBatch).next === (this.queue[0] as QueuedBatch).writes.length) this.queue.shift();
      return { parts, datagrams, bytes: builder.finish() };
    }
  }

  /** Hands each batch its share of a chunk's refusals; a batch whose chunks are all answered resolves. */
  private answer(parts: ChunkPart[], failures: { index: number; errno: number }[]): void {
    failures.sort((a, b) => a.index - b.index);
    let f = 0;
    for (const part of parts) {
      let refused = 0;
      for (; f < failures.length && (failures[f] as { index: number }).index < part.at + part.count; f++) {
        const failure = failures[f] as { index: number; errno: number };
        part.batch.result.failures.push({ index: part.from + failure.index - part.at, errno: failure.errno });
        refused++;
      }
      part.batch.result.written += part.count - refused;
      part.batch.outstanding--;
      if (!part.batch.settled && part.batch.outstanding === 0 && part.batch.next === part.batch.writes.length) {
        part.batch.settled = true;
        part.batch.result.failures.sort((a, b) => a.index - b.index);
        part.batch.resolve(part.batch.result);
      }
    }
  }

  private fail(batch: QueuedBatch, err: Error): void {
    if (!batch.settled) {
      batch.settled = true;
      batch.reject(err);
    }
    // Nothing more of it is sent.
    const index = this.queue.indexOf(batch);
    if (index >= 0) this.queue.splice(index, 1);
  }

  create(writes: ConntrackWrite[]): Promise<BatchResult> {
    return this.batch(writes, writeCreate);
  }

  update(writes: ConntrackWrite[]): Promise<BatchResult> {
    return this.batch(writes, writeUpdate);
  }

  /** As ConntrackNetlink.upsert, on the writer threads. */
  upsert(writes: ConntrackWrite[]): Promise<UpsertResult> {
    return upsertConntracks(writes, (w) => this.create(w), (w) => this.update(w), undefined, this.order);
  }

  /**
   * upsert() of packed IPv4 sync records (DataplaneEngine.upsertIPv4Records): the messages are
   * written from the records' bytes, no object per conntrack; failures index the records. The
   * caller must not change `records` before this resolves (retries read them again).
   */
  upsertIPv4Records(records: Uint8Array, options: RecordWriteOptions): Promise<UpsertResult> {
    if (records.length % IPV4_RECORD_BYTES !== 0) {
      return Promise.reject(new Error(`packed IPv4 records: ${records.length} bytes is not a whole number of ${IPV4_RECORD_BYTES}-byte records`));
    }
    const indexes = Array.from({ length: records.length / IPV4_RECORD_BYTES }, (_, i) => i);
    const create: ItemWriter<number> = (b, i, seq, flags) => writeRecordCreate(b, records, i, seq, flags, options);
    const update: ItemWriter<number> = (b, i, seq, flags) => writeRecordUpdate(b, records, i, seq, flags, options);
    return upsertConntracks(indexes, (w) => this.batch(w, create), (w) => this.batch(w, update), undefined, this.order);
  }

  /** Asks every thread to close its socket and end; forces the ones that do not within 5 s. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const batch of [...this.queue]) this.fail(batch, new Error('conntrack writer pool is closed'));
    await Promise.all(this.writers.map((w) => new Promise<void>((resolve) => {
      const force = setTimeout(() => void w.worker.terminate().then(() => resolve()), 5000);
      w.worker.once('exit', () => { clearTimeout(force); resolve(); });
      w.worker.postMessage({ close: true });
    })));
  }
}
