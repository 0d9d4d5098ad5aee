// The commit transaction: every subsystem whose subtrees changed gets the old and new configuration
// and only the changes under its own paths, and runs validate, then prepare; if any fails, every one
// of them aborts and the commit is refused. Then all apply in order; if one apply fails, it and
// every subsystem applied before it undo (put the old configuration back, in reverse order) and the
// commit is refused with operation-failed naming the subsystem and path. Running only ever holds a
// configuration that every subsystem applied. Work that must succeed with the applies (the durable
// save of running) runs alongside them, not after them: it starts with the transaction when it can
// be taken back (a journal record), else once every prepare passed; the transaction waits for both,
// and if either failed the other is undone before the commit is refused (all or nothing).
import { performance } from 'node:perf_hooks';
import { logger } from '../../core/log.js';
import { NetconfError } from '../../core/netconf-error.js';
import { SubsystemApplyError, type CommitContext, type CommitFaultHooks, type CommitSubsystem, type ConfigChange, type ConfigJson, type SubsystemError } from '../../core/subsystem.js';
import { schemaPathOf, touches } from './config-changes.js';
import { batchOf, isFailure, type PhaseMethod, type PhaseOutcome } from './phase-batch.js';

export { schemaPathOf } from './config-changes.js';

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

/** The changes as data paths only (changedPaths of a CommitContext). */
function pathsOf(changes: ConfigChange[] | string[]): ConfigChange[] {
  // Bare paths say nothing of what happened: taken as creates, which concern every subtree below them.
  return changes.map((c) => (typeof c === 'string' ? { operation: 'create', path: c, schemaPath: schemaPathOf(c) } : c));
}

/**
 * Work run while the subsystems apply (the commit's durable save): started once every subsystem
 * prepared, or already under way when the transaction starts (`startsWithTransaction`); undone when
 * the commit is refused after it succeeded.
 */
export interface AlongsideApply {
  /** It runs before the subsystems validated: a refusal undoes it before the commit is answered. */
  readonly startsWithTransaction?: boolean;
  run(): Promise<void>;
  undo(): Promise<void>;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class CommitTransaction {
  private nextId = 1;

  constructor(private readonly subsystems: CommitSubsystem[], private readonly faults: CommitFaultHooks = {}) {}

  /**
   * Subsystems whose owned subtrees differ between the two configurations: decided from the
   * commit's changes when the caller knows them, else by comparing the JSON of each subtree.
   */
  concerned(oldConfig: ConfigJson | CommitSide, newConfig: ConfigJson | CommitSide, changes?: ConfigChange[] | string[]): CommitSubsystem[] {
    if (this.subsystems.length === 0) return [];
    if (changes) {
      const all = pathsOf(changes);
      return this.subsystems.filter((s) => s.owns.some((p) => all.some((c) => touches(p, c))));
    }
    const oldSide = asSide(oldConfig);
    const newSide = asSide(newConfig);
    return this.subsystems.filter((s) => s.owns.some((p) =>
      JSON.stringify(extractSubtree(oldSide.json, p)) !== JSON.stringify(extractSubtree(newSide.json, p))));
  }

  /** The context one subsystem sees: the changes under its own paths only. */
  private contextFor(sub: CommitSubsystem, base: CommitContext, changes: ConfigChange[] | undefined): CommitContext {
    if (!changes) return base;
    const own = changes.filter((c) => sub.owns.some((p) => touches(p, c)));
    return { ...base, changes: own, changedPaths: own.map((c) => c.path) };
  }

  /** Validate only (no side effects); throws NetconfErrorList. */
  async validate(oldConfig: ConfigJson | CommitSide, newConfig: ConfigJson | CommitSide, changes?: ConfigChange[]): Promise<void> {
    const oldSide = asSide(oldConfig);
    const newSide = asSide(newConfig);
    const subs = this.concerned(oldSide, newSide, changes);
    if (subs.length === 0) return;
    const ctx: CommitContext = { id: 0, oldConfig: oldSide.json, newConfig: newSide.json };
    const errors: NetconfError[] = [];
    for (const sub of subs) {
      for (const e of await sub.validate(this.contextFor(sub, ctx, changes))) errors.push(subsystemError(sub, e));
    }
    if (errors.length) throw new NetconfErrorList(errors);
  }

  /**
   * Run the whole transaction; throws NetconfErrorList when nothing stays applied. `changes` (data
   * paths, or ConfigChanges) are the commit's changes when known.
   */
  async run(oldConfig: ConfigJson | CommitSide, newConfig: ConfigJson | CommitSide, changes?: ConfigChange[] | string[],
    opts: { startup?: boolean; alongside?: AlongsideApply } = {}): Promise<void> {
    const oldSide = asSide(oldConfig);
    const newSide = asSide(newConfig);
    const all = changes ? pathsOf(changes) : undefined;
    const subs = this.concerned(oldSide, newSide, all);
    if (subs.length === 0) {
      if (opts.alongside) await this.alongsideAlone(opts.alongside);
      return;
    }
    const started = performance.now();
    const base: CommitContext = { id: this.nextId++, oldConfig: oldSide.json, newConfig: newSide.json, ...(opts.startup ? { startup: true } : {}) };
    const contexts = new Map(subs.map((s) => [s, this.contextFor(s, base, all)]));
    // When each step ended, in ms since the transaction started (the 'commit applied' line): what awaits what.
    const at = (): number => Math.round((performance.now() - started) * 100) / 100;
    const timeline: Record<string, number> = { contexts: at() };
    const jsonMs = Math.round(timeline.contexts!);
    // Debug: the 'commit applied' line says the same once it is done (one line per commit at info).
    log.debug({ tx: base.id, subsystems: subs.map((s) => s.name), changes: all?.length }, 'commit transaction');
    const errors: NetconfError[] = [];
    // Where a commit's time goes, per subsystem and phase (ms), in the 'commit applied' log line
    // (for subsystems run together in the plane worker, the time each took there).
    const phases: Record<string, Record<string, number>> = {};
    // The durable save runs in parallel with the subsystems, settled before the answer. One that
    // started with the commit (a journal record, which can be taken back) is awaited from here: its
    // disk flush overlaps libyang's validation and the plane's validate, prepare and apply (issue 8:
    // the flush and the round trip to the plane were the commit's two longest waits, one after the
    // other). Any other starts on the next turn of the event loop once every prepare passed.
    const alongside = opts.alongside;
    const early = !!alongside?.startsWithTransaction;
    let along: Promise<unknown> | undefined;
    const startAlong = (): void => {
      if (!early) timeline.prepared ??= at();
      along ??= alongside
        ? (early ? Promise.resolve() : new Promise<void>((r) => setImmediate(r))).then(() => {
          // An early save started before the transaction: no start to stamp here.
          if (!early) timeline.saveStarted = at();
          return alongside.run();
        }).then(() => {
          timeline.saved = at();
          return undefined;
        }, (err: unknown) => err ?? new Error('failed'))
        : undefined;
    };
    // A commit refused before its applies: the save already started is taken back first.
    const refuse = async (err: Error): Promise<never> => {
      if (along && alongside) await this.undoAlongside(alongside, along, base.id);
      throw err;
    };
    // Subsystems that all live in the plane worker: the whole commit in one round trip (validate,
    // prepare, apply), or validate and prepare in one when a test's fault hook runs between phases.
    const batch = batchOf(subs[0]!);
    const batched = subs.every((s) => batchOf(s) === batch);
    const calls = subs.map((sub) => ({ sub, ctx: contexts.get(sub)! }));
    const wholeCommit = batch?.validatePrepareApply && batched && !this.faults.afterPrepare && !this.faults.beforeApply;
    const posted = wholeCommit
      ? batch.validatePrepareApply!(calls, early ? undefined : startAlong)
      : batch?.validateThenPrepare && batched ? batch.validateThenPrepare(calls) : undefined;
    if (early) startAlong();
    // The plane did not answer (it ended): a save already started is taken back, nothing stays.
    const together: { validate: PhaseOutcome[]; prepare?: PhaseOutcome[]; apply?: PhaseOutcome[] } | undefined =
      posted ? await posted.catch(async (err: unknown) => refuse(err instanceof Error ? err : new Error(String(err)))) : undefined;
    if (together) timeline.planeAnswered = at();
    const named = (method: PhaseMethod, outcomes: PhaseOutcome[]) => outcomes.map((outcome, k) => {
      const sub = subs[k]!;
      (phases[sub.name] ??= {})[method] = Math.round(outcome.ms * 10) / 10;
      return { sub, outcome };
    });
    const validated = together ? named('validate', together.validate) : await this.phase('validate', subs, contexts, false, phases);
    for (const { sub, outcome } of validated) {
      if ('error' in outcome) return refuse(outcome.error);
      for (const e of outcome.value as SubsystemError[]) errors.push(subsystemError(sub, e));
    }
    if (errors.length) return refuse(new NetconfErrorList(errors));
    const prepared = together?.prepare ? named('prepare', together.prepare) : await this.phase('prepare', subs, contexts, true, phases);
    for (const { sub, outcome } of prepared) {
      if ('error' in outcome) errors.push(subsystemError(sub, { message: message(outcome.error) }));
      else for (const e of outcome.value as SubsystemError[]) errors.push(subsystemError(sub, e));
    }
    if (!errors.length && this.faults.afterPrepare) {
      try {
        await this.faults.afterPrepare(base);
      } catch (err) {
        errors.push(new NetconfError('operation-failed', 'application', `fault injection: ${message(err)}`));
      }
    }
    if (errors.length) {
      log.warn({ tx: base.id, errors: errors.map((e) => e.message) }, 'prepare failed, aborting on every subsystem');
      await this.abortAll(subs, contexts, base.id);
      return refuse(new NetconfErrorList(errors));
    }
    let applies: { sub: CommitSubsystem; outcome: PhaseOutcome }[];
    if (together?.apply) {
      applies = named('apply', together.apply);
    } else {
      const posted = this.phase('apply', subs, contexts, true, phases, this.faults.beforeApply);
      startAlong();
      applies = await posted;
    }
    const failed = applies.find((a) => 'error' in a.outcome);
    const applied = applies.filter((a) => a !== failed).map((a) => a.sub);
    if (failed) {
      const sub = failed.sub;
      const err = (failed.outcome as { error: Error }).error;
      const path = err instanceof SubsystemApplyError ? err.path : undefined;
      log.error({ tx: base.id, subsystem: sub.name, path, err: message(err) }, 'apply failed: undoing the subsystems applied so far');
      // The failed subsystem may have applied part of its change; the others not yet applied hold staged work.
      await this.abortAll(subs.filter((s) => s !== sub && !applied.includes(s)), contexts, base.id);
      const undone = await this.undoAll([...applied, sub].reverse(), contexts, base.id);
      const unsaved = alongside ? await this.undoAlongside(alongside, along!, base.id) : true;
      const fate = undone && unsaved ? 'the previous configuration is back in place' : 'undoing it failed too, see the log';
      throw new NetconfErrorList([new NetconfError('operation-failed', 'application',
        `${sub.name}: apply failed${path ? ` at ${path}` : ''}: ${message(err)}; commit refused, ${fate}`, { path })]);
    }
    const alongErr = along ? await along : undefined;
    if (alongErr !== undefined) {
      log.error({ tx: base.id, err: message(alongErr) }, 'saving running failed: undoing the applies');
      const undone = await this.undoAll([...applied].reverse(), contexts, base.id);
      const fate = undone ? 'the previous configuration is back in place' : 'undoing the applies failed, see the log';
      throw new NetconfErrorList([new NetconfError('operation-failed', 'application',
        `running could not be saved: ${message(alongErr)}; commit refused, ${fate}`)]);
    }
    log.info({ tx: base.id, subsystems: subs.map((s) => s.name), changes: all?.length, jsonMs, ms: Math.round(performance.now() - started), phases, timeline }, 'commit applied');
  }

  /** The alongside work of a commit that concerns no subsystem: it alone decides. */
  private async alongsideAlone(alongside: AlongsideApply): Promise<void> {
    try {
      await alongside.run();
    } catch (err) {
      throw new NetconfErrorList([new NetconfError('operation-failed', 'application', `running could not be saved: ${message(err)}; commit refused`)]);
    }
  }

  /** Wait for the alongside work and undo it if it succeeded; false if undoing failed. */
  private async undoAlongside(alongside: AlongsideApply, along: Promise<unknown>, tx: number): Promise<boolean> {
    if ((await along) !== undefined) return true; // it failed by itself: nothing to undo
    try {
      await alongside.undo();
      return true;
    } catch (err) {
      log.error({ tx, err: message(err) }, 'undoing the save of running failed');
      return false;
    }
  }

  /**
   * `method` on each subsystem in order; consecutive subsystems that share a PhaseBatch (the plane
   * worker's) run in one call. With stopOnFailure none runs after the first that fails (throws, or
   * returns errors). With `before` (a test's fault hook) each runs alone, after the hook; a hook
   * that throws is that subsystem's failure.
   */
  private async phase(method: PhaseMethod, subs: CommitSubsystem[], contexts: Map<CommitSubsystem, CommitContext>, stopOnFailure: boolean,
    phases: Record<string, Record<string, number>>, before?: (subsystem: string, ctx: CommitContext) => void | Promise<void>): Promise<{ sub: CommitSubsystem; outcome: PhaseOutcome }[]> {
    const out: { sub: CommitSubsystem; outcome: PhaseOutcome }[] = [];
    let i = 0;
    while (i < subs.length) {
      const batch = before ? undefined : batchOf(subs[i]!);
      let j = i + 1;
      if (batch) while (j < subs.length && batchOf(subs[j]!) === batch) j++;
      const group = subs.slice(i, j);
      let outcomes: PhaseOutcome[];
      if (batch && group.length > 1) {
        outcomes = await batch.run(method, group.map((sub) => ({ sub, ctx: contexts.get(sub)! })), stopOnFailure);
      } else {
        const sub = group[0]!;
        const ctx = contexts.get(sub)!;
        const t = performance.now();
        try {
          await before?.(sub.name, ctx);
          const call = sub[method] as (ctx: CommitContext) => unknown;
          outcomes = [{ value: await call.call(sub, ctx), ms: performance.now() - t }];
        } catch (err) {
          outcomes = [{ error: err instanceof Error ? err : new Error(String(err)), ms: performance.now() - t }];
        }
      }
      let failed = false;
      outcomes.forEach((outcome, k) => {
        const sub = group[k]!;
        (phases[sub.name] ??= {})[method] = Math.round(outcome.ms * 10) / 10;
        out.push({ sub, outcome });
        if (isFailure(outcome)) failed = true;
      });
      if (stopOnFailure && failed) break;
      i = j;
    }
    return out;
  }

  private async abortAll(subs: CommitSubsystem[], contexts: Map<CommitSubsystem, CommitContext>, tx: number): Promise<void> {
    for (const sub of subs) {
      try {
        await sub.abort(contexts.get(sub)!);
      } catch (err) {
        log.error({ tx, subsystem: sub.name, err: message(err) }, 'abort failed');
      }
    }
  }

  /** Undo in the order given; false if any undo failed. */
  private async undoAll(subs: CommitSubsystem[], contexts: Map<CommitSubsystem, CommitContext>, tx: number): Promise<boolean> {
    let ok = true;
    for (const sub of subs) {
      try {
        if (!sub.undo) throw new Error('this subsystem cannot undo an apply');
        await sub.undo(contexts.get(sub)!);
        log.info({ tx, subsystem: sub.name }, 'apply undone');
      } catch (err) {
        ok = false;
        log.error({ tx, subsystem: sub.name, err: message(err) }, 'undo failed');
      }
    }
    return ok;
  }
}
