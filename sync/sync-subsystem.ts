// Commit subsystem of HA conntrack synchronisation: every VRF's ha-fp-conntrack and ha-delays.
// It also listens to the parts of the configuration sync depends on but does not own alone (the
// pool size, the TCP undefined timeout, the firewall and CG-NAT fingerprint, the mirrored virtual
// services). VRRP (/vrf/vrrp, /vrf/interface/vrrp) belongs to ha/vrrp's subsystem; the HA role of each VRF comes from ha/ through core/ha-role.ts.
import type { CommitContext, CommitSubsystem, SubsystemError } from '../core/subsystem.js';
import { FASTPATH_OWNS } from '../fastpath/fastpath-subsystem.js';
import { readSyncConfigs, vrfEntries } from './sync-config.js';
import { checkSharedSecrets } from './shared-secret-policy.js';
import type { SyncService } from './sync-service.js';

export const SYNC_OWNS = [
  '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack',
  '/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/ha-delays',
];

/** Subtrees owned by the fastpath subsystem whose changes sync must also see (firewall/CG-NAT fingerprint, pool size, profiles). */
export const SYNC_WATCHES = FASTPATH_OWNS;

type Json = Record<string, unknown>;

function vrfPath(name: string): string {
  return `/tandem-vrf:vrf[name='${name}']`;
}

export class SyncSubsystem implements CommitSubsystem {
  readonly name = 'sync';
  readonly owns = [...SYNC_OWNS, ...SYNC_WATCHES];

  constructor(private readonly service: SyncService) {}

  validate(ctx: CommitContext): SubsystemError[] {
    const errors: SubsystemError[] = checkSharedSecrets(ctx.newConfig);
    for (const v of vrfEntries(ctx.newConfig)) {
      const name = String(v['name']);
      const ha = v['tandem-ha-fp-conntrack:ha-fp-conntrack'] as Json | undefined;
      if (!ha) continue;
      const seen = new Map<string, string>();
      for (const p of (Array.isArray(ha['peer']) ? ha['peer'] : []) as Json[]) {
        const address = String(p['address']);
        const other = seen.get(address);
        if (other !== undefined) {
          errors.push({
            message: `peers ${other} and ${String(p['name'])} have the same address ${address}; a peer is recognised by its address`,
            path: `${vrfPath(name)}/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='${String(p['name'])}']/address`,
          });
        }
        seen.set(address, String(p['name']));
        if (p['source'] === p['address']) {
          errors.push({ message: `peer ${String(p['name'])}: source and address are both ${address}`, path: `${vrfPath(name)}/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='${String(p['name'])}']` });
        }
      }
    }
    if (errors.length === 0) {
      try {
        readSyncConfigs(ctx.newConfig, this.service.engine.workers);
      } catch (err) {
        errors.push({ message: (err as Error).message });
      }
    }
    return errors;
  }

  /** Validate again, then bind the listener sockets the new configuration needs (port taken: refused). */
  async prepare(ctx: CommitContext): Promise<SubsystemError[]> {
    const errors = this.validate(ctx);
    if (errors.length) return errors;
    // At start the listeners bind at apply and retry there: the source address may come up later.
    if (ctx.startup) return [];
    try {
      await this.service.prepareSync(ctx.newConfig);
    } catch (err) {
      return [{ message: (err as Error).message, path: (err as { path?: string }).path }];
    }
    return [];
  }

  async apply(ctx: CommitContext): Promise<void> {
    await this.service.applySync(ctx.newConfig);
  }

  async abort(_ctx: CommitContext): Promise<void> {
    await this.service.abortSync();
  }

  async undo(ctx: CommitContext): Promise<void> {
    await this.service.abortSync();
    await this.service.applySync(ctx.oldConfig);
  }
}
