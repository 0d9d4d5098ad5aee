// The burst of the sync pair benchmark (bench/linux-sync-pair.ts), written into ha1's kernel from a
// thread of its own: on a real master, conntracks are created by traffic in the kernel, not by the
// agent's thread. Written from the thread the two agents share, the burst held their event loop
// for its whole length (ha1 read hardly any event before it ended), so "after the burst" meant the
// whole pipeline started then.
import { Worker } from 'node:worker_threads';

export interface BurstRequest {
  namespace: string;
  n: number;
  salt: number;
}

/** When the burst started and ended, in the caller's performance.now() time. */
export interface BurstTimes {
  startedAt: number;
  endedAt: number;
}

/** Creates the burst of `n` conntracks (burstWrites) in `namespace` from a worker thread. */
export function burstInThread(namespace: string, n: number, salt: number): Promise<BurstTimes> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./burst-writer-worker.js', import.meta.url), { workerData: { namespace, n, salt } satisfies BurstRequest });
    worker.once('message', (m: { startedAbs: number; endedAbs: number } | { error: string }) => {
      if ('error' in m) reject(new Error(m.error));
      else resolve({ startedAt: m.startedAbs - performance.timeOrigin, endedAt: m.endedAbs - performance.timeOrigin });
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`burst writer thread exited with ${code}`));
    });
  });
}
