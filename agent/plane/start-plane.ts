// Where the dataplane plane runs, seen from the agent: in its own worker thread (the default of
// `tandem start`), bridged over a MessageChannel in this thread (tests of the bridge), or directly
// in this thread (no bridge). The agent gets the same parts either way.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import { onLargeRemoval } from '../../core/full-gc.js';
import { createDataplaneParts, type DataplaneOptions } from './dataplane-parts.js';
import { PlaneClient } from './plane-client.js';
import { fromWire } from './plane-errors.js';
import type { PlaneManifest, PlaneMessage } from './plane-protocol.js';
import { PlaneServer, type PlaneParts } from './plane-server.js';

const log = logger('plane');

/** How long a plane worker may take to close its parts before it is terminated. */
const CLOSE_TIMEOUT_MS = 30_000;

export type PlaneMode = 'worker' | 'in-process';

/** The plane's parts as the agent uses them, wherever they run. */
export interface RunningPlane extends PlaneParts {
  /** The bridge, when there is one (its shipping statistics). */
  client?: PlaneClient;
  /** The plane worker's exit code once its thread has ended (worker only). */
  exited?: Promise<number>;
}

function waitManifest(port: MessagePort | Worker): Promise<PlaneManifest> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: PlaneMessage) => {
      if (m.t === 'ready') done(() => resolve(m.manifest));
      else if (m.t === 'failed') done(() => reject(fromWire(m.error)));
    };
    const onError = (err: Error) => done(() => reject(err));
    const onExit = (code: number) => done(() => reject(new Error(`the plane worker ended (exit code ${code}) before it was ready`)));
    const done = (fn: () => void) => {
      port.off('message', onMessage);
      port.off('error', onError);
      port.off('exit', onExit);
      fn();
    };
    port.on('message', onMessage);
    port.on('error', onError);
    port.on('exit', onExit);
  });
}

/** The dataplane in its own worker thread. */
export async function startPlaneWorker(opts: DataplaneOptions): Promise<RunningPlane> {
  const worker = new Worker(new URL('./plane-worker.js', import.meta.url), { workerData: opts });
  let exited = false;
  const exit = new Promise<number>((resolve) => worker.once('exit', (code) => {
    exited = true;
    resolve(code);
  }));
  let manifest: PlaneManifest;
  try {
    manifest = await waitManifest(worker);
  } catch (err) {
    if (!exited) await worker.terminate();
    throw err;
  }
  // The worker's own port: a Worker forwards parentPort messages to itself.
  const client = new PlaneClient(worker as unknown as MessagePort, manifest);
  let closing: Promise<void> | undefined;
  worker.on('error', (err) => {
    // As if it had happened in this thread: an uncaught error in the dataplane ends the agent.
    log.fatal({ err: err.message, stack: err.stack }, 'the plane worker failed');
    client.fail(err);
    if (!closing) setImmediate(() => { throw err; });
  });
  void exit.then((code) => {
    client.fail(new Error(`the plane worker ended (exit code ${code})`));
    if (!closing) log.error({ code }, 'the plane worker ended unexpectedly');
  });
  log.info({ threadId: worker.threadId }, 'plane worker started');
  // Its heap held the large configuration too; V8 would give it back only after a full GC there.
  const offLargeRemoval = onLargeRemoval(() => {
    client.collectGarbage().then((r) => log.info(r, 'plane worker heap collected after a large removal'),
      (err: unknown) => log.debug({ err: err instanceof Error ? err.message : String(err) }, 'plane worker heap not collected'));
  });
  return {
    ...partsOf(client, manifest),
    client,
    exited: exit,
    close: () => {
      offLargeRemoval();
      closing ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), CLOSE_TIMEOUT_MS); });
        try {
          const closed = client.close().then(() => exit);
          if (await Promise.race([closed, timeout]) === 'timeout') {
            log.warn({ ms: CLOSE_TIMEOUT_MS }, 'the plane worker did not end in time: terminated');
            await worker.terminate();
          }
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'closing the plane worker failed: terminated');
          if (!exited) await worker.terminate();
        } finally {
          clearTimeout(timer);
        }
      })();
      return closing;
    },
  };
}

function partsOf(client: PlaneClient, manifest: PlaneManifest): Omit<RunningPlane, 'close' | 'client'> {
  return {
    subsystems: client.subsystems,
    stateProviders: client.stateProviders,
    rpcProviders: client.rpcProviders,
    attachNotify: (sink) => client.attachNotify(sink),
    engine: manifest.engine,
    ...(manifest.metrics ? { metrics: manifest.metrics } : {}),
  };
}

/**
 * Parts built in this thread, served through the bridge over a MessageChannel: every call is
 * cloned and every error carried as with the worker (tests of the bridge, with the engine at hand).
 */
export async function bridgeInProcess(parts: PlaneParts): Promise<RunningPlane> {
  const { port1, port2 } = new MessageChannel();
  const ready = waitManifest(port2);
  const server = new PlaneServer(port1, parts);
  const manifest = await ready;
  const client = new PlaneClient(port2, manifest);
  return {
    ...partsOf(client, manifest),
    client,
    close: async () => {
      await client.close();
      await server.close();
      port2.close();
    },
  };
}

/** The parts in this thread, without a bridge. */
export async function startPlaneInProcess(opts: DataplaneOptions): Promise<RunningPlane> {
  const parts = await createDataplaneParts(opts);
  return { ...parts };
}

export function startPlane(mode: PlaneMode, opts: DataplaneOptions): Promise<RunningPlane> {
  return mode === 'worker' ? startPlaneWorker(opts) : startPlaneInProcess(opts);
}
