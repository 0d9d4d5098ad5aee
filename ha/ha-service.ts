// The HA role of every VRF (rule 11): HA groups get their state from configuration (static) or
// VRRP; each VRF with ha-fp-conntrack follows its listen-ha-group. The role reaches the VRF's
// dataplane here, directly; sync and anything else hear it through core's VrfRoles contract.
import type { DataplaneEngine, HaRole } from '../fastpath/engine.js';
import type { VrfRoles } from '../core/ha-role.js';
import { logger } from '../core/log.js';
import { HaGroups, readHaGroups, type HaGroupChange } from './ha-groups.js';

const log = logger('ha');

type Json = Record<string, unknown>;

/** listen-ha-group of every VRF that has ha-fp-conntrack, by VRF name. */
export function readVrfGroups(config: Json): Map<string, string> {
  const out = new Map<string, string>();
  const vrfs = config['tandem-vrf:vrf'];
  for (const v of (Array.isArray(vrfs) ? vrfs : []) as Json[]) {
    const ha = v['tandem-ha-fp-conntrack:ha-fp-conntrack'] as Json | undefined;
    if (ha) out.set(String(v['name']), String(ha['listen-ha-group'] ?? ''));
  }
  return out;
}

export class HaService implements VrfRoles {
  readonly groups = new HaGroups();
  private vrfGroups = new Map<string, string>();
  private appliedRoles = new Map<string, HaRole>();
  private roleListeners = new Set<(vrf: string, role: HaRole) => void>();
  private groupListeners = new Set<(change: HaGroupChange) => void>();
  /** follow() runs one at a time (commits and VRRP events both call it). */
  private following: Promise<void> = Promise.resolve();

  constructor(readonly engine: DataplaneEngine) {
    this.groups.subscribe((change) => {
      for (const fn of this.groupListeners) fn(change);
    });
  }

  roleOf(vrf: string): HaRole {
    const group = this.vrfGroups.get(vrf);
    return group === undefined ? 'backup' : this.groups.state(group);
  }

  onVrfRole(fn: (vrf: string, role: HaRole) => void): () => void {
    this.roleListeners.add(fn);
    return () => this.roleListeners.delete(fn);
  }

  /** Every change of every group (for notifications); returns unsubscribe. */
  onGroupChange(fn: (change: HaGroupChange) => void): () => void {
    this.groupListeners.add(fn);
    return () => this.groupListeners.delete(fn);
  }

  /** Make /tandem-ha:ha and the VRFs' listen-ha-group of `config` live, then move every VRF to its role. */
  async apply(config: Json): Promise<void> {
    this.groups.apply(readHaGroups(config));
    this.vrfGroups = readVrfGroups(config);
    for (const vrf of [...this.appliedRoles.keys()]) if (!this.vrfGroups.has(vrf)) this.appliedRoles.delete(vrf);
    await this.follow();
  }

  /** Put each VRF's dataplane in its group's role, then tell the listeners (after a commit or a VRRP change). */
  follow(): Promise<void> {
    const run = this.following.then(async () => {
      for (const vrf of this.vrfGroups.keys()) {
        const role = this.roleOf(vrf);
        if (this.appliedRoles.get(vrf) === role) continue;
        try {
          await this.engine.setRole(vrf, role);
          this.appliedRoles.set(vrf, role);
        } catch (err) {
          log.error({ vrf, role, err: (err as Error).message }, 'dataplane could not change role');
          continue;
        }
        for (const fn of this.roleListeners) {
          try {
            fn(vrf, role);
          } catch (err) {
            log.error({ vrf, role, err: (err as Error).message }, 'role listener failed');
          }
        }
      }
    });
    this.following = run.catch(() => undefined);
    return run;
  }
}
