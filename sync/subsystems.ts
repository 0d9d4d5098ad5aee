// What a composition takes from sync/: the sync commit subsystem (to run after the fastpath and
// ha subsystems in a transaction, so every VRF exists in the engine and has its role before its
// sync starts), the state provider, the ha-fp-conntrack-synchronization RPC, and the notifications.
import type { CommitSubsystem, NotificationSink, RpcProvider, StateProvider } from '../core/subsystem.js';
import type { DataplaneEngine } from '../fastpath/engine.js';
import { SyncService, type SyncServiceOptions } from './sync-service.js';
import { toYangNotification } from './sync-notifications.js';
import { ManualSynchronizationRpc } from './sync-rpc.js';
import { SyncStateProvider } from './sync-state.js';
import { SyncSubsystem } from './sync-subsystem.js';

export interface SyncParts {
  subsystems: CommitSubsystem[];
  stateProviders: StateProvider[];
  rpcProviders: RpcProvider[];
  /** Route sync events to NETCONF notifications; returns a detach function. */
  attachNotify(sink: NotificationSink): () => void;
  service: SyncService;
  close(): Promise<void>;
}

export function createSyncParts(engine: DataplaneEngine, opts: SyncServiceOptions = {}): SyncParts {
  const service = new SyncService(engine, opts);
  return {
    subsystems: [new SyncSubsystem(service)],
    stateProviders: [new SyncStateProvider(service)],
    rpcProviders: [new ManualSynchronizationRpc(service)],
    attachNotify: (sink) => service.onNotification((n) => sink(toYangNotification(n))),
    service,
    close: () => service.close(),
  };
}
