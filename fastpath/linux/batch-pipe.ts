// Batches of a kernel dump handed to a consumer one at a time, in order, while the dump goes on:
// the kernel's table is read at its own pace and the consumer (e.g. sync's full resync, which
// waits for room on its connections) starts on the first batch instead of after the last one.
// A consumer that throws stops the pipe: later batches are dropped and end() throws its error.
export class BatchPipe<B> {
  private chain: Promise<void> = Promise.resolve();
  private failed = false;
  private failure: unknown;
  private cancelled = false;

  constructor(private readonly consume: (batch: B) => void | Promise<void>) {}

  /** Queues a batch; it runs once the batches before it are done. */
  push(batch: B): void {
    this.chain = this.chain.then(async () => {
      if (this.failed || this.cancelled) return;
      try {
        await this.consume(batch);
      } catch (err) {
        this.failed = true;
        this.failure = err;
      }
    });
  }

  /** Resolves when every batch was consumed; throws the consumer's error if it threw. */
  async end(): Promise<void> {
    await this.chain;
    if (this.failed) throw this.failure;
  }

  /** The dump failed: batches not started yet are dropped; resolves when the running one is done. */
  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.chain;
  }
}
