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
import type { DataplaneEngine } from '../fastpath/engine.js';
import { createFastpathParts } from '../fastpath/fastpath-parts.js';
import { createLinuxEngine } from '../fastpath/load-linux-engine.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';
import { FastPathCountersState } from '../fastpath/fast-path-counters.js';
import { TrafficService } from '../fastpath/traffic/traffic-service.js';
import { createSubsystems } from '../ha/ha-parts.js';
import { createVrrp } from '../ha/vrrp/vrrp-subsystem.js';
import type { RpcDispatcher } from './netconf/rpc-dispatcher.js';
import type { NamespaceResolver } from './netconf/reply-xml.js';
import { loadOrCreateHostKeys, type HostKey } from './ssh/host-keys.js';
import { NetconfSshServer, type ServerLimits } from './ssh/netconf-ssh-server.js';
import { UserStore } from './ssh/user-store.js';

const log = logger('agent');

export type EngineName = 'soft' | 'linux';

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

/** The dataplane engine named on the command line; the linux engine's native modules load only here. */
async function createEngine(name: EngineName): Promise<DataplaneEngine> {
  return name === 'linux' ? createLinuxEngine() : SoftEngine.create();
}

/**
 * YANG context, dataplane engine, the subsystems that take part in commits (fastpath first, so
 * every VRF exists in the engine before sync and ha give it a role), and the operations layer.
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
    const engine = await createEngine(opts.engine);
    undo.push(() => engine.close());
    const fastpath = createFastpathParts(engine);
    // Traffic sources (soft engine) and the dataplane counters, as RPCs and state data.
    const traffic = new TrafficService(engine);
    undo.push(() => traffic.close());
    const counters = new FastPathCountersState(engine);
    const sync = createSubsystems(engine);
    undo.push(() => sync.close());
    // VRRP (keepalived) controls the HA groups that name an instance; its files live in the state dir.
    const vrrp = createVrrp(sync.ha, { stateDir: path.join(opts.stateDir, 'vrrp') });
    undo.push(() => vrrp.close());
    const ops = await createNetconfOperations({
      yang, stateDir: opts.stateDir, startupFile: opts.startupFile, factoryConfig: factoryConfigXml(opts.engine === 'soft' ? FACTORY_FRAGMENTS : [...FACTORY_FRAGMENTS, fastPathEngineFragment(opts.engine)]),
      subsystems: [...fastpath.subsystems, ...sync.subsystems, vrrp.subsystem],
      stateProviders: [...fastpath.stateProviders, ...sync.stateProviders, traffic, counters],
      rpcProviders: [...sync.rpcProviders, ...traffic.rpcProviders()],
    });
    undo.push(() => ops.close());
    const detach = sync.attachNotify((n) => ops.notify(n));
    undo.push(detach);
    let metrics: { host: string; port: number } | undefined;
    if (opts.metrics) {
      // Loaded only when asked for: prom-client costs ~3 MB of heap in an agent that serves no metrics.
      const { OpenMetricsServer } = await import('./metrics/openmetrics-server.js');
      const server = new OpenMetricsServer([counters, ...sync.stateProviders]);
      metrics = await server.listen(opts.metrics.host, opts.metrics.port);
      undo.push(() => server.close());
    }
    log.info({ engine: engine.kind, workers: engine.workers }, 'dataplane engine ready');
    return { ops, resolve: (p) => namespaces.get(p), metrics, close: unwind };
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
