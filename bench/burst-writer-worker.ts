// The thread of burstInThread (burst-writer-thread.ts): creates the burst in ha1's kernel and says
// when it started and ended (absolute times: the caller converts them to its own clock).
import { parentPort, workerData } from 'node:worker_threads';
import { ConntrackNetlink } from '../fastpath/linux/conntrack-netlink.js';
import type { BurstRequest } from './burst-writer-thread.js';
import { burstWrites } from './linux-sync-pair.js';

const { namespace, n, salt } = workerData as BurstRequest;
const writes = burstWrites(n, salt);
const writer = new ConntrackNetlink({ namespace });
try {
  const startedAbs = performance.timeOrigin + performance.now();
  const r = await writer.create(writes);
  const endedAbs = performance.timeOrigin + performance.now();
  if (r.failures.length > 0) throw new Error(`${r.failures.length} of the burst refused by ha1's kernel (errno ${r.failures[0]?.errno})`);
  parentPort?.postMessage({ startedAbs, endedAbs });
} catch (err) {
  parentPort?.postMessage({ error: (err as Error).message });
} finally {
  writer.close();
}
