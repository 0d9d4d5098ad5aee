// The dataplane plane as one unit: the engine (soft worker pool or linux netlink sockets), the
// fastpath subsystem and state, traffic sources, the dataplane counters, HA groups and sync, the
// VRRP controller and the OpenMetrics endpoint. Built in the plane worker (plane-worker.ts) or, with
// `plane: 'in-process'`, in the agent's own thread.
import path from 'node:path';
import type { DataplaneEngine } from '../../fastpath/engine.js';
import { FastPathCountersState } from '../../fastpath/fast-path-counters.js';
import { createFastpathParts } from '../../fastpath/fastpath-parts.js';
import { createLinuxEngine } from '../../fastpath/load-linux-engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TrafficService } from '../../fastpath/traffic/traffic-service.js';
import { createSubsystems } from '../../ha/ha-parts.js';
import { createVrrp } from '../../ha/vrrp/vrrp-subsystem.js';
import type { PlaneParts } from './plane-server.js';

export type EngineName = 'soft' | 'linux';

export interface DataplaneOptions {
  engine: EngineName;
  /** The agent's state directory (VRRP keeps its keepalived files under it). */
  stateDir: string;
  /** Serve the dataplane and sync counters as OpenMetrics on http://HOST:PORT/metrics (port 0: a free port). */
  metrics?: { host: string; port: number };
}

/** The dataplane engine named on the command line; the linux engine's native modules load only here. */
async function createEngine(name: EngineName): Promise<DataplaneEngine> {
  return name === 'linux' ? createLinuxEngine() : SoftEngine.create();
}

/** Subsystems in transaction order: fastpath first, so every VRF exists in the engine before sync and ha give it a role. */
export async function createDataplaneParts(opts: DataplaneOptions): Promise<PlaneParts> {
  const undo: (() => Promise<void> | void)[] = [];
  const unwind = async () => {
    for (const u of undo.reverse()) await u();
  };
  try {
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
    let metrics: { host: string; port: number } | undefined;
    if (opts.metrics) {
      // Loaded only when asked for: prom-client costs ~3 MB of heap in an agent that serves no metrics.
      const { OpenMetricsServer } = await import('../metrics/openmetrics-server.js');
      const server = new OpenMetricsServer([counters, ...sync.stateProviders]);
      metrics = await server.listen(opts.metrics.host, opts.metrics.port);
      undo.push(() => server.close());
    }
    return {
      subsystems: [...fastpath.subsystems, ...sync.subsystems, vrrp.subsystem],
      stateProviders: [...fastpath.stateProviders, ...sync.stateProviders, traffic, counters],
      rpcProviders: [...sync.rpcProviders, ...traffic.rpcProviders()],
      attachNotify: (sink) => sync.attachNotify(sink),
      engine: { kind: engine.kind, workers: engine.workers },
      ...(metrics ? { metrics } : {}),
      close: unwind,
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}
