// The thread of ConntrackEventThread (conntrack-event-thread.ts): reads the conntrack event socket
// the engine opened (blocking reads with a short timeout), packs the events (PackedEventWriter of
// conntrack-event-decoder.ts) and posts them in batches: a batch leaves as soon as the socket has
// nothing more waiting, or when it is full, so a lone event is not held back and a burst travels
// in few messages. Stops when the engine sets the shared stop flag; it closes the socket itself
// (no other thread may close an fd this one may be reading). If it fails, it says how many events
// it took from the socket without handing them over, and how many it left unread there: the engine
// counts them as lost and restarts the reader on a new socket (conntrack-event-thread.ts).
//
// Test hook: when TANDEM_TEST_EVENT_THREAD_FAIL names a file that exists, the thread removes it
// and fails right after its next read (that event is lost), as a bug in the thread would.
import { existsSync, unlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PackedEventWriter } from './conntrack-event-decoder.js';
import { closeEventSocket, receiveDatagram, threadKernelId } from './conntrack-event-socket.js';

export interface EventThreadData {
  fd: number;
  /** Int32Array over a SharedArrayBuffer: [0] != 0 asks the thread to stop; [1] batches posted, not yet delivered; [2] the thread's tid. */
  control: SharedArrayBuffer;
  batchRecords: number;
  /** The thread reads no more while this many batches wait on the engine's side (the kernel buffer holds the rest). */
  maxBatchesInFlight: number;
}

/** Messages of the thread. */
export type EventThreadMessage =
  | { t: 'batch'; records: ArrayBuffer; count: number; raw?: ArrayBuffer }
  | { t: 'error'; message: string }
  /** The thread failed and ends: `lost` events were read and not handed over or left unread in the socket. */
  | { t: 'failed'; message: string; lost: number }
  | { t: 'stopped' };

const { fd, control, batchRecords, maxBatchesInFlight } = workerData as EventThreadData;
const stop = new Int32Array(control);
// [2]: this thread's kernel id, so that its CPU time can be read (/proc/self/task/<tid>/schedstat).
Atomics.store(stop, 2, threadKernelId());
const port = parentPort;
// Conntrack events are single messages of a few hundred bytes; a datagram longer than this is cut (counted as an error).
const buf = Buffer.allocUnsafe(64 * 1024);
const writer = new PackedEventWriter(batchRecords);
const failMark = process.env.TANDEM_TEST_EVENT_THREAD_FAIL;
/** Most datagrams counted (and discarded) from a failed thread's socket before it is closed. */
const MAX_COUNTED_UNREAD = 1 << 20;

/** Events this failing thread will never hand over: those it holds and those still in the socket. */
function countLost(): number {
  let lost = writer.count;
  try {
    while (lost < MAX_COUNTED_UNREAD && receiveDatagram(fd, buf, false) >= 0) lost++;
  } catch {
    // the socket itself failed: what it held is unknown (the restart is counted regardless)
  }
  return lost;
}

function post(m: EventThreadMessage, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(m, transfer);
}

function take(len: number): void {
  if (len > buf.length) {
    post({ t: 'error', message: `conntrack event datagram of ${len} bytes cut to ${buf.length}` });
    return;
  }
  try {
    writer.add(buf.subarray(0, len));
  } catch (err) {
    post({ t: 'error', message: `malformed conntrack event datagram: ${String(err)}` });
  }
}

try {
  while (Atomics.load(stop, 0) === 0) {
    const inFlight = Atomics.load(stop, 1);
    if (inFlight >= maxBatchesInFlight) {
      // The engine is behind: wait for it (woken when it delivers a batch; 50 ms to see a stop).
      Atomics.wait(stop, 1, inFlight, 50);
      continue;
    }
    const first = receiveDatagram(fd, buf, true);
    if (first < 0) continue; // the receive timeout: look at the stop flag again
    take(first);
    if (failMark !== undefined && existsSync(failMark)) {
      unlinkSync(failMark);
      throw new Error(`TANDEM_TEST_EVENT_THREAD_FAIL (${failMark}): the thread fails, as a test asked`);
    }
    // Everything already waiting joins the batch, up to its size.
    while (!writer.full) {
      const len = receiveDatagram(fd, buf, false);
      if (len < 0) break;
      take(len);
    }
    if (writer.count > 0) {
      const b = writer.take();
      Atomics.add(stop, 1, 1);
      post({ t: 'batch', records: b.records, count: b.count, ...(b.raw ? { raw: b.raw } : {}) }, b.raw ? [b.records, b.raw] : [b.records]);
    }
  }
} catch (err) {
  post({ t: 'failed', message: String(err), lost: countLost() });
} finally {
  closeEventSocket(fd);
  post({ t: 'stopped' });
}
