// Subsystems that live in another thread (the plane worker) can run one phase of a commit together:
// one message and one reply for validate, prepare or apply of all of them, instead of one round
// trip per subsystem and phase (issue 8, commit latency: each crossing of the thread boundary is a
// wake-up of another thread, which costs most when the machine is loaded).
import type { CommitContext, CommitSubsystem } from '../../core/subsystem.js';

export type PhaseMethod = 'validate' | 'prepare' | 'apply';

/** One subsystem's outcome: the value its method returned, or the error it threw; and its time (ms). */
export type PhaseOutcome = { value: unknown; ms: number } | { error: Error; ms: number };

export interface PhaseBatch {
  /**
   * `method` on each subsystem in order. With stopOnFailure, the first that fails (throws, or
   * returns a non-empty list of errors) is the last run: the outcomes are those of the ones run.
   */
  run(method: PhaseMethod, calls: { sub: CommitSubsystem; ctx: CommitContext }[], stopOnFailure: boolean): Promise<PhaseOutcome[]>;
  /**
   * validate on each subsystem; then, only if none failed, prepare on each in order, stopping at the
   * first that fails: the two first phases of a commit in one round trip.
   */
  validateThenPrepare?(calls: { sub: CommitSubsystem; ctx: CommitContext }[]): Promise<{ validate: PhaseOutcome[]; prepare?: PhaseOutcome[] }>;
  /**
   * validateThenPrepare, then, only if every prepare passed, apply on each in order, stopping at
   * the first that fails: a whole commit in one round trip. `prepared`, when given, is called once
   * every prepare passed, before the applies' outcomes are known.
   */
  validatePrepareApply?(calls: { sub: CommitSubsystem; ctx: CommitContext }[], prepared?: () => void): Promise<{ validate: PhaseOutcome[]; prepare?: PhaseOutcome[]; apply?: PhaseOutcome[] }>;
}

/** Whether an outcome stops a phase: an error thrown, or errors returned. */
export function isFailure(o: PhaseOutcome): boolean {
  return 'error' in o || (Array.isArray(o.value) && o.value.length > 0);
}

/** A subsystem that can be batched with the others carrying the same PhaseBatch. */
export interface BatchableSubsystem extends CommitSubsystem {
  readonly batch?: PhaseBatch;
}

export function batchOf(sub: CommitSubsystem): PhaseBatch | undefined {
  return (sub as BatchableSubsystem).batch;
}
