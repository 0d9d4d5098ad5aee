// The three configuration datastores (running, candidate, startup): their content, the validated
// libyang tree of running (kept so that reads and diffs need no re-parse), and their files.
import { readdir, readFile, unlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DataTree, YangContext } from '../../yang/libyang/api.js';
import type { ConfigJson } from '../../core/subsystem.js';
import { parseXml } from '../netconf/xml-parser.js';
import { logger } from '../../core/log.js';
import { configToXml, type ConfigRoot } from './config-tree.js';
import { configFromXml, NETCONF_BASE_NS, type EditChange, type LyOp } from './edit-config.js';
import { writeFileAtomic } from './atomic-file.js';
import type { SchemaIndex } from './schema-index.js';

const log = logger('datastore');

export type DatastoreName = 'running' | 'candidate' | 'startup';

/** A configuration that libyang has validated, with its tree and RFC 7951 JSON (with defaults). */
export interface ValidatedConfig {
  root: ConfigRoot;
  tree: DataTree;
  /** Printed on first use only (it costs as much as a validation on a large datastore). */
  readonly json: ConfigJson;
  /** The JSON if it has been printed already (never prints). */
  readonly printedJson: ConfigJson | undefined;
}

/** What a configuration was derived from: the JSON of the previous one and the data paths changed. */
export interface JsonBase {
  json: ConfigJson | undefined;
  changedPaths: string[];
}

/** Top-level JSON member ('module:name') of an absolute data path; undefined for '/' or odd paths. */
export function topLevelMember(path: string): string | undefined {
  return /^\/([A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*)(?=$|[/[])/.exec(path)?.[1];
}

/** Above these, derivedJson prints the whole tree instead (see there). */
const DERIVE_MAX_TOP_LEVEL_ENTRIES = 64;
const DERIVE_MAX_MEMBERS = 4;

function printJson(tree: DataTree): ConfigJson {
  const text = tree.print({ format: 'json', withDefaults: 'report-all' });
  return text.trim() ? JSON.parse(text) as ConfigJson : {};
}

/** The entry selector (`/m[k='v']...`) and key values of a path into entries of top-level list `member`. */
function listEntryOf(path: string, member: string): { selector: string; keys: [string, string][] } | undefined {
  const rest = path.slice(member.length + 1);
  const predicate = /^\[(?:[\w.-]+:)?([\w.-]+)=(?:'([^']*)'|"([^"]*)")\]/;
  const keys: [string, string][] = [];
  let i = 0;
  for (let m = predicate.exec(rest); m; m = predicate.exec(rest.slice(i))) {
    keys.push([m[1]!, m[2] ?? m[3] ?? '']);
    i += m[0].length;
  }
  return keys.length ? { selector: `/${member}${rest.slice(0, i)}`, keys } : undefined;
}

function printSelected(tree: DataTree, selector: string): ConfigJson {
  const part = tree.selectSubtrees(selector);
  try {
    return printJson(part);
  } finally {
    part.free();
  }
}

/**
 * The list `entries` with the entry that `entry` names reprinted from `tree` (replaced in place,
 * appended when new, dropped when gone); undefined when the entry cannot be matched.
 */
function withEntryReprinted(tree: DataTree, member: string, entries: ConfigJson[], entry: { selector: string; keys: [string, string][] }): ConfigJson[] | undefined {
  const printed = printSelected(tree, entry.selector)[member];
  const now = Array.isArray(printed) ? printed[0] as ConfigJson | undefined : undefined;
  const index = now
    ? entries.findIndex((e) => entry.keys.every(([k]) => JSON.stringify(e[k]) === JSON.stringify(now[k])))
    : entries.findIndex((e) => entry.keys.every(([k, v]) => String(e[k]) === v));
  if (now) {
    if (index < 0) return [...entries, now];
    const out = entries.slice();
    out[index] = now;
    return out;
  }
  if (index < 0) return undefined; // gone, yet not found: print the member whole
  return entries.filter((_, i) => i !== index);
}

/**
 * The JSON of `tree` from the JSON of the configuration it was derived from: only the top-level
 * members that the changed paths fall in are printed again, and of a top-level list only the
 * entries they name (a small edit of a large datastore then costs the print of what it changed,
 * not of everything). Unchanged members and entries are shared with the base JSON: nobody
 * modifies these objects.
 */
function derivedJson(tree: DataTree, base: JsonBase): ConfigJson | undefined {
  if (!base.json) return undefined;
  /** Per changed member: the list entries changed, or 'whole' to print the member again. */
  const members = new Map<string, Map<string, { selector: string; keys: [string, string][] }> | 'whole'>();
  for (const p of base.changedPaths) {
    const m = topLevelMember(p);
    if (!m) return undefined;
    const current = base.json[m];
    const entry = Array.isArray(current) ? listEntryOf(p, m) : undefined;
    const known = members.get(m);
    if (entry && known !== 'whole') {
      const entries = known ?? new Map<string, { selector: string; keys: [string, string][] }>();
      entries.set(entry.selector, entry);
      members.set(m, entries);
      continue;
    }
    // Selecting a long top-level list whole costs quadratic time (no hash table at the top
    // level): a print of everything is cheaper then.
    if (Array.isArray(current) && current.length > DERIVE_MAX_TOP_LEVEL_ENTRIES) return undefined;
    members.set(m, 'whole');
  }
  if (members.size > DERIVE_MAX_MEMBERS) return undefined;
  const json: ConfigJson = { ...base.json };
  for (const [m, what] of members) {
    if (what !== 'whole') {
      let entries: ConfigJson[] | undefined = json[m] as ConfigJson[];
      for (const entry of what.values()) {
        entries = withEntryReprinted(tree, m, entries, entry);
        if (!entries) return undefined;
      }
      if (entries.length) json[m] = entries;
      else delete json[m];
      continue;
    }
    const printed = printSelected(tree, `/${m}`);
    if (printed[m] === undefined) delete json[m];
    else json[m] = printed[m];
  }
  return json;
}

function validatedConfig(root: ConfigRoot, tree: DataTree, base?: JsonBase): ValidatedConfig {
  let json: ConfigJson | undefined;
  return {
    root,
    tree,
    get json(): ConfigJson {
      if (!json) {
        json = (base && derivedJson(tree, base)) ?? printJson(tree);
        base = undefined;
      }
      return json;
    },
    get printedJson(): ConfigJson | undefined {
      return json;
    },
  };
}

export class ConfigStore {
  running!: ValidatedConfig;
  /** Increases on every change of running (cache key of printed output). */
  runningVersion = 0;
  candidate: ConfigRoot = { children: [] };
  /** The candidate differs from running (uncommitted changes). */
  candidateDirty = false;
  /**
   * The candidate's edits since it last matched running, as libyang path operations: a commit
   * replays them on a copy of running's tree. Undefined when they cannot express the candidate.
   */
  candidateOps: LyOp[] | undefined = [];
  /** What the candidate's edits touched (reported in netconf-config-change at commit). */
  candidateChanges: EditChange[] = [];
  /** Sessions that changed the candidate since it last matched running. */
  readonly candidateEditors = new Set<number>();
  startup: ConfigRoot | undefined;
  /** The file the initial configuration came from (loadInitial), for errors that must name it. */
  initialFile: string | undefined;

  constructor(
    private readonly yang: YangContext,
    readonly schema: SchemaIndex,
    readonly stateDir: string,
  ) {}

  get runningFile(): string {
    return join(this.stateDir, 'running.xml');
  }

  /** Running as it was before a confirmed commit that is not confirmed yet (restored at start). */
  get rollbackFile(): string {
    return join(this.stateDir, 'rollback.xml');
  }

  get startupFile(): string {
    return join(this.stateDir, 'startup.xml');
  }

  xml(root: ConfigRoot): string {
    return configToXml(root, (m) => this.schema.namespaceOf(m));
  }

  /** Parse a configuration into libyang; validate it fully unless told not to. Throws YangException. */
  tree(root: ConfigRoot, validate: boolean): DataTree {
    const text = this.xml(root);
    if (text === '') {
      const t = this.yang.newTree();
      if (validate) t.validate({ configOnly: true });
      return t;
    }
    return this.yang.parse(text, { format: 'xml', kind: 'config', validate });
  }

  /** Validate a configuration (the whole tree, parsed from scratch). Throws YangException. */
  validated(root: ConfigRoot, base?: JsonBase): ValidatedConfig {
    return validatedConfig(root, this.tree(root, true), base);
  }

  /**
   * Validate `root`, which is running with `ops` applied, without parsing or copying the datastore:
   * the ops change running's own libyang tree, which libyang then validates. On failure running's
   * tree is rebuilt from running's content (so running is unchanged) and the error is thrown.
   */
  applyToRunning(root: ConfigRoot, ops: LyOp[]): ValidatedConfig {
    const tree = this.running.tree;
    // Running's JSON, if printed, still describes the tree as it was before the ops.
    const base: JsonBase = { json: this.running.printedJson, changedPaths: ops.map((o) => o.path) };
    try {
      for (const op of ops) {
        if (op.op === 'remove') tree.removePath(op.path);
        else tree.setPath(op.path, op.value);
      }
      tree.validate({ configOnly: true });
    } catch (err) {
      this.rebuildRunning();
      throw err;
    }
    this.runningVersion += 1;
    return validatedConfig(root, tree, base);
  }

  /** Parse running's tree again from its content (after a change of the tree was refused). */
  rebuildRunning(): void {
    const old = this.running;
    this.running = validatedConfig(old.root, this.tree(old.root, true));
    this.runningVersion += 1;
    old.tree.free();
  }

  /** Make `next` the running configuration (already validated and applied). */
  setRunning(next: ValidatedConfig): void {
    const prev = this.running as ValidatedConfig | undefined;
    this.running = next;
    this.runningVersion += 1;
    if (prev && prev.tree !== next.tree) prev.tree.free();
    if (!this.candidateDirty) {
      this.candidate = next.root; // stored trees are never changed in place: sharing is safe
      this.candidateOps = [];
      this.candidateChanges = [];
    } else {
      // The candidate's edits were relative to the old running: replaying them would be wrong.
      this.candidateOps = undefined;
    }
  }

  resetCandidate(): void {
    this.candidate = this.running.root;
    this.candidateOps = [];
    this.candidateChanges = [];
    this.candidateDirty = false;
    this.candidateEditors.clear();
  }

  /** A configuration document (file content or <config> element text) as a ConfigRoot. */
  parseDocument(text: string): ConfigRoot {
    const trimmed = text.replace(/^\s*<\?xml[^>]*\?>/, '').trim();
    const doc = parseXml(/^<(\w+:)?(config|data)[\s>/]/.test(trimmed) ? trimmed : `<config xmlns="${NETCONF_BASE_NS}">${trimmed}</config>`);
    return configFromXml(doc, this.schema);
  }

  documentText(root: ConfigRoot): string {
    return `<config xmlns="${NETCONF_BASE_NS}">${this.xml(root)}</config>\n`;
  }

  /**
   * Initial content: running.xml, else startup.xml, else the --startup file, else empty. A file
   * that is there but empty, truncated or not UTF-8 stops the start with an error that names it
   * and says how to start anyway: the agent never runs on less than what was stored.
   */
  async loadInitial(startupFile?: string): Promise<ConfigRoot> {
    // Temp files of a write that a crash interrupted: the target still holds the previous content.
    for (const f of await readdir(this.stateDir).catch(() => [] as string[])) {
      if (/^\.(running|startup|rollback)\.xml\.\d+\.\d+\.tmp$/.test(f)) await unlink(join(this.stateDir, f)).catch(() => undefined);
    }
    if (existsSync(this.startupFile)) {
      this.startup = await this.readStateFile(this.startupFile, 'startup', startupFile);
    }
    // A confirmed commit that was never confirmed when the agent stopped is reverted.
    for (const [file, what] of [[this.rollbackFile, 'rollback of an unconfirmed commit'], [this.runningFile, 'running'],
      [this.startupFile, 'startup'], [startupFile, '--startup']] as const) {
      if (file && existsSync(file)) {
        log.info({ file, what }, 'loading configuration');
        this.initialFile = file;
        return file === this.startupFile && this.startup ? this.startup : this.readStateFile(file, what, startupFile);
      }
    }
    return { children: [] };
  }

  /** One configuration file read at start, or an Error naming it and the way to start anyway. */
  private async readStateFile(file: string, what: string, startupFile: string | undefined): Promise<ConfigRoot> {
    const fail = (problem: string): Error => {
      const howToStart = what === '--startup'
        ? `fix ${file}, or start without --startup`
        : `to start anyway, move it aside (mv ${file} ${file}.broken) and start again: the agent then loads `
          + (file !== this.startupFile && existsSync(this.startupFile) ? this.startupFile
            : startupFile ? `the --startup file ${startupFile}` : 'the file given with --startup FILE, or an empty configuration without it');
      return new Error(`${what} configuration ${file} ${problem}; the agent did not start. ${howToStart}`);
    };
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    // The agent writes a <config> element even for an empty datastore: an empty file is damage.
    if (bytes.toString('latin1').trim() === '') throw fail(`is empty (${bytes.length} bytes)`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw fail('is not valid UTF-8');
    }
    try {
      return this.parseDocument(text);
    } catch (err) {
      throw fail(`is not a readable configuration (${bytes.length} bytes, truncated?): ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async persistRunning(): Promise<void> {
    await writeFileAtomic(this.runningFile, this.documentText(this.running.root));
  }

  async saveRollback(root: ConfigRoot | undefined): Promise<void> {
    if (root) await writeFileAtomic(this.rollbackFile, this.documentText(root));
    else await unlink(this.rollbackFile).catch(() => undefined);
  }

  async setStartup(root: ConfigRoot | undefined): Promise<void> {
    this.startup = root;
    if (root) await writeFileAtomic(this.startupFile, this.documentText(root));
    else await unlink(this.startupFile).catch(() => undefined);
  }
}
