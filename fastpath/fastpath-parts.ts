// What the agent composition takes from fastpath/: the commit subsystem (to run before the sync
// and ha subsystems, so every VRF exists in the engine before it gets a role) and the state
// provider of virtual-service tcpstat (engines that can count per virtual service).
import type { CommitSubsystem, StateProvider } from '../core/subsystem.js';
import type { DataplaneEngine } from './engine.js';
import { FastpathStateProvider, FastpathSubsystem, type VirtualServiceStatsSource } from './fastpath-subsystem.js';

export interface FastpathParts {
  subsystems: CommitSubsystem[];
  stateProviders: StateProvider[];
}

function countsVirtualServices(engine: DataplaneEngine): engine is DataplaneEngine & VirtualServiceStatsSource {
  const e = engine as Partial<VirtualServiceStatsSource>;
  return typeof e.virtualServiceStats === 'function' && typeof e.vrfNames === 'function';
}

export function createFastpathParts(engine: DataplaneEngine): FastpathParts {
  return {
    subsystems: [new FastpathSubsystem(engine)],
    stateProviders: countsVirtualServices(engine) ? [new FastpathStateProvider(engine)] : [],
  };
}
