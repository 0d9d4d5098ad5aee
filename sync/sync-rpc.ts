// The ha-fp-conntrack-synchronization RPC (the seed's `cmd ha-fp-conntrack synchronization vrf X`):
// it starts a manual synchronisation on the master and answers at once; completion is logged and
// raised as the manual-synchronization-complete notification. With no sync connection up it is
// refused with an rpc-error (nothing could reach the peer).
import type { ConfigJson, RpcProvider } from '../core/subsystem.js';
import { NetconfError } from '../core/netconf-error.js';
import { logger } from '../core/log.js';
import type { SyncService } from './sync-service.js';

const log = logger('sync-rpc');

export class ManualSynchronizationRpc implements RpcProvider {
  readonly rpcPath = '/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization';

  constructor(private readonly service: SyncService) {}

  async invoke(input: ConfigJson): Promise<ConfigJson> {
    const vrf = input['vrf'];
    if (typeof vrf !== 'string') {
      throw new NetconfError('missing-element', 'protocol', 'ha-fp-conntrack-synchronization needs a vrf', { info: [{ name: 'bad-element', value: 'vrf' }] });
    }
    const vs = this.service.vrfs.get(vrf);
    if (!vs) {
      throw new NetconfError('invalid-value', 'application', `VRF ${vrf} has no ha-fp-conntrack configured`, { info: [{ name: 'bad-element', value: 'vrf' }] });
    }
    if (vs.role !== 'master') {
      throw new NetconfError('operation-failed', 'application',
        `VRF ${vrf} is backup (HA group ${vs.config.listenHaGroup}): run the synchronization on the master`);
    }
    const { up, down } = vs.connections();
    if (up.length === 0) {
      // Nothing would reach the peer: say so rather than "started" and a completion with count 0.
      throw new NetconfError('operation-failed', 'application',
        `VRF ${vrf}: no sync connection to the peer is up (${down.join(', ')}): nothing can be synchronised`,
        { appTag: 'no-sync-connection' });
    }
    this.service.manualSync(vrf).catch((err: Error) => log.error({ vrf, err: err.message }, 'manual synchronization failed'));
    const partial = down.length > 0 ? ` over ${up.length} of ${up.length + down.length} connections (not up: ${down.join(', ')})` : '';
    return { message: `Synchronization started${partial}, completion will appear in the log.` };
  }
}
