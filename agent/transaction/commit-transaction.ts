// The commit transaction: every subsystem whose subtrees changed gets the old and new configuration
// and runs validate, then prepare; if any fails, every one of them aborts and the commit is refused;
// otherwise all apply. Running only ever holds a configuration that every subsystem applied.
import { performance } from 'node:perf_hooks';
import { logger } from '../../core/log.js';
import { NetconfError } from '../../core/netconf-error.js';
import type { CommitContext, CommitSubsystem, ConfigJson, SubsystemError } from '../../core/subsystem.js';

const log = logger('transaction');

/** Several rpc-errors at once (the protocol layer reports each). */
export class NetconfErrorList extends Error {
  constructor(public readonly errors: NetconfError[]) {
    super(errors.map((e) => e.message).join('; '));
    this.name = 'NetconfErrorList';
  }
}

/** The JSON of the subtree(s) at a schema path; list levels fan out over their entries. */
export function extractSubtree(config: ConfigJson, schemaPath: string): unknown[] {
  const segments = schemaPath.split('/').filter(Boolean);
  let current: unknown[] = [config];
  let module = '';
  for (const seg of segments) {
    const [m, n] = seg.includes(':') ? seg.split(':', 2) : [module, seg];
    const member = m !== module ? `${m}:${n}` : n;
    module = m;
    const next: unknown[] = [];
    for (const c of current) {
      if (c === null || typeof c !== 'object') continue;
      const v = (c as Record<string, unknown>)[member];
      if (v === undefined) continue;
      if (Array.isArray(v)) next.push(...v);
      else next.push(v);
    }
    current = next;
  }
  return current;
}

function subsystemError(sub: CommitSubsystem, e: SubsystemError): NetconfError {
  return new NetconfError('operation-failed', 'application', `${sub.name}: ${e.message}`, { path: e.path, appTag: e.appTag });
}

/** A configuration as the transaction sees it; its JSON is only printed when a subsystem needs it. */
export interface CommitSide {
  readonly json: ConfigJson;
}

/** Plain RFC 7951 JSON is accepted too (its top-level members are always 'module:name'). */
function asSide(x: ConfigJson | CommitSide): CommitSide {
  return 'json' in x ? x as CommitSide : { json: x };
}

/** Schema path of a data path (predicates dropped), e.g. /tandem-vrf:vrf/tandem-firewall:firewall. */
export function schemaPathOf(dataPath: string): string {
  return dataPath.replace(/\[(?:[^\]'"]|'[^']*'|"[^"]*")*\]/g, '');
}

function overlaps(owned: string, changed: string): boolean {
  return changed === owned || changed.startsWith(`${owned}/`) || owned.startsWith(`${changed}/`) || changed === '/';
}

export class CommitTransaction {
  private nextId = 1;

  constructor(private readonly subsystems: CommitSubsystem[]) {}

  /**
   * Subsystems whose owned subtrees differ between the two configurations: decided from the
   * changed data paths when the caller knows them, else by comparing the JSON of each subtree.
   */
  concerned(oldConfig: ConfigJson | CommitSide, newConfig: ConfigJson | CommitSide, changedPaths?: string[]): CommitSubsystem[] {
    if (this.subsystems.length === 0) return [];
    const oldSide = asSide(oldConfig);
    const newSide = asSide(newConfig);
    if (changedPaths) {
      const changed = changedPaths.map(schemaPathOf);
      return this.subsystems.filter((s) => s.owns.some((p) => changed.some((c) => overlaps(p, c))));
    }
    return this.subsystems.filter((s) => s.owns.some((p) =>
      JSON.stringify(extractSubtree(oldSide.json, p)) !== JSON.stringify(extractSubtree(newSide.json, p))));
  }

  /** Validate only (no side effects); throws NetconfErrorList. */
  async validate(oldConfig: ConfigJson | CommitSide, newConfig: ConfigJson | CommitSide): Promise<void> {
    const oldSide = asSide(oldConfig);
    const newSide = asSide(newConfig);
    const subs = this.concerned(oldSide, newSide);
    if (subs.length === 0) return;
    const ctx: CommitContext = { id: 0, oldConfig: oldSide.json, newConfig: newSide.json };
    const errors: NetconfError[] = [];
    for (const sub of subs) {
      for (const e of await sub.validate(ctx)) errors.push(subsystemError(sub, e));
    }
    if (errors.length) throw new NetconfErrorList(errors);
  }

  /** Run the whole transaction; throws NetconfErrorList when nothing was applied. */
  async run(oldConfig: ConfigJson | CommitSide, newConfig: ConfigJson | CommitSide, changedPaths?: string[]): Promise<void> {
    const oldSide = asSide(oldConfig);
    const newSide = asSide(newConfig);
    const subs = this.concerned(oldSide, newSide, changedPaths);
    if (subs.length === 0) return;
    const started = performance.now();
    const ctx: CommitContext = { id: this.nextId++, oldConfig: oldSide.json, newConfig: newSide.json, changedPaths };
    const jsonMs = Math.round(performance.now() - started);
    log.info({ tx: ctx.id, subsystems: subs.map((s) => s.name) }, 'commit transaction');
    const errors: NetconfError[] = [];
    for (const sub of subs) {
      for (const e of await sub.validate(ctx)) errors.push(subsystemError(sub, e));
    }
    if (errors.length) throw new NetconfErrorList(errors);
    for (const sub of subs) {
      try {
        for (const e of await sub.prepare(ctx)) errors.push(subsystemError(sub, e));
      } catch (err) {
        errors.push(subsystemError(sub, { message: err instanceof Error ? err.message : String(err) }));
      }
      if (errors.length) break;
    }
    if (errors.length) {
      log.warn({ tx: ctx.id, errors: errors.map((e) => e.message) }, 'prepare failed, aborting on every subsystem');
      for (const sub of subs) {
        try {
          await sub.abort(ctx);
        } catch (err) {
          log.error({ tx: ctx.id, subsystem: sub.name, err }, 'abort failed');
        }
      }
      throw new NetconfErrorList(errors);
    }
    for (const sub of subs) {
      try {
        await sub.apply(ctx);
      } catch (err) {
        // apply must not fail; if it does anyway the others still apply and the fault is logged.
        log.error({ tx: ctx.id, subsystem: sub.name, err }, 'apply failed');
      }
    }
    log.info({ tx: ctx.id, jsonMs, ms: Math.round(performance.now() - started) }, 'commit applied');
  }
}
