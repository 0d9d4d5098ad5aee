// The agent's VRRP thread runs at a raised priority (ha/vrrp/thread-priority.ts): the calling
// thread only — the process's other threads (and the test runner here) keep theirs — and never
// lowered. Run in worker threads so that the test process's own thread is left alone.
import { expect } from 'chai';
import { getPriority } from 'node:os';
import { Worker } from 'node:worker_threads';
import { isRoot } from '../../lab/namespace-fixture.js';

const MODULE = new URL('../../ha/vrrp/thread-priority.js', import.meta.url).href;

/** Runs raiseThreadPriority(nice) in a new worker thread; the worker's priority before and after, and the value returned. */
function inWorker(nice: number, startAt?: number): Promise<{ before: number; returned: number; after: number; mainSeenFromWorker: number }> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const os = require('node:os');
    import(workerData.module).then(({ raiseThreadPriority }) => {
      if (workerData.startAt !== undefined) os.setPriority(workerData.startAt);
      const before = os.getPriority();
      const returned = raiseThreadPriority(workerData.nice);
      parentPort.postMessage({ before, returned, after: os.getPriority(), mainSeenFromWorker: os.getPriority(process.pid) });
    }, (err) => parentPort.postMessage({ error: String(err) }));`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { module: MODULE, nice, startAt } });
    w.once('message', (m: Record<string, unknown>) => {
      void w.terminate();
      if (m.error) reject(new Error(String(m.error)));
      else resolve(m as { before: number; returned: number; after: number; mainSeenFromWorker: number });
    });
    w.once('error', reject);
  });
}

describe('vrrp: the VRRP thread priority', () => {
  it('raises the calling thread only (root)', async function () {
    if (!isRoot()) {
      console.log('    (skipped: lowering a nice value needs root)');
      this.skip();
    }
    const main = getPriority();
    const r = await inWorker(main - 5);
    expect(r).to.include({ before: main, returned: main - 5, after: main - 5 });
    // The process's main thread (pid = its thread id) is untouched.
    expect(r.mainSeenFromWorker).to.equal(main);
    expect(getPriority()).to.equal(main);
  });

  it('never lowers a priority already higher', async function () {
    if (!isRoot()) this.skip();
    const main = getPriority();
    const r = await inWorker(main - 2, main - 6);
    expect(r).to.include({ before: main - 6, returned: main - 6, after: main - 6 });
  });

  it('leaves the priority as it was when refused (not root)', async function () {
    // Only without CAP_SYS_NICE is a raise refused.
    if (isRoot()) {
      console.log('    (skipped: as root the raise is allowed)');
      this.skip();
    }
    const main = getPriority();
    const r = await inWorker(main - 5);
    expect(r).to.include({ before: main, returned: main, after: main });
  });
});
