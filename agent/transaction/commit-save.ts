// The durable save of a commit, made so that it can run while the commit is validated and the
// subsystems apply (issue 8, commit latency) and be taken back if the commit is then refused: a
// journal record appended in libuv's thread pool (running-journal.ts) from the moment the commit
// starts, or running.xml written whole, once every prepare passed, when the journal cannot take
// the change. The reply waits for both the save and the applies; if either failed, the other
// is undone and the client gets an rpc-error, so an <ok/> still means applied and on disk.
import { performance } from 'node:perf_hooks';
import { logger } from '../../core/log.js';
import { stageable, StagedFile, writeFileAtomic } from '../datastore/atomic-file.js';
import type { ConfigRoot } from '../datastore/config-tree.js';
import type { ConfigStore } from '../datastore/config-store.js';

const log = logger('datastore');

export type SaveKind = 'journal' | 'whole-file';

export class CommitSave {
  kind: SaveKind | undefined;
  /** How long the save itself took (ms), once done. */
  ms: number | undefined;
  private done = false;
  /** run() was called: from then on the transaction undoes the save when it refuses the commit. */
  private ran = false;
  /** The commit succeeded (answered() was called). */
  private succeeded = false;

  /** running.xml's new text, written and flushed under a temp name while the commit validates and prepares. */
  private staged: { file: StagedFile; text: string } | undefined;
  /** The journal record's write, started by begin(): settles with its error, if any. */
  private recordWrite: Promise<Error | undefined> | undefined;
  private started = 0;

  constructor(private readonly store: ConfigStore, private readonly previous: ConfigRoot, private readonly next: ConfigRoot) {}

  /**
   * Called as the commit starts, before libyang validates it. When the journal takes the change,
   * its record is written now (issue 8: the disk flush, the dearest part of a small commit, runs
   * alongside libyang's validation and the subsystems' validate, prepare and apply): a refused
   * commit takes it back before it is answered (undo(), discard()), and one a crash interrupted
   * first is left unanswered, dropped at start if refused then (running-journal.ts).
   * Else a save that will write running.xml whole writes the new text to a temp file and starts
   * flushing it now; run() then only renames it into place and flushes the directory, once every
   * prepare passed. Nothing of it is visible before run(): a refused commit calls discard().
   */
  begin(): void {
    this.started = performance.now();
    const journal = this.store.journal;
    if (journal.takesRecords()) {
      const record = journal.recordFor(this.previous, this.next);
      if (record) {
        try {
          this.recordWrite = journal.appendRecord(record).then(() => undefined, (err: unknown) => (err instanceof Error ? err : new Error(String(err))));
          return;
        } catch (err) {
          log.warn({ err: message(err), file: journal.file }, 'appending to the running journal failed: writing running.xml whole');
          journal.invalidate();
        }
      }
    }
    const text = this.store.documentText(this.next);
    if (!stageable(text)) return;
    this.staged = { file: new StagedFile(this.store.runningFile, text), text };
  }

  /** Whether the save started with begin() (a journal record): the transaction may await it from its start. */
  get startsWithTransaction(): boolean {
    return this.recordWrite !== undefined;
  }

  /** The commit succeeded: its journal record is marked answered (before the reply is sent). */
  answered(): void {
    this.succeeded = true;
    if (this.done && this.kind === 'journal') this.store.journal.markAnswered();
  }

  /**
   * The commit is over (answered or refused): a temp file begin() wrote is removed, and for a
   * refused commit whatever of the save is still on disk is taken back: a record begin() wrote for
   * a commit refused before its transaction saved it (libyang refused it), or a save that a refusal
   * did not undo (the transaction undoes it on every refusal it knows of: this is the safety net).
   */
  async discard(): Promise<void> {
    const staged = this.staged;
    this.staged = undefined;
    await staged?.file.discard();
    if (this.succeeded) return;
    if (this.done) {
      await this.undo();
    } else if (this.recordWrite && !this.ran) {
      this.ran = true;
      // Not written (the write failed): nothing to take back.
      if ((await this.recordWrite) === undefined) await this.takeBackRecord();
    }
  }

  /** Write `next` durably; resolves once it is on disk. */
  async run(): Promise<void> {
    this.ran = true;
    if (this.recordWrite) {
      const err = await this.recordWrite;
      // The journal is invalidated: the next commit writes running.xml whole. This one is refused
      // (its record may be partly written; running.xml whole must not be written before the subsystems prepared).
      if (err) throw new Error(`appending to the running journal failed: ${err.message}`);
      this.kind = 'journal';
      this.store.saves.journal += 1;
      this.done = true;
      this.ms = performance.now() - this.started;
      return;
    }
    // The journal could not take the change (begin() found out): running.xml whole, staged by
    // begin() when it could be, else written now.
    const started = performance.now();
    const staged = this.staged;
    this.staged = undefined;
    if (staged) {
      try {
        await staged.file.install();
      } catch (err) {
        this.store.journal.invalidate();
        throw err;
      }
      this.store.journal.rebased(staged.text);
    } else {
      await this.writeWhole(this.next);
    }
    this.kind = 'whole-file';
    this.store.saves.whole += 1;
    this.done = true;
    this.ms = performance.now() - started;
  }

  /** Put the previous running back on disk (the commit was refused after run() succeeded). */
  async undo(): Promise<void> {
    if (!this.done) return;
    this.done = false;
    this.store.saves[this.kind === 'journal' ? 'journal' : 'whole'] -= 1;
    if (this.kind === 'journal') await this.takeBackRecord();
    else await this.writeWhole(this.previous);
  }

  /** The record this commit appended cut off again; if that fails, the previous running written whole. */
  private async takeBackRecord(): Promise<void> {
    try {
      await this.store.journal.undoLast();
    } catch (err) {
      log.warn({ err: message(err), file: this.store.journal.file }, 'taking back the journal record failed: writing running.xml whole');
      await this.writeWhole(this.previous);
    }
  }

  private async writeWhole(root: ConfigRoot): Promise<void> {
    const text = this.store.documentText(root);
    try {
      await writeFileAtomic(this.store.runningFile, text);
    } catch (err) {
      // What is on disk may now be ahead of or behind the journal's base: no record may be based on it.
      this.store.journal.invalidate();
      throw err;
    }
    this.store.journal.rebased(text);
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
