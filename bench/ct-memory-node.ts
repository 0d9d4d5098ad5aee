// One node of `npm run bench -- ct-memory`, in a process of its own so that its RSS is this node's
// only: a LinuxEngine on the namespace it is given, HaService and SyncService as in the agent.
// Driven by its parent over IPC (bench/ct-memory.ts): start, status, measure, close.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import { HaService } from '../ha/ha-service.js';
import { SyncService } from '../sync/sync-service.js';
import { labVrfConfig } from '../lab/lab-topology.js';

type Json = Record<string, unknown>;

export interface NodeStatus {
  ready: boolean;
  /** The engine's conntracks and synced conntracks of VRF main. */
  conntracks: number;
  synced: number;
  /** Sync: synced-count as the state data shows it (master: acknowledged by the peer; backup: held). */
  syncedCount: number;
  receive: number;
  receiveError: number;
}

export interface NodeMemory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export type NodeRequest =
  | { cmd: 'start'; namespace: string; name: string; config: Json }
  | { cmd: 'status' }
  | { cmd: 'measure' }
  | { cmd: 'close' };

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

let engine: LinuxEngine | undefined;
let sync: SyncService | undefined;

async function handle(req: NodeRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'start': {
      engine = new LinuxEngine({ namespaceOf: () => req.namespace });
      await engine.prepareVrf(labVrfConfig());
      await engine.applyVrf('main', labVrfConfig());
      const ha = new HaService(engine);
      sync = new SyncService(engine, { roles: ha, nodeId: req.name });
      await ha.apply(req.config);
      await sync.applySync(req.config);
      return { started: true };
    }
    case 'status': {
      const vrf = sync?.vrfs.get('main');
      const c = engine?.counters('main');
      const status: NodeStatus = {
        ready: sync?.ready() ?? false,
        conntracks: c?.conntracks ?? -1,
        synced: c?.synced ?? -1,
        syncedCount: vrf?.syncedCount() ?? -1,
        receive: vrf?.receive ?? -1,
        receiveError: vrf?.receiveError ?? -1,
      };
      return status;
    }
    case 'measure': {
      // Full collections (and a pause for the allocator to hand back what they freed).
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 200));
      }
      const m = process.memoryUsage();
      const memory: NodeMemory = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
      return memory;
    }
    case 'close': {
      await sync?.close().catch(() => undefined);
      await engine?.close();
      setImmediate(() => process.exit(0));
      return { closed: true };
    }
  }
}

process.on('message', (msg: { id: number; req: NodeRequest }) => {
  handle(msg.req).then((result) => process.send?.({ id: msg.id, result }),
    (err: Error) => process.send?.({ id: msg.id, error: err.stack ?? err.message }));
});
process.on('disconnect', () => process.exit(0));
