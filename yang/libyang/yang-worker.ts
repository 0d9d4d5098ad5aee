// libyang in a worker thread, for the calls that take seconds on a large datastore (parsing and
// validating a 100,000-rule edit, diffing and printing the result): the main thread awaits them
// and keeps serving its event loop (other sessions' reads, SSH) meanwhile. The thread has its own
// libyang instance, built from the main context's recipe, so its errors are the main thread's.
// It costs memory (a second instance: tens of MB, plus what it parses), so it is started on the
// first call and stopped after `idleMs` without one.
import { Worker } from 'node:worker_threads';
import { YangException, type DataKind, type YangContextRecipe } from './api.js';
import type { YangWorkerReply, YangWorkerRequest } from './yang-worker-protocol.js';

type Request = YangWorkerRequest extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never;

export interface YangWorkerEvents {
  /** The thread was started (first call after being idle). */
  started?(): void;
  /** The thread was stopped: idle, closed, or it failed (reason). */
  stopped?(reason: string): void;
}

export class YangWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (r: YangWorkerReply & { ok: true }) => void; reject: (e: unknown) => void }>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;
  /** How many times the thread was started (tests, benchmarks). */
  starts = 0;

  constructor(
    private readonly recipe: YangContextRecipe,
    private readonly idleMs = 10_000,
    private readonly events: YangWorkerEvents = {},
  ) {}

  /** Whether the thread is running now. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Parse `text` (and validate it when asked) in the worker. Throws YangException as a parse on this thread would. */
  async check(text: string, kind: DataKind, validate: boolean): Promise<void> {
    await this.call({ op: 'check', text, kind, validate });
  }

  /**
   * Validate `nextText` as a whole configuration and diff it against `prevText`: libyang's diff as
   * JSON ('' when equal) and the new configuration printed as JSON with every default. Throws
   * YangException when the new configuration is not valid.
   */
  async commit(prevText: string, nextText: string): Promise<{ diff: string; json: string }> {
    const r = await this.call({ op: 'commit', prevText, nextText });
    return { diff: r.diff ?? '', json: r.json ?? '' };
  }

  /** Stop the thread now (pending calls fail). */
  async close(): Promise<void> {
    await this.stop('closed');
  }

  private start(): Worker {
    const w = new Worker(new URL('./yang-worker-thread.js', import.meta.url), { workerData: { recipe: this.recipe } });
    this.starts += 1;
    w.on('message', (reply: YangWorkerReply) => this.settle(reply));
    w.on('error', (err) => this.failed(w, err));
    w.on('exit', (code) => this.failed(w, new Error(`libyang worker exited (code ${code})`)));
    this.worker = w;
    this.events.started?.();
    return w;
  }

  private call(req: Request): Promise<YangWorkerReply & { ok: true }> {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const w = this.worker ?? this.start();
    w.ref();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ ...req, id } as YangWorkerRequest);
    });
  }

  private settle(reply: YangWorkerReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    this.idleIfDone();
    if (reply.ok) p.resolve(reply);
    else if ('yangErrors' in reply) p.reject(new YangException(reply.yangErrors));
    else p.reject(new Error(reply.message));
  }

  private idleIfDone(): void {
    if (this.pending.size > 0 || !this.worker) return;
    // An idle thread does not keep the process alive, and goes away after idleMs.
    this.worker.unref();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => void this.stop('idle'), this.idleMs);
    this.idleTimer.unref();
  }

  private failed(w: Worker, err: Error): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    clearTimeout(this.idleTimer);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.events.stopped?.(err.message);
  }

  private async stop(reason: string): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = undefined;
    clearTimeout(this.idleTimer);
    const err = new Error(`libyang worker stopped (${reason})`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    await w.terminate();
    this.events.stopped?.(reason);
  }
}
