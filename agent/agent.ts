// Composition of the agent: state directory, YANG context, dataplane engine (soft or linux), the
// commit subsystems of fastpath/ and sync/ (with VRRP), the NETCONF operations layer (datastores, commit
// transaction, monitoring, notifications), and the SSH server.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadTandemContext } from '../yang/libyang/index.js';
import { logger } from '../core/log.js';
import { FACTORY_FRAGMENTS, factoryConfigXml } from './datastore/factory/factory-config.js';
import { fastPathEngineFragment } from './datastore/factory/fast-path-engine.js';
import { createNetconfOperations, type NetconfOperations } from './operations/index.js';
import type { EngineName } from './plane/dataplane-parts.js';
import { startPlane, type PlaneMode } from './plane/start-plane.js';
import type { RpcDispatcher } from './netconf/rpc-dispatcher.js';
import type { NamespaceResolver } from './netconf/reply-xml.js';
import { loadOrCreateHostKeys, type HostKey } from './ssh/host-keys.js';
import { NetconfSshServer, type ServerLimits } from './ssh/netconf-ssh-server.js';
import { UserStore } from './ssh/user-store.js';

const log = logger('agent');

export type { EngineName } from './plane/dataplane-parts.js';
export type { PlaneMode } from './plane/start-plane.js';

export interface AgentOptions {
  stateDir: string;
  /** Where to listen; port 0 picks a free port (see RunningAgent.port). */
  listen: { host: string; port: number };
  engine: EngineName;
  /** Initial configuration if the state directory has none. */
  startupFile?: string;
  limits?: Partial<ServerLimits>;
  /** Use this dispatcher instead of the operations layer (protocol tests). */
  dispatcher?: RpcDispatcher;
  /** Serve the dataplane and sync counters as OpenMetrics on http://HOST:PORT/metrics (port 0: a free port). */
  metrics?: { host: string; port: number };
  /**
   * Where the dataplane plane (engine, fastpath, traffic, counters, HA, sync, VRRP, metrics) runs:
   * its own worker thread (default), so that management work on this thread cannot starve sync
   * keepalives and conntrack events; or this thread ('in-process').
   */
  plane?: PlaneMode;
}

export interface RunningAgent {
  host: string;
  port: number;
  stateDir: string;
  hostKeys: HostKey[];
  server: NetconfSshServer;
  /** Where the OpenMetrics endpoint listens, when asked for. */
  metrics?: { host: string; port: number };
  close(): Promise<void>;
}

/**
 * YANG context, the dataplane plane (its subsystems take part in commits: fastpath first, so every
 * VRF exists in the engine before sync and ha give it a role), and the operations layer.
 */
async function loadOperations(opts: AgentOptions): Promise<{ ops: NetconfOperations; resolve: NamespaceResolver; metrics?: { host: string; port: number }; close(): Promise<void> }> {
  const yang = await loadTandemContext({ onLoaded: (modules, ms) => log.info({ modules, ms }, 'tandem YANG context loaded') });
  const undo: (() => Promise<void> | void)[] = [() => yang.free()];
  const unwind = async () => {
    for (const u of undo.reverse()) await u();
  };
  try {
    // Prefixes of libyang error-paths are module names: declare them with the module's namespace.
    const namespaces = new Map(yang.modules().map((m) => [m.name, m.namespace]));
    const plane = await startPlane(opts.plane ?? 'worker', { engine: opts.engine, stateDir: opts.stateDir, metrics: opts.metrics });
    undo.push(() => plane.close());
    const ops = await createNetconfOperations({
      yang, stateDir: opts.stateDir, startupFile: opts.startupFile, factoryConfig: factoryConfigXml(opts.engine === 'soft' ? FACTORY_FRAGMENTS : [...FACTORY_FRAGMENTS, fastPathEngineFragment(opts.engine)]),
      subsystems: plane.subsystems,
      stateProviders: plane.stateProviders,
      rpcProviders: plane.rpcProviders,
    });
    undo.push(() => ops.close());
    const detach = plane.attachNotify((n) => ops.notify(n));
    undo.push(detach);
    log.info({ engine: plane.engine.kind, workers: plane.engine.workers, plane: opts.plane ?? 'worker' }, 'dataplane engine ready');
    return { ops, resolve: (p) => namespaces.get(p), metrics: plane.metrics, close: unwind };
  } catch (err) {
    await unwind();
    throw err;
  }
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const stateDir = path.resolve(opts.stateDir);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const hostKeys = await loadOrCreateHostKeys(stateDir);
  const users = new UserStore(stateDir);
  await users.load(); // a broken users file is an error at start, not at the first login

  let dispatcher: RpcDispatcher;
  let resolveNamespace: NamespaceResolver | undefined;
  let closeOps: () => Promise<void> = async () => {};
  let metrics: { host: string; port: number } | undefined;
  if (opts.dispatcher) {
    dispatcher = opts.dispatcher;
  } else {
    const loaded = await loadOperations({ ...opts, stateDir });
    dispatcher = loaded.ops;
    resolveNamespace = loaded.resolve;
    closeOps = loaded.close;
    metrics = loaded.metrics;
  }

  const server = new NetconfSshServer({ hostKeys, users, dispatcher, limits: opts.limits, resolveNamespace });
  let addr: { host: string; port: number };
  try {
    addr = await server.listen(opts.listen.host, opts.listen.port);
  } catch (err) {
    await closeOps();
    throw err;
  }
  log.info({ ...addr, stateDir, engine: opts.engine }, 'NETCONF over SSH listening');
  let closing: Promise<void> | undefined;
  return {
    ...addr,
    stateDir,
    hostKeys,
    server,
    metrics,
    close: () => {
      closing ??= (async () => {
        await server.close();
        await closeOps();
        log.info('agent stopped');
      })();
      return closing;
    },
  };
}
