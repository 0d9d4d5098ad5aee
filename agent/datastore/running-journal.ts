// Saving running without rewriting it (issue 8): a large running.xml (10,000 rules: 1.5 MB, 30 ms
// to print, write and fdatasync) is not rewritten on every commit. Each commit appends what changed
// (a structural patch from the previous datastore tree to the new one: unchanged subtrees are the
// very same objects, so the patch costs what changed) as one line to running.journal, fdatasync'ed
// before the commit is answered: an acknowledged commit survives a crash exactly as before. At
// start, running.xml is read and the journal replayed on it. The journal names the running.xml it
// applies to (SHA-256 of its content), so a journal left behind by a crash between rewriting
// running.xml and removing the journal is recognised as stale and ignored. Once the journal holds
// many records or bytes, the next commit rewrites running.xml whole and starts a new journal.
// Small datastores (below JOURNAL_MIN_BYTES, 64 KiB) are journaled too (issue 8: one disk flush
// before <ok/> instead of a temp file's flush, a rename and the directory's flush), and folded into
// running.xml once commits pause (fold(), off the reply path, queued like a commit): running.xml
// alone is then the saved running again, as documented (users and tests read it). A fold keeps the
// journal file open and starts it again in place, so that the next commit's record is one write.
// A record is one write on a file opened with O_DSYNC (one disk flush). appendRecord does that write in libuv's thread pool, so the
// commit transaction applies the dataplane meanwhile (agent/transaction/commit-save.ts); undoLast()
// takes a record back (truncate + flush) when the commit is then refused.
// A record is written as its commit starts, before the subsystems have validated it (the flush then
// runs alongside them); once the commit succeeded, and before it is answered, a marker line says so
// (a plain write: no flush of its own; a killed process does not lose it, a crash of the whole
// machine may). A last record without that marker was not answered <ok/> (but for such a crash):
// at start, if the subsystems refuse the configuration with it, it is dropped (lastRecordUnanswered,
// dropLastRecord) instead of the agent refusing to start. Every record but
// the last is answered: commits are serialised, and a refused one is taken back before the next.
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fdatasync, fdatasyncSync, fsyncSync, ftruncate, ftruncateSync, openSync, readFileSync, truncateSync, unlinkSync, write, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { logger } from '../../core/log.js';
import { identityOf, type ConfigNode, type ConfigRoot } from './config-tree.js';
import { replacedPositions } from '../../core/array-copies.js';
import type { DataSchemaNode, SchemaIndex } from './schema-index.js';

const log = logger('datastore');

/** Below this size running.xml is folded (rewritten whole) as soon as commits pause. */
export const JOURNAL_MIN_BYTES = 64 * 1024;
/** A journal may hold this many bytes whatever the size of running.xml (a small one's is folded when idle). */
const JOURNAL_MAX_BYTES_ANY = 64 * 1024;
/** A journal is folded into running.xml once it holds this many records... */
const MAX_RECORDS = 1000;
/** ... or this share of running.xml's size in bytes. */
const MAX_SHARE = 0.25;
/** Appends are durable when write() returns: the data and the file size, as fdatasync gives. */
const APPEND_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC;
/** Where the marker of an answered record is written from: no O_DSYNC (the record was flushed; the marker needs no flush of its own). */
const MARK_FLAGS = constants.O_WRONLY | constants.O_APPEND;
/** The line after a record whose commit succeeded (written before the commit is answered). */
const ANSWERED_LINE = Buffer.from('{"answered":true}\n', 'utf8');
/** A patch with more items than this is not worth it: the commit rewrites running.xml. */
const MAX_PATCH_ITEMS = 512;

/** A node written out whole: module, name, value, value namespaces, raw content, children. */
interface SerialNode { m: string; n: string; v?: string; x?: Record<string, string>; r?: string; c?: SerialNode[] }
/** New children of a node: runs of the old children [from, to), new nodes, or old nodes patched. */
type Patch = ([number, number] | { n: SerialNode } | { p: number; k: string; c: Patch })[];

function serial(node: ConfigNode): SerialNode {
  const out: SerialNode = { m: node.schema.module, n: node.schema.name };
  if (node.value !== undefined) out.v = node.value;
  if (node.valueNs) out.x = node.valueNs;
  if (node.raw !== undefined) out.r = node.raw;
  if (node.children.length) out.c = node.children.map(serial);
  return out;
}

function isInner(n: ConfigNode): boolean {
  return n.schema.kind === 'container' || n.schema.kind === 'list';
}

function sameEntry(a: ConfigNode, b: ConfigNode): boolean {
  if (a.schema !== b.schema || !isInner(a)) return false;
  // A list entry is the same entry when its keys are (the same leaf objects, or equal values).
  return a.schema.keys.every((k) => {
    const ka = a.children.find((c) => c.schema.name === k), kb = b.children.find((c) => c.schema.name === k);
    return ka === kb || (!!ka && !!kb && ka.value === kb.value);
  });
}

/** The patch from `prev` to `next` (sibling arrays), or undefined when it would be too large. */
function patchOf(prev: ConfigNode[], next: ConfigNode[], budget: { items: number }): Patch | undefined {
  const replaced = replacedPositions(next, prev);
  return replaced ? patchAt(prev, next, replaced, budget) : patchByWalk(prev, next, budget);
}

/**
 * patchOf when `next` is a copy of `prev` whose elements differ only at `positions` (the edit said
 * so, core/array-copies.ts): runs of the elements between, without comparing each one (a rule edit
 * in a VRF of 10,000 rules: two runs and the rule's patch).
 */
function patchAt(prev: ConfigNode[], next: ConfigNode[], positions: number[], budget: { items: number }): Patch | undefined {
  const out: Patch = [];
  let from = 0;
  const runTo = (end: number): void => {
    if (end > from) {
      out.push([from, end]);
      budget.items -= 1;
    }
  };
  for (const p of positions) {
    const here = prev[p]!, node = next[p]!;
    if (here === node) continue; // replaced by itself: part of the run
    runTo(p);
    if (sameEntry(here, node)) {
      const item = entryPatch(here, node, p, budget);
      if (!item) return undefined;
      out.push(item);
    } else {
      out.push({ n: serial(node) });
      budget.items -= 1;
    }
    if (budget.items < 0) return undefined;
    from = p + 1;
  }
  runTo(prev.length);
  return budget.items < 0 ? undefined : out;
}

/**
 * The patch item of `old` (at position `p` of the previous siblings) changed into `node`, the same
 * entry; undefined when the patch would be too large. The entry's identity goes with its position:
 * a replay onto a tree that differs is caught.
 */
function entryPatch(old: ConfigNode, node: ConfigNode, p: number, budget: { items: number }): Patch[number] | undefined {
  const c = patchOf(old.children, node.children, budget);
  if (!c) return undefined;
  budget.items -= 1;
  return { p, k: identityOf(old), c };
}

/** patchOf by comparing the arrays element by element. */
function patchByWalk(prev: ConfigNode[], next: ConfigNode[], budget: { items: number }): Patch | undefined {
  const out: Patch = [];
  let i = 0;
  const run = (k: number): void => {
    const last = out[out.length - 1];
    if (Array.isArray(last) && last[1] === k) {
      last[1] = k + 1;
    } else {
      out.push([k, k + 1]);
      budget.items -= 1;
    }
  };
  for (let j = 0; j < next.length; j++) {
    const node = next[j]!;
    if (budget.items < 0) return undefined;
    if (i < prev.length && prev[i] === node) {
      // A run of unchanged siblings (most of a VRF's rules) in one tight loop.
      run(i++);
      let end = i;
      while (end < prev.length && j + 1 < next.length && prev[end] === next[j + 1]) {
        end++;
        j++;
      }
      if (end > i) {
        (out[out.length - 1] as [number, number])[1] = end;
        i = end;
      }
      continue;
    }
    // The same entry changed where it was (a rule edit): patched without searching the siblings
    // for the node (it cannot be elsewhere: a list has one entry per key), which was two scans of
    // a VRF's 10,000 rules per commit (issue 8).
    const here = i < prev.length ? prev[i]! : undefined;
    if (here && sameEntry(here, node)) {
      const item = entryPatch(here, node, i, budget);
      if (!item) return undefined;
      out.push(item);
      i += 1;
      continue;
    }
    let k = prev.indexOf(node, i);
    if (k < 0) k = prev.indexOf(node);
    if (k >= 0) {
      run(k);
      i = k + 1;
      continue;
    }
    out.push({ n: serial(node) });
    budget.items -= 1;
  }
  return budget.items < 0 ? undefined : out;
}

export class RunningJournal {
  private fd: number | undefined;
  private records = 0;
  /** The journal file's length (header and complete records). */
  private bytes = 0;
  /** The length before the last record appended, while it may still be taken back. */
  private undoTo: number | undefined;
  /** SHA-256 of running.xml as last written or read, the base the journal applies to. */
  private baseHash: string | undefined;
  private baseBytes = 0;
  /** The journal file may exist (false once this process removed it and has not created it since). */
  private mayExist = true;
  /** The last record appended has not been marked answered yet. */
  private unmarked = false;
  /** The descriptor the marker is written through (opened without O_DSYNC). */
  private markFd: number | undefined;
  /** From replay: the running before the journal's last record and where that record starts, when it was never marked answered. */
  private unanswered: { before: ConfigRoot; offset: number; line: string } | undefined;

  constructor(private readonly runningFile: string, private readonly schema: SchemaIndex) {}

  get file(): string {
    return join(dirname(this.runningFile), 'running.journal');
  }

  /** running.xml was written whole with `content`: the journal starts again from it. */
  rebased(content: string): void {
    this.close();
    if (this.mayExist && existsSync(this.file)) unlinkSync(this.file);
    this.mayExist = false;
    this.baseHash = createHash('sha256').update(content).digest('hex');
    this.baseBytes = Buffer.byteLength(content);
    this.records = 0;
    this.bytes = 0;
    this.undoTo = undefined;
    this.unmarked = false;
    this.unanswered = undefined;
  }

  /**
   * Append the change from `prev` to `next` and make it durable; false when the caller must write
   * running.xml whole instead (small datastore, no known base, journal full, patch too large).
   */
  append(prev: ConfigRoot, next: ConfigRoot): boolean {
    const line = this.recordFor(prev, next);
    if (!line) return false;
    const fd = this.openForAppend();
    let off = 0;
    while (off < line.length) off += writeSync(fd, line, off, line.length - off);
    fdatasyncSync(fd);
    this.appended(line.length);
    // Written for a running already in place (no subsystem left to refuse it).
    this.markAnswered();
    return true;
  }

  /**
   * append() of a record recordFor gave (no other record appended since), with the write done in
   * libuv's thread pool (the caller's event loop keeps running): resolves once the record is on
   * disk. On failure the journal is invalidated (the next commit writes running.xml whole).
   */
  appendRecord(line: Buffer): Promise<void> {
    this.undoTo = undefined;
    const fd = this.openForAppend();
    const before = this.bytes;
    return new Promise<void>((resolve, reject) => {
      const more = (off: number): void => {
        write(fd, line, off, line.length - off, null, (err, n) => {
          if (err) {
            this.invalidate();
            reject(err);
          } else if (off + n < line.length) {
            more(off + n);
          } else {
            // O_DSYNC: the record is durable now; fdatasync for a file system that ignores the flag is not needed on Linux.
            this.appended(line.length, before);
            resolve();
          }
        });
      };
      more(0);
    });
  }

  /**
   * The commit of the record appended last succeeded: its marker is written (before the commit is
   * answered; a plain write, in the page cache, which a crash of the process does not lose). It can
   * no longer be taken back. A failed write is logged: the record then only stays unmarked.
   */
  markAnswered(): void {
    if (!this.unmarked) return;
    this.unmarked = false;
    this.undoTo = undefined;
    this.unanswered = undefined;
    try {
      this.markFd ??= openSync(this.file, MARK_FLAGS);
      let off = 0;
      while (off < ANSWERED_LINE.length) off += writeSync(this.markFd, ANSWERED_LINE, off, ANSWERED_LINE.length - off);
      this.bytes += ANSWERED_LINE.length;
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err), file: this.file }, 'marking the journal record answered failed');
    }
  }

  /**
   * Take back the record appended last (its commit was refused after the record was written):
   * the journal is cut back to its length before it, durably. On failure the journal is
   * invalidated and the caller must write running.xml whole.
   */
  async undoLast(): Promise<void> {
    const to = this.undoTo;
    const fd = this.fd;
    if (to === undefined || fd === undefined) throw new Error('no journal record to take back');
    this.undoTo = undefined;
    try {
      await new Promise<void>((resolve, reject) => ftruncate(fd, to, (err) => (err ? reject(err) : resolve())));
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      this.invalidate();
      throw err;
    }
    this.records -= 1;
    this.bytes = to;
    this.unmarked = false;
  }

  /**
   * Whether the next commit may be saved as a record (the datastore is large enough, the journal has
   * a base and room); false: it will be written whole (the commit can start that write early).
   */
  takesRecords(): boolean {
    if (!this.baseHash) return false;
    return this.records < MAX_RECORDS && this.bytes < this.maxBytes();
  }

  /** How large the journal may grow before running.xml is written whole. */
  private maxBytes(): number {
    return Math.max(this.baseBytes * MAX_SHARE, JOURNAL_MAX_BYTES_ANY);
  }

  /** Records since running.xml was last written whole. */
  get recordCount(): number {
    return this.records;
  }

  /** Whether running.xml is small: folded once commits pause, so that running.xml alone is current. */
  get foldsWhenIdle(): boolean {
    return this.baseBytes < JOURNAL_MIN_BYTES;
  }

  /**
   * running.xml was written whole with `content` by a fold (it holds every record): the journal
   * starts again from it in place (cut to nothing, a new header, durably) when it is open, so that
   * the next commit's record is one write and no file is created on the reply path. A crash
   * between the two leaves a journal whose header names the old running.xml: ignored at start.
   */
  restartOn(content: string): void {
    if (this.fd === undefined) {
      this.rebased(content);
      this.openForAppend();
      return;
    }
    this.baseHash = createHash('sha256').update(content).digest('hex');
    this.baseBytes = Buffer.byteLength(content);
    this.records = 0;
    this.bytes = 0;
    this.undoTo = undefined;
    this.unmarked = false;
    this.unanswered = undefined;
    try {
      ftruncateSync(this.fd, 0);
      this.writeHeader(this.fd);
    } catch (err) {
      this.invalidate();
      throw err;
    }
  }

  /**
   * The record from `prev` to `next` (appendRecord writes it; a commit computes it as it starts:
   * whether the journal takes it decides when its save may start), or undefined when running.xml
   * must be written whole.
   */
  recordFor(prev: ConfigRoot, next: ConfigRoot): Buffer | undefined {
    this.undoTo = undefined;
    if (!this.baseHash) return undefined;
    const maxBytes = this.maxBytes();
    if (this.records >= MAX_RECORDS || this.bytes >= maxBytes) return undefined;
    const patch = patchOf(prev.children, next.children, { items: MAX_PATCH_ITEMS });
    if (!patch) return undefined;
    const line = Buffer.from(`${JSON.stringify(patch)}\n`, 'utf8');
    // A record that would take the journal past its limit is folded at once (a large first load is written whole).
    return this.bytes + line.length > maxBytes ? undefined : line;
  }

  /** The journal's descriptor, the file created (with its header, durably) if need be. */
  private openForAppend(): number {
    if (this.fd !== undefined) return this.fd;
    const created = !existsSync(this.file);
    this.mayExist = true;
    const fd = openSync(this.file, APPEND_FLAGS, 0o600);
    this.fd = fd;
    // An empty journal gets its header (not one that holds a header and no record yet: replayed, or its only record taken back).
    if (this.bytes === 0) this.writeHeader(fd);
    if (created) {
      // The new file's directory entry is durable too.
      const dfd = openSync(dirname(this.file), 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    }
    return fd;
  }

  /** The header naming the base (O_DSYNC: durable when written). */
  private writeHeader(fd: number): void {
    const header = Buffer.from(`${JSON.stringify({ base: this.baseHash })}\n`, 'utf8');
    let off = 0;
    while (off < header.length) off += writeSync(fd, header, off, header.length - off);
    this.bytes = header.length;
  }

  private appended(length: number, before = this.bytes): void {
    this.undoTo = before;
    this.records += 1;
    this.bytes = before + length;
    this.unmarked = true;
  }

  /**
   * `root` (read from running.xml, whose text is `content`) with the journal's records applied.
   * A stale journal (written against another running.xml) is removed; an incomplete last record
   * (a crash while it was written: never acknowledged) is dropped; any other damage stops the start.
   */
  replay(root: ConfigRoot, content: string): ConfigRoot {
    this.baseHash = createHash('sha256').update(content).digest('hex');
    this.baseBytes = Buffer.byteLength(content);
    if (!existsSync(this.file)) return root;
    const lines = readFileSync(this.file, 'utf8').split('\n');
    const complete = lines.pop() === ''; // the text ends with a newline: every line is whole
    let header: { base?: string } = {};
    try {
      header = JSON.parse(lines[0] ?? '{}') as { base?: string };
    } catch {
      // an incomplete header: the journal never held a record
    }
    if (header.base !== this.baseHash) {
      log.info({ file: this.file }, 'journal of an earlier running.xml removed');
      unlinkSync(this.file);
      return root;
    }
    let out = root;
    const records = lines.slice(1);
    let count = 0;
    // Where the line being read starts in the file; the last record not followed by its marker.
    let offset = Buffer.byteLength(lines[0] ?? '') + 1;
    let last: { before: ConfigRoot; offset: number; line: string } | undefined;
    for (const [i, line] of records.entries()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (err) {
        if (i === records.length - 1 && !complete) break;
        throw new Error(`${this.file} record ${i + 1} is damaged: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      if (Array.isArray(parsed)) {
        last = { before: out, offset, line };
        out = { children: this.apply(out.children, parsed as Patch, '/') };
        count += 1;
      } else {
        last = undefined; // the marker: the record before it was answered
      }
      offset += Buffer.byteLength(line) + 1;
    }
    this.unanswered = last;
    this.unmarked = !!last;
    this.records = count;
    this.bytes = Buffer.byteLength(lines.join('\n')) + 1;
    // The torn last record (popped above) is cut off, so that the next record starts on a line of its own.
    if (!complete) this.cutFileTo(this.bytes);
    log.info({ file: this.file, records: this.records, lastUnanswered: !!last }, 'running journal replayed');
    return out;
  }

  /**
   * After replay: the running before the journal's last record, when that record was never marked
   * answered (its commit was refused, or still running, when the agent stopped), else undefined.
   */
  get lastRecordUnanswered(): ConfigRoot | undefined {
    return this.unanswered?.before;
  }

  /**
   * Cut the unanswered last record off the journal, durably (the subsystems refused the running it
   * makes at start); returns its line, for the operator to look at.
   */
  dropLastRecord(): string {
    const last = this.unanswered;
    if (!last) throw new Error('no unanswered journal record to drop');
    this.close();
    this.cutFileTo(last.offset);
    this.unanswered = undefined;
    this.unmarked = false;
    this.records -= 1;
    this.bytes = last.offset;
    return last.line;
  }

  /** The journal file (closed) cut back to `length` bytes, durably. */
  private cutFileTo(length: number): void {
    truncateSync(this.file, length);
    const fd = openSync(this.file, 'r+');
    try {
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** A write to the journal failed (it may end in a partial record): no more appends until running.xml is written whole. */
  invalidate(): void {
    this.close();
    this.baseHash = undefined;
    this.undoTo = undefined;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.markFd !== undefined) closeSync(this.markFd);
    this.markFd = undefined;
  }

  private apply(prev: ConfigNode[], patch: Patch, parentSchemaPath: string): ConfigNode[] {
    const out: ConfigNode[] = [];
    for (const item of patch) {
      if (Array.isArray(item)) {
        for (let k = item[0]; k < item[1]; k++) out.push(this.at(prev, k));
      } else if ('p' in item) {
        const old = this.at(prev, item.p);
        if (identityOf(old) !== item.k) throw new Error(`${this.file} does not fit running.xml (${item.k} expected at ${item.p}, found ${identityOf(old)})`);
        out.push({ ...old, children: this.apply(old.children, item.c, old.schema.path) });
      } else {
        out.push(this.revive(item.n, parentSchemaPath));
      }
    }
    return out;
  }

  private at(nodes: ConfigNode[], k: number): ConfigNode {
    const n = nodes[k];
    if (!n) throw new Error(`${this.file} does not fit running.xml (no node ${k})`);
    return n;
  }

  private revive(s: SerialNode, parentSchemaPath: string): ConfigNode {
    const sn: DataSchemaNode | undefined = this.schema.dataChildren(parentSchemaPath).find((c) => c.module === s.m && c.name === s.n);
    if (!sn) throw new Error(`${this.file} names ${s.m}:${s.n}, unknown under ${parentSchemaPath}`);
    const node: ConfigNode = { schema: sn, children: (s.c ?? []).map((c) => this.revive(c, sn.path)) };
    if (s.v !== undefined) node.value = s.v;
    if (s.x) node.valueNs = s.x;
    if (s.r !== undefined) node.raw = s.r;
    return node;
  }
}
