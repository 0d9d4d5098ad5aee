// The messages between the agent's main thread and the plane (normally a worker thread; a
// MessageChannel in one thread for tests). Everything is structured-clone data.
import type { ChangeOperation, ConfigJson } from '../../core/subsystem.js';
import type { ShippedConfig } from './config-shipping.js';
import type { WireError } from './plane-errors.js';
import type { PhaseMethod } from '../transaction/phase-batch.js';

/** What the plane serves, as the main side builds its proxies from it. */
export interface PlaneManifest {
  subsystems: { name: string; owns: string[]; undo: boolean }[];
  stateProviders: { name: string; paths?: string[] }[];
  rpcProviders: { rpcPath: string }[];
  engine: { kind: string; workers: number };
  /** Where the OpenMetrics endpoint listens, when asked for. */
  metrics?: { host: string; port: number };
}

/** A CommitContext with its configurations shipped (see config-shipping.ts). */
export interface WireCommitContext {
  id: number;
  oldConfig: ShippedConfig;
  newConfig: ShippedConfig;
  changedPaths?: string[];
  changes?: { operation: ChangeOperation; path: string; schemaPath: string }[];
  startup?: boolean;
  /** Any other member a newer CommitContext carries (plain data). */
  [more: string]: unknown;
}

export type SubsystemMethod = 'validate' | 'prepare' | 'apply' | 'abort' | 'undo';

export type { PhaseMethod } from '../transaction/phase-batch.js';

/** One subsystem's outcome in a phase batch: its value, or its error; and how long it took (ms). */
export type PhaseOutcomeWire = { v: unknown; ms: number } | { e: WireError; ms: number };

export type PlaneRequest =
  | { t: 'subsystem'; id: number; index: number; method: SubsystemMethod; ctx: WireCommitContext }
  /**
   * One phase on several subsystems, in order, in one round trip; with stopOnFailure, the first
   * that fails (throws, or returns errors) is the last run. Answered with PhaseOutcomeWire[].
   */
  | { t: 'phase'; id: number; method: PhaseMethod; stopOnFailure: boolean; calls: { index: number; ctx: WireCommitContext }[] }
  /** validate on each subsystem, then prepare (only if no validate failed): answered with { validate, prepare? }. */
  | { t: 'validate-prepare'; id: number; calls: { index: number; ctx: WireCommitContext }[] }
  /**
   * A whole commit in one request: validate, prepare (only if no validate failed), apply (only if
   * every prepare passed, stopping at the first that fails). With `progress`, once every prepare
   * passed and before apply runs, a 'progress' message is posted (the main thread starts a save
   * that must wait for the prepares then); answered with { validate, prepare?, apply? }.
   */
  | { t: 'validate-prepare-apply'; id: number; calls: { index: number; ctx: WireCommitContext }[]; progress: boolean }
  | { t: 'state'; id: number; index: number }
  | { t: 'rpc'; id: number; index: number; input: ConfigJson }
  /** A full GC of the plane's isolate (after a large removal): answered with its heap sizes before and after. */
  | { t: 'gc'; id: number }
  | { t: 'close'; id: number };

export type PlaneMessage =
  | { t: 'ready'; manifest: PlaneManifest }
  | { t: 'failed'; error: WireError }
  | { t: 'result'; id: number; value: unknown }
  /** A request still running has passed a step (validate-prepare-apply: every prepare passed). */
  | { t: 'progress'; id: number }
  | { t: 'error'; id: number; error: WireError }
  | { t: 'notify'; notification: ConfigJson };
