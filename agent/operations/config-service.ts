// The state the operations share: datastores, locks, the commit transaction, sessions and the
// notification stream, and the one primitive that changes running (validate, transaction, save).
import { appendFileSync, existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { YangContext } from '../../yang/libyang/api.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import { renewLibyangIfOversized } from '../datastore/libyang-renewal.js';
import { ConfigStore, existsAt, type DatastoreName, type ValidatedConfig } from '../datastore/config-store.js';
import type { ConfigRoot } from '../datastore/config-tree.js';
import type { EditChange, LyOp } from '../datastore/edit-config.js';
import { SchemaIndex } from '../datastore/schema-index.js';
import { toNetconfErrors } from '../datastore/yang-errors.js';
import { CommitTransaction, NetconfErrorList } from '../transaction/commit-transaction.js';
import { CommitSave } from '../transaction/commit-save.js';
import type { CommitFaultHooks, CommitSubsystem, ConfigChange, RpcProvider, StateProvider } from '../../core/subsystem.js';
import { changesFromDiff, changesFromOps } from '../transaction/config-changes.js';
import { SessionRegistry } from '../monitoring/session-registry.js';
import { NotificationHub } from '../notifications/notification-hub.js';
import { configChangeEvent, type ChangedBy } from '../notifications/netconf-events.js';

const log = logger('operations');

/**
 * Above this many path operations a commit parses the new configuration instead of editing
 * running's tree: libyang finds top-level list entries by a linear search of the siblings (only
 * inner nodes have hash tables), so thousands of path operations on a top-level list cost
 * quadratic time (3,005 new profiles: about 1 s in place against 0.25 s for a full parse).
 */
const IN_PLACE_MAX_OPS = 256;
/** A small running.xml is folded once no commit came for this long (ms). */
export const FOLD_IDLE_MS = 200;

export interface DatastoreLock {
  sessionId: number;
  since: string;
}

/** Throw a list of errors as one (one error stays a NetconfError). */
export function throwErrors(errors: NetconfError[]): never {
  if (errors.length === 1) throw errors[0];
  throw new NetconfErrorList(errors);
}

/** Run libyang work, turning its exceptions into rpc-errors. */
export function yangCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throwErrors(toNetconfErrors(err));
  }
}

export class ConfigService {
  readonly schema: SchemaIndex;
  readonly store: ConfigStore;
  readonly transaction: CommitTransaction;
  readonly locks = new Map<DatastoreName, DatastoreLock>();
  readonly sessions = new SessionRegistry();
  readonly hub = new NotificationHub();
  /** Serialises every operation that reads or writes datastores. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly yang: YangContext,
    stateDir: string,
    subsystems: CommitSubsystem[],
    readonly stateProviders: StateProvider[],
    readonly rpcProviders: RpcProvider[],
    faults?: CommitFaultHooks,
  ) {
    this.schema = new SchemaIndex(yang);
    this.store = new ConfigStore(yang, this.schema, stateDir);
    this.transaction = new CommitTransaction(subsystems, faults);
  }

  private readonly listKeys = new Map<string, string[]>();

  /** Keys of the list at a schema path (empty for anything else); cached. */
  private keysOf = (schemaPath: string): string[] => {
    let keys = this.listKeys.get(schemaPath);
    if (!keys) {
      const i = schemaPath.lastIndexOf('/');
      const parent = i <= 0 ? '/' : schemaPath.slice(0, i);
      keys = this.schema.dataChildren(parent).find((c) => c.path === schemaPath)?.keys ?? [];
      this.listKeys.set(schemaPath, keys);
    }
    return keys;
  };

  /** libyang's diff of two validated trees, as changes (one walk of both trees in libyang). */
  private diffChanges(prev: ValidatedConfig, next: ValidatedConfig): ConfigChange[] {
    const started = performance.now();
    const changes = changesFromDiff(prev.tree.diff(next.tree, 'json'), this.keysOf);
    log.debug({ changes: changes.length, ms: Math.round(performance.now() - started) }, 'configuration diff');
    return changes;
  }

  /** Load running (validated and applied through the subsystems) at start. */
  async start(startupFile?: string, factoryXml?: string): Promise<void> {
    const started = performance.now();
    const fresh = this.store.isFresh();
    const initial = await this.store.loadInitial(startupFile, factoryXml);
    const empty = yangCall(() => this.store.validated({ children: [] }));
    this.store.setRunning(empty);
    if (initial.children.length > 0) {
      try {
        try {
          await this.applyAtStart(empty, initial);
        } catch (err) {
          // A commit whose journal record has no answered mark: the agent stopped before answering it
          // (while the subsystems refused it, or before they answered), or the machine stopped before
          // the mark reached the disk. Running without it is what every marked commit made.
          const before = this.store.journal.lastRecordUnanswered;
          if (!before) throw err;
          await this.applyAtStart(empty, before);
          const line = this.store.journal.dropLastRecord();
          // Appended: a record dropped at an earlier start stays there too.
          const kept = `${this.store.journal.file}.refused`;
          appendFileSync(kept, `${line}\n`, { mode: 0o600 });
          log.error({ file: this.store.journal.file, kept, err: err instanceof Error ? err.message : String(err) },
            'the last commit in the running journal has no answered mark and is refused at start: started without it (its record is kept aside; not answered <ok/>, unless the machine itself crashed before the mark reached the disk)');
        }
        this.store.journal.markAnswered();
        log.info({ topLevelNodes: initial.children.length, ms: Math.round(performance.now() - started) }, 'running configuration restored and applied');
      } catch (err) {
        // Refuse to run on a configuration the subsystems did not take rather than run without it.
        const file = this.store.initialFile;
        log.error({ file, err: err instanceof Error ? err.message : String(err) }, 'initial configuration refused; not starting');
        // A state-file error names its file (the YANG error alone does not say which one).
        const list: unknown[] = Array.isArray((err as { errors?: unknown }).errors) ? (err as { errors: unknown[] }).errors : [err];
        const why = list.map((e) => {
          const path = (e as { extra?: { path?: string } }).extra?.path;
          return `${e instanceof Error ? e.message : String(e)}${path ? ` (${path})` : ''}`;
        }).join('; ');
        throw new Error(`configuration ${file ?? '(none)'} was refused at start: ${why}`, { cause: err });
      }
    }
    if (fresh) {
      // :startup exists from the first start: equal to the initial running, both on disk.
      await this.store.persistRunning();
      await this.store.setStartup(this.store.running.root);
      log.info({ topLevelNodes: initial.children.length, from: startupFile ?? (factoryXml ? 'factory' : 'empty') }, 'fresh state directory: running and startup created');
    }
    if (existsSync(this.store.rollbackFile)) {
      await this.store.persistRunning();
      await this.store.saveRollback(undefined);
      log.warn('a confirmed commit that was never confirmed has been reverted');
    }
  }

  /** Validate `root` and apply it through the subsystems as running (start). */
  private async applyAtStart(empty: ValidatedConfig, root: ConfigRoot): Promise<void> {
    const next = yangCall(() => this.store.validated(root));
    try {
      await this.transaction.run(empty, next, this.diffChanges(empty, next), { startup: true });
    } catch (err) {
      next.tree.free();
      throw err;
    }
    this.store.setRunning(next);
  }

  private foldTimer: NodeJS.Timeout | undefined;

  /**
   * A small running.xml is folded (its journal records written into it) once no commit came for
   * FOLD_IDLE_MS: off every reply path, queued like a commit (issue 8: a small commit's save is one
   * journal record, one disk flush; running.xml is current again shortly after commits pause).
   */
  private foldWhenIdle(): void {
    clearTimeout(this.foldTimer);
    this.foldTimer = setTimeout(() => {
      this.foldTimer = undefined;
      void this.exclusive(() => this.foldJournal());
    }, FOLD_IDLE_MS);
    this.foldTimer.unref();
  }

  /** Fold a small running.xml's journal into it now (call inside exclusive()); a failure is logged, the journal then takes no more records. */
  async foldJournal(): Promise<void> {
    // A large running.xml keeps its journal until it is full (see running-journal.ts).
    if (!this.store.journal.foldsWhenIdle) return;
    const records = this.store.journal.recordCount;
    try {
      if (await this.store.foldJournal()) log.debug({ records }, 'running journal folded into running.xml');
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err), file: this.store.runningFile }, 'folding the running journal into running.xml failed: the next commit writes it whole');
    }
  }

  /** No fold after this (shutdown: close() folds once, in the queue). */
  stopFolding(): void {
    clearTimeout(this.foldTimer);
    this.foldTimer = undefined;
  }

  /** Queued or running work that will change running on its own (a confirmed commit's revert): reads wait for it. */
  private queuedRunningChanges = 0;

  /** Whether a read of running may answer now from the committed running, without the queue. */
  get runningReadableNow(): boolean {
    return this.queuedRunningChanges === 0 && !this.store.runningTreeInFlux;
  }

  /** exclusive() for work that changes running without a client asking (reads queue behind it). */
  exclusiveRunningChange<T>(fn: () => Promise<T>): Promise<T> {
    this.queuedRunningChanges++;
    return this.exclusive(fn).finally(() => {
      this.queuedRunningChanges--;
    });
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  changedBy(ctx: { sessionId: number; username: string }): ChangedBy {
    return { username: ctx.username, sessionId: ctx.sessionId, sourceHost: this.sessions.sessions.get(ctx.sessionId)?.sourceHost };
  }

  /** in-use when another session holds the lock on `ds`. */
  checkNotLockedByOther(ds: DatastoreName, sessionId: number): void {
    const lock = this.locks.get(ds);
    if (lock && lock.sessionId !== sessionId) {
      throw new NetconfError('in-use', 'protocol', `the ${ds} datastore is locked by session ${lock.sessionId}`, {
        info: [{ name: 'session-id', value: String(lock.sessionId) }],
      });
    }
  }

  /** Validate `root` with libyang (full tree) and the subsystems' own checks, without applying it. */
  async validateConfig(root: ConfigRoot): Promise<void> {
    const v = yangCall(() => this.store.validated(root));
    try {
      await this.transaction.validate(this.store.running, v, this.diffChanges(this.store.running, v));
    } finally {
      v.tree.free();
    }
  }

  /**
   * Make `root` the running configuration: libyang validation, then the commit transaction with the
   * durable save of running alongside the applies (both must succeed, else both are undone).
   * Throws, and changes nothing, when any step fails.
   */
  async commitRunning(root: ConfigRoot, by: ChangedBy | undefined, edits: EditChange[], ops?: LyOp[]): Promise<ConfigRoot> {
    const started = performance.now();
    const prev = this.store.running;
    const save = new CommitSave(this.store, prev.root, root);
    save.begin();
    try {
      return await this.commitRunningSaving(root, by, edits, ops, save, started);
    } finally {
      // A refused commit leaves no temp file behind (after a successful run() there is none left).
      await save.discard();
    }
  }

  private async commitRunningSaving(root: ConfigRoot, by: ChangedBy | undefined, edits: EditChange[], ops: LyOp[] | undefined,
    save: CommitSave, started: number): Promise<ConfigRoot> {
    const prev = this.store.running;
    let next: ValidatedConfig;
    const inPlace = !!ops && ops.length <= IN_PLACE_MAX_OPS;
    if (inPlace) {
      // Whether each entry an op names existed before (a create concerns every subsystem below it).
      const changes = changesFromOps(ops, (p) => existsAt(prev.tree, p));
      // Running's tree is about to change in place: the subsystems that need the old JSON get it now.
      const oldSide = this.transaction.concerned(prev, prev, changes).length ? { json: prev.json } : { json: {} };
      const local = this.store.validations.localRules;
      next = yangCall(() => this.store.applyToRunning(root, ops));
      log.debug({ inPlace: true, ops: ops.length, validation: this.store.validations.localRules > local ? 'changed-rules' : 'whole-tree',
        validateMs: Math.round(performance.now() - started) }, 'new running validated');
      try {
        await this.transaction.run(oldSide, next, changes, { alongside: save });
      } catch (err) {
        this.store.rebuildRunning();
        throw err;
      }
    } else {
      // Its JSON is printed whole if needed: a large edit can make a long top-level list, whose
      // selection alone would cost more than the print. A large one is validated and diffed by the
      // libyang worker (the main thread keeps serving reads meanwhile).
      const large = await this.store.validatedOffThread(root, prev).catch((err: unknown) => throwErrors(toNetconfErrors(err)));
      next = large?.next ?? yangCall(() => this.store.validated(root));
      log.debug({ inPlace: false, offThread: !!large, validateMs: Math.round(performance.now() - started) }, 'new running validated');
      try {
        await this.transaction.run(prev, next, large ? changesFromDiff(large.diff, this.keysOf) : this.diffChanges(prev, next), { alongside: save });
      } catch (err) {
        next.tree.free();
        throw err;
      }
    }
    // Before the reply: a journal record marked answered is never dropped at start (running-journal.ts).
    save.answered();
    const previous = prev.root;
    this.store.setRunning(next);
    if (save.kind === 'journal' && this.store.journal.foldsWhenIdle) this.foldWhenIdle();
    log.debug({ totalMs: Math.round(performance.now() - started), transactionAndValidateMs: Math.round(performance.now() - started),
      saveMs: save.ms === undefined ? undefined : Math.round(save.ms * 10) / 10, save: save.kind, savedAlongsideApply: true }, 'running saved');
    if (by) {
      this.hub.publish(configChangeEvent(by, 'running', edits.length ? edits : [{ path: '/', operation: 'replace' }],
        (m) => this.schema.module(m)?.namespace));
    }
    // Queued behind this commit, never inside one: libyang's heap is given back if it outgrew running.
    // Not after a commit replayed in place that only sets (values, new entries; at most
    // IN_PLACE_MAX_OPS, no removal): it can neither shrink libyang's heap to a quarter of a peak nor
    // grow it much, and the check walks the whole heap (mallinfo: at 10,000 rules, about a tenth of a
    // single-rule commit's main-thread time).
    if (!(inPlace && ops!.every((o) => o.op === 'set'))) void this.exclusive(() => renewLibyangIfOversized(this.yang));
    return previous;
  }

  publishStartupChange(by: ChangedBy): void {
    this.hub.publish(configChangeEvent(by, 'startup', [{ path: '/', operation: 'replace' }], (m) => this.schema.module(m)?.namespace));
  }

  /** Root of a datastore, by name. */
  rootOf(ds: DatastoreName): ConfigRoot | undefined {
    if (ds === 'running') return this.store.running.root;
    if (ds === 'candidate') return this.store.candidate;
    return this.store.startup;
  }
}
