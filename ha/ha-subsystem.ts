// Commit subsystem of /tandem-ha:ha (the static state of each HA group) and of each VRF's
// listen-ha-group: applying a changed state is a planned failover, every VRF listening to the
// group moves its dataplane, and sync follows (rule 11).
import type { CommitContext, CommitSubsystem, SubsystemError } from '../core/subsystem.js';
import { readHaGroups } from './ha-groups.js';
import type { HaService } from './ha-service.js';

export const HA_OWNS = ['/tandem-ha:ha', '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/listen-ha-group'];

export class HaSubsystem implements CommitSubsystem {
  readonly name = 'ha';
  readonly owns = HA_OWNS;

  constructor(private readonly service: HaService) {}

  validate(ctx: CommitContext): SubsystemError[] {
    try {
      readHaGroups(ctx.newConfig);
      return [];
    } catch (err) {
      return [{ message: (err as Error).message, path: '/tandem-ha:ha' }];
    }
  }

  async prepare(ctx: CommitContext): Promise<SubsystemError[]> {
    return this.validate(ctx);
  }

  async apply(ctx: CommitContext): Promise<void> {
    await this.service.apply(ctx.newConfig);
  }

  async abort(_ctx: CommitContext): Promise<void> {}

  async undo(ctx: CommitContext): Promise<void> {
    await this.service.apply(ctx.oldConfig);
  }
}
