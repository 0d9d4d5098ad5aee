// The three configuration datastores (running, candidate, startup): their content, the validated
// libyang tree of running (kept so that reads and diffs need no re-parse), and their files.
import { readdir, readFile, unlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { YangException, type DataTree, type YangContext } from '../../yang/libyang/api.js';
import { YangWorker } from '../../yang/libyang/yang-worker.js';
import type { ConfigJson } from '../../core/subsystem.js';
import { forget, recordedCopy, replaceAt } from '../../core/array-copies.js';
import { parseXml } from '../netconf/xml-parser.js';
import { logger } from '../../core/log.js';
import { configToXml, type ConfigRoot } from './config-tree.js';
import { configFromXml, NETCONF_BASE_NS, type EditChange, type LyOp } from './edit-config.js';
import { writeFileAtomic } from './atomic-file.js';
import type { SchemaIndex } from './schema-index.js';
import { refineYangException } from './yang-errors.js';
import { YangRestrictions } from './yang-restrictions.js';
import { firewallModuleIsKnown, locallyCheckableRules, ruleEntryValid } from './local-validation.js';
import { RunningJournal } from './running-journal.js';
import { slicedTree, xmlInSlices } from './sliced-tree.js';

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
  /** Paths that were only named (a 'set' without a value): no change by themselves when they already existed. */
  mentioned?: Set<string>;
  /** Leaves set to a value by the commit's only op on them: no change when the JSON already holds that value. */
  values?: Map<string, string>;
  /** Nested list entries already printed from the new tree (selector → entry, undefined when gone): see printedEntry. */
  printedEntries?: Map<string, unknown>;
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
type PathSteps = { member: string; keys: [string, string][] }[];

const STEP = /\/([A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)/y;
const KEY_PREDICATE = /\[([\w.-]+)=(?:'([^']*)'|"([^"]*)")\]/y;
/**
 * Paths parsed lately: a commit asks for each changed path's steps several times (is it only
 * named, does it repeat a value, which entry does it reprint). Shared, never modified; emptied when full.
 */
const parsedPaths = new Map<string, PathSteps | undefined>();
const PARSED_PATHS_MAX = 256;

/** Steps of a data path: member name (as in RFC 7951 JSON) and key predicates. */
function pathSteps(path: string): PathSteps | undefined {
  if (parsedPaths.has(path)) return parsedPaths.get(path);
  let steps: PathSteps | undefined = [];
  let at = 0;
  while (at < path.length) {
    STEP.lastIndex = at;
    const m = STEP.exec(path);
    if (!m) {
      steps = undefined;
      break;
    }
    at = STEP.lastIndex;
    const keys: [string, string][] = [];
    for (;;) {
      KEY_PREDICATE.lastIndex = at;
      const k = KEY_PREDICATE.exec(path);
      if (!k) break;
      keys.push([k[1]!, k[2] ?? k[3] ?? '']);
      at = KEY_PREDICATE.lastIndex;
    }
    steps.push({ member: m[1]!, keys });
  }
  if (parsedPaths.size >= PARSED_PATHS_MAX) parsedPaths.clear();
  parsedPaths.set(path, steps);
  return steps;
}

function entryMatches(entry: unknown, keys: [string, string][]): boolean {
  return !!entry && typeof entry === 'object' && keys.every(([k, v]) => String((entry as ConfigJson)[k]) === v);
}

/**
 * Where each entry of a JSON list is, by its key values, for one set of key names; kept with the
 * list and handed on to the next version of it when an entry is replaced where it was (a rule
 * edit), so that finding one rule among 10,000 is not a scan on every commit (issue 8).
 */
const entryPositions = new WeakMap<readonly unknown[], { names: string; at: Map<string, number> }>();

function keyText(entry: unknown, names: string[]): string | undefined {
  if (!entry || typeof entry !== 'object') return undefined;
  return names.map((k) => String((entry as ConfigJson)[k])).join('\u0000');
}

/** The index of the entry of `list` with these key values (-1: none). */
function indexOfEntry(list: readonly unknown[], keys: [string, string][]): number {
  const names = keys.map(([k]) => k);
  const sig = names.join('\u0000');
  let known = entryPositions.get(list);
  if (!known || known.names !== sig) {
    const at = new Map<string, number>();
    list.forEach((e, i) => {
      const t = keyText(e, names);
      if (t !== undefined && !at.has(t)) at.set(t, i);
    });
    known = { names: sig, at };
    entryPositions.set(list, known);
  }
  const i = known.at.get(keys.map(([, v]) => v).join('\u0000'));
  // The index is a hint checked against the entry itself.
  return i !== undefined && entryMatches(list[i], keys) ? i : list.findIndex((e) => entryMatches(e, keys));
}

/** `list` (a copy of `from`) has its entries where `from` has them: it takes over `from`'s index. */
function samePositions(from: readonly unknown[], list: readonly unknown[]): void {
  const known = entryPositions.get(from);
  if (known) entryPositions.set(list, known);
}

/** Index of the last step of a path that names list entries (-1: none). */
function deepestKeyed(steps: { keys: [string, string][] }[]): number {
  let deepest = -1;
  steps.forEach((st, i) => {
    if (st.keys.length) deepest = i;
  });
  return deepest;
}

/** The XPath selecting steps[0..deepest] (one form per entry: the key of printedEntries); undefined when a key value holds a quote. */
function entrySelector(steps: PathSteps, deepest: number): string | undefined {
  if (steps.slice(0, deepest + 1).some((st) => st.keys.some(([, v]) => v.includes("'")))) return undefined;
  return steps.slice(0, deepest + 1).map((st) => `/${st.member}${st.keys.map(([k, v]) => `[${k}='${v}']`).join('')}`).join('');
}

/** The list entry `selector` names as `tree` holds it now, taken from its printed ancestors (undefined: absent). */
function printedEntry(tree: DataTree, selector: string, steps: PathSteps, deepest: number): unknown {
  let printed: unknown = printSelected(tree, selector);
  for (let i = 0; i <= deepest && printed !== undefined; i++) {
    const v = (printed as ConfigJson)[steps[i]!.member];
    printed = Array.isArray(v) ? v.find((e) => entryMatches(e, steps[i]!.keys)) : v;
  }
  return printed;
}

/**
 * A nested list entry (a firewall rule) printed from `tree` for the commit's validation, keyed as
 * withNestedEntryReprinted looks it up; undefined when the path cannot be put in that form.
 */
export function printNestedEntry(tree: DataTree, entryPath: string): { selector: string; entry: unknown } | undefined {
  const steps = pathSteps(entryPath);
  if (!steps) return undefined;
  const deepest = deepestKeyed(steps);
  if (deepest !== steps.length - 1 || deepest < 1) return undefined;
  const selector = entrySelector(steps, deepest);
  return selector === undefined ? undefined : { selector, entry: printedEntry(tree, selector, steps, deepest) };
}

/**
 * `json` with the list entry a changed path falls in reprinted, when that entry is nested below a
 * top-level list entry (a firewall rule of a VRF): only that entry is printed, its ancestors are
 * shallow copies and everything else is shared. Undefined when the path names no nested entry, or
 * a new one (its position is the tree's to tell: the caller prints more).
 */
function withNestedEntryReprinted(tree: DataTree, json: ConfigJson, path: string, done: Set<string>, printedEntries?: Map<string, unknown>): ConfigJson | undefined {
  const steps = pathSteps(path);
  if (!steps) return undefined;
  const deepest = deepestKeyed(steps);
  if (deepest === 0 && steps.length > 1) return withLeafReprinted(tree, json, path, steps);
  if (deepest < 1) return undefined;
  const selector = entrySelector(steps, deepest);
  if (selector === undefined) return undefined;
  if (done.has(selector)) return json; // several leaves of one entry: printed once
  done.add(selector);
  // The entry as it is now (absent when removed); printed already when the commit's validation needed it.
  const printed: unknown = printedEntries?.has(selector) ? printedEntries.get(selector) : printedEntry(tree, selector, steps, deepest);
  const out: ConfigJson = { ...json };
  let holder: ConfigJson = out;
  for (let i = 0; i <= deepest; i++) {
    const st = steps[i]!;
    const v = holder[st.member];
    if (i === deepest) {
      if (!Array.isArray(v)) return undefined;
      const index = indexOfEntry(v, st.keys);
      if (index < 0) return undefined;
      // Recorded (core/array-copies.ts): the plane's delta then looks only at the replaced entry.
      const list = recordedCopy(v);
      if (printed === undefined) {
        forget(list);
        list.splice(index, 1);
      } else {
        replaceAt(list, index, printed);
        if (entryMatches(printed, st.keys)) samePositions(v, list);
      }
      if (list.length) holder[st.member] = list;
      else delete holder[st.member];
      return out;
    }
    if (Array.isArray(v)) {
      const index = indexOfEntry(v, st.keys);
      if (index < 0) return undefined;
      const list = recordedCopy(v);
      const copy = { ...(list[index] as ConfigJson) };
      replaceAt(list, index, copy);
      samePositions(v, list);
      holder[st.member] = list;
      holder = copy;
    } else if (v && typeof v === 'object') {
      const copy = { ...(v as ConfigJson) };
      holder[st.member] = copy;
      holder = copy;
    } else {
      return undefined;
    }
  }
  return undefined;
}

/**
 * `json` with one leaf inside a top-level list entry's containers (a VRF's firewall default-action)
 * set as the tree has it now: the leaf's selection is printed (so its JSON type is libyang's), its
 * ancestors are shallow copies. Undefined when it is not a plain leaf of an existing entry.
 */
function withLeafReprinted(tree: DataTree, json: ConfigJson, path: string, steps: PathSteps): ConfigJson | undefined {
  if (steps[0]!.keys.some(([, v]) => v.includes("'"))) return undefined;
  let printed: unknown = printSelected(tree, path);
  for (let i = 0; i < steps.length && printed !== undefined; i++) {
    const v = (printed as ConfigJson)[steps[i]!.member];
    printed = Array.isArray(v) && i === 0 ? v.find((e) => entryMatches(e, steps[i]!.keys)) : v;
  }
  if (printed !== undefined && (typeof printed === 'object' && printed !== null)) return undefined; // not a plain leaf
  const out: ConfigJson = { ...json };
  let holder: ConfigJson = out;
  for (let i = 0; i < steps.length; i++) {
    const st = steps[i]!;
    const v = holder[st.member];
    if (i === steps.length - 1) {
      if (v !== undefined && typeof v === 'object' && v !== null) return undefined;
      if (printed === undefined) delete holder[st.member];
      else holder[st.member] = printed;
      return out;
    }
    if (i === 0) {
      if (!Array.isArray(v)) return undefined;
      const index = v.findIndex((e) => entryMatches(e, st.keys));
      if (index < 0) return undefined;
      const list = recordedCopy(v);
      const copy = { ...(list[index] as ConfigJson) };
      replaceAt(list, index, copy);
      holder[st.member] = list;
      holder = copy;
    } else if (v && typeof v === 'object' && !Array.isArray(v)) {
      const copy = { ...(v as ConfigJson) };
      holder[st.member] = copy;
      holder = copy;
    } else {
      return undefined;
    }
  }
  return undefined;
}

/** What `steps` name in `json` (list entries found through the lists' key index); undefined when absent. */
function nodeAt(json: ConfigJson, steps: PathSteps): unknown {
  let at: unknown = json;
  for (const st of steps) {
    if (!at || typeof at !== 'object' || Array.isArray(at)) return undefined;
    const v = (at as ConfigJson)[st.member];
    at = Array.isArray(v) ? (st.keys.length ? v[indexOfEntry(v, st.keys)] : undefined) : v;
  }
  return at;
}

/** Whether a path names an existing container or list entry of `json`. */
function existsIn(json: ConfigJson, path: string): boolean {
  const steps = pathSteps(path);
  const at = steps && nodeAt(json, steps);
  return !!at && typeof at === 'object' && !Array.isArray(at);
}

/** Whether `path` names a plain leaf of `json` whose value prints as `value` (setting it again changes nothing). */
function holdsLeafValue(json: ConfigJson, path: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  const steps = pathSteps(path);
  // A leaf of a nested entry (a rule's) is reprinted with its entry anyway.
  if (!steps || steps.at(-1)!.keys.length || deepestKeyed(steps) > 0) return false;
  const at = nodeAt(json, steps);
  return (typeof at === 'string' || typeof at === 'number' || typeof at === 'boolean') && String(at) === value;
}

function derivedJson(tree: DataTree, base: JsonBase): ConfigJson | undefined {
  if (!base.json) return undefined;
  // Edits of existing entries deep in a large subtree (one firewall rule among thousands): reprint
  // those entries only. Naming an existing entry or container on the way changes nothing itself.
  let nested: ConfigJson | undefined = base.json;
  const baseJson = base.json;
  const done = new Set<string>();
  // A leaf set to the value it had (the edit repeats a VRF's default-action) changes nothing either.
  const changed = base.changedPaths.filter((q) => !(base.mentioned?.has(q) && existsIn(baseJson, q)) && !holdsLeafValue(baseJson, q, base.values?.get(q)));
  for (const p of changed) {
    nested = nested && withNestedEntryReprinted(tree, nested, p, done, base.printedEntries);
    if (!nested) break;
  }
  if (nested) return nested;
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

/** Each leaf the ops set to a value, when that is the only op on its path (a path set twice or removed too is left out). */
function leafValuesOf(ops: LyOp[]): Map<string, string> {
  const values = new Map<string, string>();
  const seen = new Set<string>();
  for (const o of ops) {
    if (seen.has(o.path)) values.delete(o.path);
    else if (o.op === 'set' && o.value !== undefined) values.set(o.path, o.value);
    seen.add(o.path);
  }
  return values;
}

/** Whether a node exists at `path` (a lookup, not an XPath evaluation); false when the path cannot be looked up. */
export function existsAt(tree: DataTree, path: string): boolean {
  try {
    return tree.exists(path);
  } catch {
    return false; // the caller then validates the whole tree
  }
}

/**
 * The rule entries, each printed from the tree (RFC 7951 JSON) and checked by ruleEntryValid;
 * undefined when one is not valid or cannot be printed alone (the caller validates the whole tree).
 */
function printedRulesIfValid(tree: DataTree, rulePaths: Iterable<string>): Map<string, unknown> | undefined {
  const printed = new Map<string, unknown>();
  for (const path of rulePaths) {
    let rule: { selector: string; entry: unknown } | undefined;
    try {
      rule = printNestedEntry(tree, path);
    } catch {
      return undefined; // libyang's full validation gives the verdict and its errors
    }
    if (!rule || !ruleEntryValid(rule.entry)) return undefined;
    printed.set(rule.selector, rule.entry);
  }
  return printed;
}

function validatedConfig(root: ConfigRoot, tree: DataTree, base?: JsonBase, printed?: ConfigJson): ValidatedConfig {
  let json: ConfigJson | undefined = printed;
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

/**
 * Documents at least this long (characters of XML) are parsed and validated by the libyang worker,
 * not on the main thread (about 7,500 firewall rules): below it the call is short enough, and the
 * worker's start (tens of ms, a second libyang instance in memory) would cost more than it saves.
 */
export const WORKER_MIN_CHARS = 1024 * 1024;

/** A configuration validated off the main thread, with libyang's diff from the one it replaces. */
export interface OffThreadValidation {
  next: ValidatedConfig;
  /** libyang's diff (JSON) from the previous configuration; '' when equal. */
  diff: string;
}

export class ConfigStore {
  running!: ValidatedConfig;
  /**
   * Running's tree holds a commit's edits that are not committed yet (applyToRunning changed it in
   * place; setRunning or rebuildRunning end that). Reads of running that bypass the commit queue
   * must wait while it is set.
   */
  runningTreeInFlux = false;
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
  /** What a leaf's type allows, for error messages (read from the modules on first use). */
  private readonly restrictions: YangRestrictions;
  /** The file the initial configuration came from (loadInitial), for errors that must name it. */
  initialFile: string | undefined;
  /** Commits that changed only firewall rules are validated on those rules (see local-validation.ts). */
  private readonly localRuleValidation: boolean;
  /** How running's changes were validated: whole tree by libyang, or changed rules only (tests, benchmarks). */
  readonly validations = { full: 0, localRules: 0 };
  /** The changes of running since running.xml was last written whole (large datastores). */
  readonly journal: RunningJournal;
  /** How running was saved: whole file, or a record appended to the journal (tests, benchmarks). */
  readonly saves = { whole: 0, journal: 0 };

  /** libyang in a worker thread, for large documents (started on first use, stopped when idle). */
  private worker: YangWorker | undefined;
  /** What went to the worker (tests, benchmarks): checks of edits, and commits. */
  readonly offThread = { checks: 0, commits: 0 };
  /** Documents at least this long go to the worker (tests lower it). */
  workerMinChars = WORKER_MIN_CHARS;

  constructor(
    private readonly yang: YangContext,
    readonly schema: SchemaIndex,
    readonly stateDir: string,
  ) {
    this.restrictions = new YangRestrictions(yang);
    this.localRuleValidation = firewallModuleIsKnown(yang);
    this.journal = new RunningJournal(this.runningFile, schema);
  }

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
  /** libyang's errors about `root` (or an edit, without root) with messages that say what is allowed and keyed paths. */
  refineErrors(err: unknown, root?: ConfigRoot): unknown {
    return refineYangException(err, root, this.restrictions);
  }

  validated(root: ConfigRoot, base?: JsonBase): ValidatedConfig {
    let tree: DataTree;
    try {
      tree = this.tree(root, true);
    } catch (err) {
      throw refineYangException(err, root, this.restrictions);
    }
    return validatedConfig(root, tree, base);
  }

  /**
   * Validate `root`, which is running with `ops` applied, without parsing or copying the datastore:
   * the ops change running's own libyang tree, which libyang then validates. On failure running's
   * tree is rebuilt from running's content (so running is unchanged) and the error is thrown.
   */
  applyToRunning(root: ConfigRoot, ops: LyOp[]): ValidatedConfig {
    const tree = this.running.tree;
    // Running's JSON, if printed, still describes the tree as it was before the ops.
    const base: JsonBase = {
      json: this.running.printedJson,
      changedPaths: ops.map((o) => o.path),
      mentioned: new Set(ops.filter((o) => o.op === 'set' && o.value === undefined).map((o) => o.path)),
      values: leafValuesOf(ops),
    };
    const rules = this.localRuleValidation ? locallyCheckableRules(ops, (p) => existsAt(tree, p)) : undefined;
    this.runningTreeInFlux = true;
    try {
      for (const op of ops) {
        if (op.op === 'remove') tree.removePath(op.path);
        else tree.setPath(op.path, op.value);
      }
      // Only rules changed and they are valid: the rest of the tree is as it was validated.
      // Anything else, or a rule that is not valid, gets libyang's full validation and its errors.
      const printed = rules && printedRulesIfValid(tree, rules);
      if (printed) {
        this.validations.localRules += 1;
        // The same prints give the subsystems' JSON of these rules (derivedJson).
        base.printedEntries = printed;
      } else {
        this.validations.full += 1;
        tree.validate({ configOnly: true });
      }
    } catch (err) {
      this.rebuildRunning();
      throw refineYangException(err, root, this.restrictions);
    }
    this.runningVersion += 1;
    return validatedConfig(root, tree, base);
  }

  /** The libyang worker, when this context can be rebuilt in one and the document is large enough. */
  private workerFor(chars: number): YangWorker | undefined {
    if (chars < this.workerMinChars || !this.yang.recipe) return undefined;
    this.worker ??= new YangWorker(this.yang.recipe(), 10_000, {
      started: () => log.info({ minChars: this.workerMinChars }, 'libyang worker started (a large document)'),
      stopped: (reason) => log.info({ reason }, 'libyang worker stopped'),
    });
    return this.worker;
  }

  /**
   * libyang's check of the values an edit writes (a parse without validation); a large edit is
   * parsed by the worker while this thread keeps serving. Throws the refined YangException.
   */
  async checkValues(text: string): Promise<void> {
    const worker = this.workerFor(text.length);
    try {
      let checked = false;
      if (worker) {
        this.offThread.checks += 1;
        log.info({ chars: text.length }, 'large edit: values checked in the libyang worker');
        try {
          await worker.check(text, 'config', false);
          checked = true;
        } catch (err) {
          if (err instanceof YangException) throw err;
          log.warn({ err: err instanceof Error ? err.message : String(err) }, 'libyang worker failed: checking on the main thread');
        }
      }
      if (!checked) this.yang.parse(text, { format: 'xml', kind: 'config', validate: false }).free();
    } catch (err) {
      throw refineYangException(err, undefined, this.restrictions);
    }
  }

  /**
   * `root` validated, and diffed against `prev`, by the libyang worker; running's tree of it then
   * built here in slices (sliced-tree.ts), so that no single call holds this thread for the whole
   * datastore. Undefined when the configuration is small (or the worker is not available, or
   * failed): the caller validates here. Throws the refined YangException when it is not valid:
   * the same errors as validated(root), from the same libyang and modules.
   */
  async validatedOffThread(root: ConfigRoot, prev: ValidatedConfig): Promise<OffThreadValidation | undefined> {
    const t0 = performance.now();
    const nextText = await this.xmlInSlices(root);
    const worker = this.workerFor(nextText.length);
    if (!worker) return undefined;
    const t1 = performance.now();
    let r: { diff: string; json: string };
    try {
      this.offThread.commits += 1;
      log.info({ chars: nextText.length }, 'large configuration: validated in the libyang worker');
      r = await worker.commit(this.xml(prev.root), nextText);
    } catch (err) {
      if (err instanceof YangException) throw refineYangException(err, root, this.restrictions);
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'libyang worker failed: validating on the main thread');
      return undefined;
    }
    const t2 = performance.now();
    let tree: DataTree;
    try {
      tree = await slicedTree(this.yang, root, (m) => this.schema.namespaceOf(m), {
        onValidated: (ms, pieces) => log.debug({ ms: Math.round(ms), pieces }, 'sliced tree validated'),
      });
    } catch (err) {
      throw refineYangException(err, root, this.restrictions);
    }
    const t3 = performance.now();
    const json = r.json.trim() ? JSON.parse(r.json) as ConfigJson : {};
    log.debug({ xmlMs: Math.round(t1 - t0), workerMs: Math.round(t2 - t1), slicedTreeMs: Math.round(t3 - t2), jsonParseMs: Math.round(performance.now() - t3) },
      'large configuration validated off the main thread');
    return { next: validatedConfig(root, tree, undefined, json), diff: r.diff };
  }

  /** xml(root), printed with the event loop running between slices (a large configuration). */
  xmlInSlices(root: ConfigRoot): Promise<string> {
    return xmlInSlices(root, (m) => this.schema.namespaceOf(m));
  }

  /** Stop the libyang worker (agent shutdown). */
  async close(): Promise<void> {
    await this.worker?.close();
  }

  /** Parse running's tree again from its content (after a change of the tree was refused). */
  rebuildRunning(): void {
    this.runningTreeInFlux = false;
    const old = this.running;
    this.running = validatedConfig(old.root, this.tree(old.root, true));
    this.runningVersion += 1;
    old.tree.free();
  }

  /** Make `next` the running configuration (already validated and applied). */
  setRunning(next: ValidatedConfig): void {
    this.runningTreeInFlux = false;
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

  /** No running, startup or rollback file: the agent's first start in this state directory. */
  isFresh(): boolean {
    return ![this.runningFile, this.startupFile, this.rollbackFile].some((f) => existsSync(f));
  }

  /**
   * Initial content: running.xml, else the --startup file (given explicitly, it wins over the stored
   * startup datastore), else startup.xml, else the factory configuration, else empty. A file that is there but empty, truncated or not UTF-8 stops the
   * start with an error that names it and says how to start anyway: the agent never runs on less
   * than what was stored.
   */
  async loadInitial(startupFile?: string, factoryXml?: string): Promise<ConfigRoot> {
    // Temp files of a write that a crash interrupted: the target still holds the previous content.
    for (const f of await readdir(this.stateDir).catch(() => [] as string[])) {
      if (/^\.(running|startup|rollback)\.xml\.\d+\.\d+\.tmp$/.test(f)) await unlink(join(this.stateDir, f)).catch(() => undefined);
    }
    if (existsSync(this.startupFile)) {
      this.startup = await this.readStateFile(this.startupFile, 'startup', startupFile);
    }
    // A confirmed commit that was never confirmed when the agent stopped is reverted.
    for (const [file, what] of [[this.rollbackFile, 'rollback of an unconfirmed commit'], [this.runningFile, 'running'],
      [startupFile, '--startup'], [this.startupFile, 'startup']] as const) {
      if (file && existsSync(file)) {
        log.info({ file, what }, 'loading configuration');
        this.initialFile = file;
        if (file === this.runningFile) {
          // running.xml plus the changes journaled since it was last written whole.
          const root = await this.readStateFile(file, what, startupFile);
          try {
            return this.journal.replay(root, await readFile(file, 'utf8'));
          } catch (err) {
            throw new Error(`${err instanceof Error ? err.message : String(err)}; the agent did not start. To start from running.xml alone, move the journal aside (mv ${this.journal.file} ${this.journal.file}.broken)`, { cause: err });
          }
        }
        return file === this.startupFile && this.startup ? this.startup : this.readStateFile(file, what, startupFile);
      }
    }
    return factoryXml ? this.parseDocument(factoryXml) : { children: [] };
  }

  /** One configuration file read at start, or an Error naming it and the way to start anyway. */
  private async readStateFile(file: string, what: string, startupFile: string | undefined): Promise<ConfigRoot> {
    const fail = (problem: string): Error => {
      const howToStart = what === '--startup'
        ? `fix ${file}, or start without --startup`
        : `to start anyway, move it aside (mv ${file} ${file}.broken) and start again: the agent then loads `
          + (startupFile ? `the --startup file ${startupFile}`
            : file !== this.startupFile && existsSync(this.startupFile) ? `${this.startupFile} (or the file given with --startup FILE)`
              : 'the file given with --startup FILE, or an empty configuration without it');
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

  /**
   * Save running durably before the commit is answered: a journal record of the change from
   * `previous` when that is possible (see running-journal.ts), else running.xml written whole.
   */
  async persistRunning(previous?: ConfigRoot): Promise<void> {
    try {
      if (previous && this.journal.append(previous, this.running.root)) {
        this.saves.journal += 1;
        return;
      }
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err), file: this.journal.file }, 'appending to the running journal failed: writing running.xml whole');
      this.journal.invalidate();
    }
    const text = this.documentText(this.running.root);
    try {
      await writeFileAtomic(this.runningFile, text);
    } catch (err) {
      // Running is now ahead of what is saved: no journal record may be based on it.
      this.journal.invalidate();
      throw err;
    }
    this.journal.rebased(text);
    this.saves.whole += 1;
  }

  /**
   * Fold the journal into running.xml (running.xml written whole, the journal started again from
   * it): false when there was nothing to fold. On failure the journal takes no more records (the
   * next commit writes running.xml whole), since running.xml may now be ahead of the journal's base.
   */
  async foldJournal(): Promise<boolean> {
    if (this.journal.recordCount === 0 || this.runningTreeInFlux) return false;
    const text = this.documentText(this.running.root);
    try {
      await writeFileAtomic(this.runningFile, text);
      this.journal.restartOn(text);
    } catch (err) {
      this.journal.invalidate();
      throw err;
    }
    return true;
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
