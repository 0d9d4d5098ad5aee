// Commit subsystem of the VRRP configuration (/tandem-vrf:vrf/vrrp and interface/vrrp): validate
// reads it, prepare has keepalived check the rendered files in their namespaces, apply starts,
// reloads or stops the keepalived of each VRF.
import type { CommitContext, CommitSubsystem, SubsystemError } from '../../core/subsystem.js';
import type { HaGroups } from '../ha-groups.js';
import type { HaService } from '../ha-service.js';
import { readVrrpConfigs, VrrpConfigError, type VrfVrrpConfig } from './keepalived-config.js';
import { VrrpController, type VrrpControllerOptions } from './vrrp-controller.js';
import { VRRP_THREAD_NICE } from './thread-priority.js';

export const VRRP_OWNS = ['/tandem-vrf:vrf/vrrp', '/tandem-vrf:vrf/interface'];

function read(config: Record<string, unknown>): VrfVrrpConfig[] | SubsystemError[] {
  try {
    return readVrrpConfigs(config);
  } catch (err) {
    if (err instanceof VrrpConfigError) return [{ message: err.message, path: err.path }];
    return [{ message: (err as Error).message }];
  }
}

function isErrors(x: VrfVrrpConfig[] | SubsystemError[]): x is SubsystemError[] {
  return x.length > 0 && 'message' in (x[0] as object);
}

export class VrrpSubsystem implements CommitSubsystem {
  readonly name = 'vrrp';
  readonly owns = VRRP_OWNS;

  constructor(readonly controller: VrrpController) {}

  validate(ctx: CommitContext): SubsystemError[] {
    const r = read(ctx.newConfig);
    return isErrors(r) ? r : [];
  }

  async prepare(ctx: CommitContext): Promise<SubsystemError[]> {
    const r = read(ctx.newConfig);
    if (isErrors(r)) return r;
    return this.controller.check(r);
  }

  async apply(ctx: CommitContext): Promise<void> {
    const r = read(ctx.newConfig);
    // prepare already refused bad input; apply must not fail.
    if (!isErrors(r)) await this.controller.apply(r);
  }

  async abort(_ctx: CommitContext): Promise<void> {}

  async undo(ctx: CommitContext): Promise<void> {
    const r = read(ctx.oldConfig);
    if (!isErrors(r)) await this.controller.apply(r);
  }
}

export interface VrrpParts {
  subsystem: VrrpSubsystem;
  controller: VrrpController;
  close(): Promise<void>;
}

/** /tandem-ha:ha as HaGroups holds it now: static groups with their state, the others without. */
export function currentHaConfig(groups: HaGroups): Record<string, unknown> {
  const group = groups.list().map((g) => (g.controller === 'static' ? { name: g.name, state: g.state } : { name: g.name }));
  return { 'tandem-ha:ha': { group } };
}

/**
 * VRRP wired to the HA service: instance states set the groups' states, and every VRF (its
 * dataplane, then its sync) follows each change, as after a commit of /ha. The thread runs at
 * VRRP_THREAD_NICE once keepalived runs, unless `threadNice` says otherwise (undefined: unchanged).
 */
export function createVrrp(service: HaService, opts: Omit<VrrpControllerOptions, 'afterGroupChange'> = {}): VrrpParts {
  const threadNice = 'threadNice' in opts ? opts.threadNice : VRRP_THREAD_NICE;
  const controller = new VrrpController(service.groups, { ...opts, threadNice, afterGroupChange: () => service.follow() });
  return { subsystem: new VrrpSubsystem(controller), controller, close: () => controller.close() };
}
