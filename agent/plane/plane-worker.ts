// Entry of the plane worker thread: builds the dataplane parts (dataplane-parts.ts) and serves them
// to the agent's main thread (plane-server.ts), so that libyang, XML and NETCONF work on the main
// thread never delays sync keepalives, sync frames or conntrack event reading. Ends by itself once
// the main thread asked it to close and every part is closed.
import { parentPort, workerData } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import { createDataplaneParts, type DataplaneOptions } from './dataplane-parts.js';
import { toWire } from './plane-errors.js';
import type { PlaneMessage } from './plane-protocol.js';
import { PlaneServer } from './plane-server.js';

const log = logger('plane');

/** After close, what is still pending (a socket's last close, a timer) gets this long before the thread ends. */
const EXIT_GRACE_MS = 2000;

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('plane-worker.js runs as a worker thread');
  let parts;
  try {
    parts = await createDataplaneParts(workerData as DataplaneOptions);
  } catch (err) {
    port.postMessage({ t: 'failed', error: toWire(err) } satisfies PlaneMessage);
    port.close();
    return;
  }
  new PlaneServer(port, parts, () => {
    log.debug('plane closed');
    setTimeout(() => process.exit(0), EXIT_GRACE_MS).unref();
  });
}

void main();
