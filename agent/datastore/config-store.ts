// The three configuration datastores (running, candidate, startup): their content, the validated
// libyang tree of running (kept so that reads and diffs need no re-parse), and their files.
import { readdir, readFile, unlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DataTree, YangContext } from '../../yang/libyang/api.js';
import type { ConfigJson } from '../transaction/subsystem.js';
import { parseXml } from '../netconf/xml-parser.js';
import { logger } from '../log.js';
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
}

function validatedConfig(root: ConfigRoot, tree: DataTree): ValidatedConfig {
  let json: ConfigJson | undefined;
  return {
    root,
    tree,
    get json(): ConfigJson {
      if (!json) {
        const text = tree.print({ format: 'json', withDefaults: 'report-all' });
        json = text.trim() ? JSON.parse(text) as ConfigJson : {};
      }
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
  validated(root: ConfigRoot): ValidatedConfig {
    return validatedConfig(root, this.tree(root, true));
  }

  /**
   * Validate `root`, which is running with `ops` applied, without parsing or copying the datastore:
   * the ops change running's own libyang tree, which libyang then validates. On failure running's
   * tree is rebuilt from running's content (so running is unchanged) and the error is thrown.
   */
  applyToRunning(root: ConfigRoot, ops: LyOp[]): ValidatedConfig {
    const tree = this.running.tree;
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
    return validatedConfig(root, tree);
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

  /** Initial content: running.xml, else startup.xml, else the --startup file, else empty. */
  async loadInitial(startupFile?: string): Promise<ConfigRoot> {
    // Temp files of a write that a crash interrupted: the target still holds the previous content.
    for (const f of await readdir(this.stateDir).catch(() => [] as string[])) {
      if (/^\.(running|startup|rollback)\.xml\.\d+\.\d+\.tmp$/.test(f)) await unlink(join(this.stateDir, f)).catch(() => undefined);
    }
    if (existsSync(this.startupFile)) {
      this.startup = this.parseDocument(await readFile(this.startupFile, 'utf8'));
    }
    // A confirmed commit that was never confirmed when the agent stopped is reverted.
    for (const [file, what] of [[this.rollbackFile, 'rollback of an unconfirmed commit'], [this.runningFile, 'running'],
      [this.startupFile, 'startup'], [startupFile, '--startup']] as const) {
      if (file && existsSync(file)) {
        log.info({ file, what }, 'loading configuration');
        return this.parseDocument(await readFile(file, 'utf8'));
      }
    }
    return { children: [] };
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
