// Entry point of a soft-engine worker thread.
import { parentPort, workerData } from 'node:worker_threads';
import type { WorkerMessageToWorker } from './messages.js';
import { SoftWorkerRuntime } from './worker-runtime.js';

if (!parentPort) throw new Error('worker-entry.js must run in a worker thread');
const port = parentPort;
const runtime = new SoftWorkerRuntime((workerData as { index: number }).index, (m, transfer) => port.postMessage(m, transfer));
port.on('message', (m: WorkerMessageToWorker) => runtime.receive(m));
