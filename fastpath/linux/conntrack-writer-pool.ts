// Bulk conntrack writes on several threads. The main thread encodes the datagrams (cheap); each
// writer thread sends them on its own ctnetlink socket in the namespace, where the kernel does the
// expensive part (conntrack allocation, NAT binding, hash insertion) in the sending thread. With
// one thread this is what ConntrackNetlink does; with two or more, creates run on several cores.
import { Worker } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import { MessageBuilder, NLM_F_ACK, writeCreate, writeUpdate, type ConntrackWrite } from './ctnetlink-codec.js';
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

interface Writer {
  worker: Worker;
  seq: number;
  /** IN_FLIGHT_PER_WRITER slots of SLOT_BYTES shared with the thread, and the free ones. */
  slots: Uint8Array;
  freeSlots: number[];
  waiting: (() => void)[];
  pending: Map<number, { resolve: (f: { index: number; errno: number }[]) => void; reject: (e: Error) => void }>;
}

export class ConntrackWriterPool {
  private nextId = 1;
  private turn = 0;
  private closed = false;
  /** Creates or updates first, as the last upserts went (conntrack-upsert.ts). */
  private readonly order = new UpsertOrder();
  private readonly builder = new MessageBuilder(SLOT_BYTES);

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
          for (const p of writer.pending.values()) p.reject(err);
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
    if (chunk.length > SLOT_BYTES) throw new Error(`chunk of ${chunk.length} bytes does not fit a ${SLOT_BYTES}-byte slot`);
    writer.slots.set(chunk, slot * SLOT_BYTES);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      writer.pending.set(id, { resolve, reject });
      writer.worker.ref(); // an answer is due: keep the process alive for it
      writer.worker.postMessage({ id, slot, datagrams } satisfies WriterRequest);
    });
  }

  private async batch(writes: ConntrackWrite[], write: typeof writeCreate): Promise<BatchResult> {
    if (this.closed) throw new Error('conntrack writer pool is closed');
    const result: BatchResult = { written: 0, failures: [] };
    const all: Promise<void>[] = [];
    for (let start = 0; start < writes.length; start += MESSAGES_PER_CHUNK) {
      const count = Math.min(MESSAGES_PER_CHUNK, writes.length - start);
      const writer = this.writers[this.turn++ % this.writers.length];
      const slot = await this.takeSlot(writer);
      let sent: Promise<{ index: number; errno: number }[]>;
      try {
        // One builder for the pool, reused: encoding makes no garbage per datagram.
        const builder = this.builder.reset();
        const datagrams: number[] = [];
        let seq = writer.seq;
        for (let d = 0; d < count; d += MESSAGES_PER_DATAGRAM) {
          const n = Math.min(MESSAGES_PER_DATAGRAM, count - d);
          if (seq + n >= 0xfffffff0) seq = 1; // seqs stay consecutive within a datagram
          const offset = builder.size;
          for (let i = 0; i < n; i++) write(builder, writes[start + d + i], seq + i, i === n - 1 ? NLM_F_ACK : 0);
          datagrams.push(offset, builder.size - offset, seq, n);
          seq += n;
        }
        writer.seq = seq;
        sent = this.send(writer, slot, builder.finish(), datagrams);
      } catch (err) {
        this.releaseSlot(writer, slot);
        throw err;
      }
      all.push(sent.then((failures) => {
        result.written += count - failures.length;
        for (const f of failures) result.failures.push({ index: start + f.index, errno: f.errno });
      }).finally(() => this.releaseSlot(writer, slot)));
    }
    await Promise.all(all);
    result.failures.sort((a, b) => a.index - b.index);
    return result;
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

  /** Asks every thread to close its socket and end; forces the ones that do not within 5 s. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.writers.map((w) => new Promise<void>((resolve) => {
      const force = setTimeout(() => void w.worker.terminate().then(() => resolve()), 5000);
      w.worker.once('exit', () => { clearTimeout(force); resolve(); });
      w.worker.postMessage({ close: true });
    })));
  }
}
