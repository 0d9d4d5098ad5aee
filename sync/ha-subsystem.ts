// Commit subsystem of /tandem-ha:ha: the static state of each HA group. Applying a changed state
// is a planned failover: every VRF listening to the group moves its dataplane and sync (rule 11).
import type { CommitContext, CommitSubsystem, SubsystemError } from '../core/subsystem.js';
import { readHaGroups } from './ha-groups.js';
import type { SyncService } from './sync-service.js';

export class HaSubsystem implements CommitSubsystem {
  readonly name = 'ha';
  readonly owns = ['/tandem-ha:ha'];

  constructor(private readonly service: SyncService) {}

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
    await this.service.applyHa(ctx.newConfig);
  }

  async abort(_ctx: CommitContext): Promise<void> {}

  async undo(ctx: CommitContext): Promise<void> {
    await this.service.applyHa(ctx.oldConfig);
  }
}
