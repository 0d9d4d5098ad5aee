// HA and sync composed for an agent: the HA service (groups, each VRF's role, its dataplane's role)
// and sync following it through core's VrfRoles. Subsystems in transaction order: ha (roles of the
// VRFs fastpath just created), then sync (which starts each VRF in its role). VRRP is added by
// createVrrp (ha/vrrp) on the same HA service.
import type { CommitSubsystem, NotificationSink, RpcProvider, StateProvider } from '../core/subsystem.js';
import type { DataplaneEngine } from '../fastpath/engine.js';
import type { SyncService, SyncServiceOptions } from '../sync/sync-service.js';
import { createSyncParts } from '../sync/subsystems.js';
import { HaService } from './ha-service.js';
import { groupStateChangeNotification, HaStateProvider } from './ha-state.js';
import { HaSubsystem } from './ha-subsystem.js';

export interface HaSyncParts {
  subsystems: CommitSubsystem[];
  stateProviders: StateProvider[];
  rpcProviders: RpcProvider[];
  /** Route HA and sync events to NETCONF notifications; returns a detach function. */
  attachNotify(sink: NotificationSink): () => void;
  ha: HaService;
  service: SyncService;
  close(): Promise<void>;
}

/** Kept as SyncParts for the compositions that used sync/'s former one. */
export type SyncParts = HaSyncParts;

export function createSubsystems(engine: DataplaneEngine, opts: Omit<SyncServiceOptions, 'roles'> = {}): HaSyncParts {
  const ha = new HaService(engine);
  const sync = createSyncParts(engine, { ...opts, roles: ha });
  return {
    subsystems: [new HaSubsystem(ha), ...sync.subsystems],
    stateProviders: [new HaStateProvider(ha.groups), ...sync.stateProviders],
    rpcProviders: sync.rpcProviders,
    attachNotify: (sink) => {
      const detachHa = ha.onGroupChange((c) => sink(groupStateChangeNotification(c)));
      const detachSync = sync.attachNotify(sink);
      return () => {
        detachHa();
        detachSync();
      };
    },
    ha,
    service: sync.service,
    close: () => sync.close(),
  };
}
