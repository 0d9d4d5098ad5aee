// RFC 6241 <edit-config> semantics applied to a ConfigRoot: the operation attribute (merge, replace,
// create, delete, remove), default-operation none, list/leaf-list identity, choice case exclusion
// and YANG ordered-by-user insertion. Values are only carried here; libyang checks them.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { XmlElement } from '../netconf/xml-element.js';
import { NetconfError } from '../../core/netconf-error.js';
import { forget, recordedCopy, replaceAt } from '../../core/array-copies.js';
import { identityOf, sameLeaf, type ConfigNode, type ConfigParent, type ConfigRoot } from './config-tree.js';
import type { DataSchemaNode, SchemaIndex } from './schema-index.js';

export const NETCONF_BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const YANG_NS = 'urn:ietf:params:xml:ns:yang:1';

export type EditOperation = 'merge' | 'replace' | 'create' | 'delete' | 'remove' | 'none';
export type ErrorOption = 'stop-on-error' | 'continue-on-error' | 'rollback-on-error';

/** One point of the datastore that an edit touched, for netconf-config-change. */
export interface EditChange {
  /** Data path, module names as prefixes: /tandem-vrf:vrf[name='main']/tandem-firewall:firewall */
  path: string;
  operation: 'create' | 'delete' | 'merge' | 'replace' | 'remove';
}

/**
 * The same edit as libyang path operations (lyd_new_path / lyd_free_tree), so that a commit can
 * replay it on a copy of running's tree instead of re-parsing the whole datastore. Undefined when
 * the edit has something paths cannot express (positioned inserts, prefixed values, anydata).
 */
export type LyOp = { op: 'set'; path: string; value?: string } | { op: 'remove'; path: string };

/**
 * Above this many path operations an edit keeps none (lyOps undefined): a commit replays at most a
 * few hundred in place (IN_PLACE_MAX_OPS of config-service.ts) and parses the configuration
 * instead beyond that, so a longer list is never used, and keeping 500,000 path strings for a
 * 100,000-rule edit cost seconds of garbage collection on the main thread.
 */
export const MAX_LY_OPS = 1024;

export interface EditResult {
  /** The edited configuration (the input root is left as it was; unchanged subtrees are shared). */
  root: ConfigRoot;
  changes: EditChange[];
  lyOps: LyOp[] | undefined;
  /** Errors collected under continue-on-error (others throw on the first one). */
  errors: NetconfError[];
  /** Elements of the edit handled (its size). */
  nodes: number;
}

/** Nodes an edit handles between two turns of the event loop (applyEditInSlices): a few ms of work. */
const SLICE_NODES = 2000;

const OPERATIONS = new Set<EditOperation>(['merge', 'replace', 'create', 'delete', 'remove', 'none']);

/** Parse a NETCONF operation name, or throw the rpc-error RFC 6241 asks for. */
export function parseOperation(value: string, what: string): EditOperation {
  const v = value.trim() as EditOperation;
  if (!OPERATIONS.has(v)) {
    throw new NetconfError('bad-attribute', 'protocol', `invalid ${what} '${value}'`, {
      info: [{ name: 'bad-attribute', value: what }, { name: 'bad-element', value: what }],
    });
  }
  return v;
}

function quote(v: string): string {
  return v.includes("'") ? `"${v}"` : `'${v}'`;
}

/** Data path of `node` under `parentPath` (prefix written when the module changes). */
export function childPath(parentPath: string, parentModule: string | undefined, node: ConfigNode): string {
  const s = node.schema;
  let p = `${parentPath}/${s.module !== parentModule ? `${s.module}:` : ''}${s.name}`;
  if (s.kind === 'list') {
    for (const k of s.keys) p += `[${k}=${quote(node.children.find((c) => c.schema.name === k)?.value ?? '')}]`;
  } else if (s.kind === 'leaf-list') {
    p += `[.=${quote(node.value ?? '')}]`;
  }
  return p;
}

/**
 * Identity -> position map of one sibling array, so that finding one rule among 10,000 is not a
 * scan. It holds positions, not nodes: an edit replaces a node where it was (the same identity at
 * the same position), so the copy of an array shares its original's index as it is, and an index
 * never keeps a superseded node alive. (Until stop 15 it mapped to nodes, layered per copy: the
 * layers of a VRF's children held the firewall node of each of the last 64 commits, each with its
 * copy of 10,000 rules, until the next flattening; and a lookup was followed by an indexOf over the
 * list to find the node's place.) An entry appended gets a layer over the shared index; after
 * MAX_LAYERS layers it is flattened (amortised). An insert elsewhere or a removal moves positions:
 * that array's index is dropped and rebuilt at its next lookup, O(entries) like the array copy that
 * made it.
 */
class PositionIndex {
  private static readonly MAX_LAYERS = 64;
  private readonly own = new Map<string, number>();
  /** Used by more than one array (copyChildren): from then on changed only through a new layer. */
  shared = false;

  private constructor(private readonly base: PositionIndex | undefined, private readonly depth: number) {}

  static of(children: ConfigNode[]): PositionIndex {
    const ix = new PositionIndex(undefined, 0);
    children.forEach((c, i) => {
      const id = identityOf(c);
      if (!ix.own.has(id)) ix.own.set(id, i);
    });
    return ix;
  }

  get(id: string): number | undefined {
    const v = this.own.get(id);
    if (v !== undefined) return v;
    for (let x = this.base; x; x = x.base) {
      const b = x.own.get(id);
      if (b !== undefined) return b;
    }
    return undefined;
  }

  /**
   * This index with `id` at `position` too (an entry appended): changed in place when no other
   * array uses it (the entries of a large edit, one after the other), else a new layer over it.
   */
  with(id: string, position: number): PositionIndex {
    if (!this.shared) {
      this.own.set(id, position);
      return this;
    }
    let out: PositionIndex;
    if (this.depth < PositionIndex.MAX_LAYERS) {
      out = new PositionIndex(this, this.depth + 1);
    } else {
      out = new PositionIndex(undefined, 0);
      const layers: PositionIndex[] = [this];
      for (let x = this.base; x; x = x.base) layers.unshift(x);
      for (const l of layers) for (const [k, n] of l.own) out.own.set(k, n);
    }
    out.own.set(id, position);
    return out;
  }
}

const positionIndex = new WeakMap<ConfigNode[], PositionIndex>();

/** Sibling arrays up to this long are searched without an index (no Map per list entry of a large edit). */
const UNINDEXED_MAX = 8;

/** Where the entry with identity `id` is among `children` (any schema node; -1: absent), through the array's index (built if need be). */
function positionOf(children: ConfigNode[], id: string): number {
  let ix = positionIndex.get(children);
  if (!ix) {
    ix = PositionIndex.of(children);
    positionIndex.set(children, ix);
  }
  return ix.get(id) ?? -1;
}

/** Where the node with identity `id` (of schema node `sn`) is among `children`: -1 when it is not there. */
function findSibling(children: ConfigNode[], id: string, sn: DataSchemaNode): number {
  if (children.length <= UNINDEXED_MAX && !positionIndex.has(children)) {
    const keyed = sn.kind === 'list' || sn.kind === 'leaf-list';
    return children.findIndex((c) => c.schema.name === sn.name && c.schema.module === sn.module && (!keyed || identityOf(c) === id));
  }
  return positionOf(children, id);
}

/** A copy of a sibling array that shares its index (positions are the same). */
function copyChildren(children: ConfigNode[]): ConfigNode[] {
  // Recorded (core/array-copies.ts): the journal's patch then looks only where the edit replaced.
  const copy = recordedCopy(children);
  const ix = positionIndex.get(children);
  if (ix) {
    ix.shared = true;
    positionIndex.set(copy, ix);
  }
  return copy;
}

function insertAt(children: ConfigNode[], idx: number, node: ConfigNode): void {
  forget(children);
  const ix = positionIndex.get(children);
  if (idx < 0 || idx >= children.length) {
    if (ix) positionIndex.set(children, ix.with(identityOf(node), children.length));
    children.push(node);
  } else {
    positionIndex.delete(children); // positions after idx move
    children.splice(idx, 0, node);
  }
}

function removeAt(children: ConfigNode[], idx: number): void {
  forget(children);
  positionIndex.delete(children); // positions after idx move (and the entry must not be found)
  children.splice(idx, 1);
}

class EditApplier {
  readonly changes: EditChange[] = [];
  readonly errors: NetconfError[] = [];
  lyOps: LyOp[] | undefined = [];
  /** Nodes this edit created or copied: only these may change (stored trees are shared, never mutated). */
  private readonly owned = new WeakSet<ConfigNode>();

  /** A node of `parent` that this edit may change: copied (children array included) on first use. */
  private own(parent: ConfigParent, node: ConfigNode, at: number): ConfigNode {
    if (this.owned.has(node)) return node;
    const copy: ConfigNode = { ...node, children: copyChildren(node.children) };
    // In its place (`at`: where `node` is): the same identity at the same position (the parent's index stays right).
    replaceAt(parent.children, at, copy);
    this.owned.add(copy);
    return copy;
  }

  private setOp(path: string, node: ConfigNode): void {
    if (!this.lyOps) return;
    const s = node.schema;
    if (s.kind === 'anydata' || s.kind === 'anyxml' || node.valueNs || /'[^\]]*"|"[^\]]*'/.test(path)) {
      this.lyOps = undefined;
      return;
    }
    if (s.kind === 'leaf') {
      if (node.value === undefined || node.value === '') this.lyOps = undefined;
      else this.lyOps.push({ op: 'set', path, value: node.value });
    } else {
      this.lyOps.push({ op: 'set', path });
    }
    if (this.lyOps && this.lyOps.length > MAX_LY_OPS) this.lyOps = undefined;
  }

  private removeOp(path: string): void {
    this.lyOps?.push({ op: 'remove', path });
    if (this.lyOps && this.lyOps.length > MAX_LY_OPS) this.lyOps = undefined;
  }

  constructor(private readonly schema: SchemaIndex, private readonly errorOption: ErrorOption) {}

  fail(err: NetconfError): void {
    if (this.errorOption !== 'continue-on-error') throw err;
    this.errors.push(err);
  }

  opOf(el: XmlElement, inherited: EditOperation): EditOperation {
    const a = el.attrs.find((x) => x.name === 'operation' && x.ns === NETCONF_BASE_NS);
    return a ? parseOperation(a.value, 'operation') : inherited;
  }

  resolve(parentSchemaPath: string, el: XmlElement, parentDataPath: string): DataSchemaNode {
    const mod = this.schema.moduleByNamespace(el.ns)?.name;
    const at = `${parentDataPath}/${mod ? `${mod}:` : ''}${el.name}`;
    if (!el.ns || !this.schema.moduleByNamespace(el.ns)) {
      throw new NetconfError('unknown-namespace', 'application', `unknown namespace '${el.ns}' of element '${el.name}'`, {
        path: at,
        info: [{ name: 'bad-element', value: el.name }, { name: 'bad-namespace', value: el.ns }],
      });
    }
    const sn = this.schema.findChild(parentSchemaPath, el.ns, el.name);
    if (!sn) {
      throw new NetconfError('unknown-element', 'application', `unknown element '${el.name}' in namespace '${el.ns}' at ${parentDataPath || '/'}`, {
        path: at,
        info: [{ name: 'bad-element', value: el.name }],
      });
    }
    if (!sn.config) {
      throw new NetconfError('invalid-value', 'application', `'${el.name}' is state data and cannot be configured`, {
        path: at,
        info: [{ name: 'bad-element', value: el.name }],
      });
    }
    return sn;
  }

  /** Nodes handled so far: every SLICE_NODES of them the walk pauses (a yield) for the async driver. */
  nodes = 0;

  *applyChildren(parent: ConfigParent, parentSchemaPath: string, parentDataPath: string, parentModule: string | undefined,
    elements: XmlElement[], inherited: EditOperation, skipKeys: string[] = []): Generator<void, void, void> {
    for (const el of elements) {
      if (++this.nodes % SLICE_NODES === 0) yield;
      try {
        const sn = this.resolve(parentSchemaPath, el, parentDataPath);
        if (skipKeys.includes(sn.name) && sn.module === parentModule) {
          const op = this.opOf(el, 'none');
          if (op === 'delete' || op === 'remove' || op === 'create' || op === 'replace') {
            throw new NetconfError('bad-attribute', 'protocol', `list key '${sn.name}' cannot take operation '${op}'`, {
              path: `${parentDataPath}/${sn.name}`, info: [{ name: 'bad-attribute', value: 'operation' }, { name: 'bad-element', value: sn.name }],
            });
          }
          continue;
        }
        yield* this.applyOne(parent, sn, parentDataPath, parentModule, el, this.opOf(el, inherited));
      } catch (err) {
        if (err instanceof NetconfError) this.fail(err);
        else throw err;
      }
    }
  }

  private newNode(sn: DataSchemaNode, el: XmlElement): ConfigNode {
    const node: ConfigNode = { schema: sn, children: [] };
    if (sn.kind === 'leaf' || sn.kind === 'leaf-list') {
      node.value = el.text;
      const m = /^([A-Za-z_][\w.-]*):/.exec(el.text.trim());
      if (m && el.nsScope[m[1]]) node.valueNs = { [m[1]]: el.nsScope[m[1]] };
      // Instance-identifiers may use several prefixes.
      for (const pm of el.text.matchAll(/([A-Za-z_][\w.-]*):[A-Za-z_]/g)) {
        const p = pm[1];
        if (el.nsScope[p]) node.valueNs = { ...(node.valueNs ?? {}), [p]: el.nsScope[p] };
      }
    } else if (sn.kind === 'anydata' || sn.kind === 'anyxml') {
      node.raw = el.children.length ? el.children.map((c) => rawXml(c)).join('') : el.text;
    }
    return node;
  }

  private listKeyNodes(sn: DataSchemaNode, el: XmlElement, dataPath: string): ConfigNode[] {
    return sn.keys.map((k) => {
      const kel = el.children.find((c) => c.name === k && this.schema.moduleByNamespace(c.ns)?.name === sn.module);
      if (!kel) {
        throw new NetconfError('missing-element', 'protocol', `list entry '${sn.name}' is missing its key '${k}'`, {
          path: dataPath, info: [{ name: 'bad-element', value: k }],
        });
      }
      const ksn = this.schema.findChild(sn.path, kel.ns, k);
      if (!ksn) throw new NetconfError('unknown-element', 'application', `key '${k}' not in schema`, { info: [{ name: 'bad-element', value: k }] });
      return this.newNode(ksn, kel);
    });
  }

  private insertNode(parent: ConfigParent, node: ConfigNode, el: XmlElement, parentDataPath: string): void {
    const s = node.schema;
    // A new node of one case removes the nodes of every other case of the same choice.
    if (s.choiceCases.length) {
      const kept = parent.children.filter((c) => !c.schema.choiceCases.some((cc) =>
        s.choiceCases.some((nc) => nc.choice === cc.choice && nc.caseName !== cc.caseName)));
      if (kept.length !== parent.children.length) {
        parent.children = kept;
        this.lyOps = undefined;
      }
    }
    const insert = el.attrs.find((a) => a.name === 'insert' && a.ns === YANG_NS)?.value;
    if (s.orderedByUser && insert && insert !== 'last') {
      this.lyOps = undefined;
      const sameKind = (c: ConfigNode) => c.schema === s || (c.schema.module === s.module && c.schema.name === s.name);
      let idx = -1;
      if (insert === 'first') {
        idx = parent.children.findIndex(sameKind);
      } else if (insert === 'before' || insert === 'after') {
        const ref = el.attrs.find((a) => (a.name === 'key' || a.name === 'value') && a.ns === YANG_NS)?.value ?? '';
        const target = s.kind === 'leaf-list'
          ? `${s.module}:${s.name}=${ref}`
          : `${s.module}:${s.name}` + [...ref.matchAll(/\[\s*(?:[\w.-]+:)?([\w.-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*\]/g)]
            .map((m) => `[${m[1]}=${m[2] ?? m[3]}]`).join('');
        const refIdx = positionOf(parent.children, target);
        if (refIdx < 0) {
          throw new NetconfError('bad-attribute', 'application', `insert ${insert} '${ref}': no such entry`, {
            appTag: 'missing-instance', path: parentDataPath, info: [{ name: 'bad-attribute', value: s.kind === 'leaf-list' ? 'value' : 'key' }, { name: 'bad-element', value: s.name }],
          });
        }
        idx = insert === 'before' ? refIdx : refIdx + 1;
      }
      if (idx >= 0) {
        insertAt(parent.children, idx, node);
        return;
      }
    }
    insertAt(parent.children, -1, node);
  }

  private *applyOne(parent: ConfigParent, sn: DataSchemaNode, parentDataPath: string, parentModule: string | undefined,
    el: XmlElement, op: EditOperation): Generator<void, void, void> {
    let probe: ConfigNode;
    if (sn.kind === 'list') {
      probe = { schema: sn, children: this.listKeyNodes(sn, el, `${parentDataPath}/${sn.name}`) };
    } else {
      probe = this.newNode(sn, el);
    }
    this.owned.add(probe);
    const id = identityOf(probe);
    const idx = findSibling(parent.children, id, sn);
    const existing = idx >= 0 ? parent.children[idx] : undefined;
    const path = childPath(parentDataPath, parentModule, probe);
    // Report the points where an operation was asked for (explicitly, or at the top level).
    const explicit = parentDataPath === '' || el.attrs.some((a) => a.name === 'operation' && a.ns === NETCONF_BASE_NS);
    const record = (operation: EditChange['operation']) => {
      if (explicit) this.changes.push({ path, operation });
    };
    const isLeafy = sn.kind === 'leaf' || sn.kind === 'leaf-list' || sn.kind === 'anydata' || sn.kind === 'anyxml';
    const positioned = el.attrs.some((a) => a.name === 'insert' && a.ns === YANG_NS);

    switch (op) {
      case 'delete':
      case 'remove':
        if (!existing) {
          if (op === 'delete') {
            throw new NetconfError('data-missing', 'application', `cannot delete ${path}: it does not exist`, { path });
          }
          return;
        }
        removeAt(parent.children, idx);
        this.removeOp(path);
        record(op);
        return;
      case 'create':
      case 'replace':
      case 'merge': {
        if (op === 'create' && existing) {
          throw new NetconfError('data-exists', 'application', `cannot create ${path}: it already exists`, { path });
        }
        if (isLeafy) {
          if (existing && sn.kind === 'leaf') {
            // The same value again (a firewall's default-action sent along with each rule edit)
            // changes nothing: the node stays the one running shares, so what compares the trees
            // by identity (the journal's record, the plane's delta) finds nothing to do there.
            if (!sameLeaf(existing, probe)) {
              replaceAt(parent.children, idx, probe);
              this.setOp(path, probe);
            }
          } else if (!existing) {
            this.insertNode(parent, probe, el, parentDataPath);
            this.setOp(path, probe);
          } else if (positioned) {
            removeAt(parent.children, idx);
            this.insertNode(parent, probe, el, parentDataPath);
            this.lyOps = undefined;
          } else if (sn.kind !== 'leaf-list') {
            replaceAt(parent.children, idx, probe);
            this.lyOps = undefined;
          }
          record(op === 'create' ? 'create' : op);
          return;
        }
        let node = existing && op !== 'replace' ? this.own(parent, existing, idx) : existing;
        if (op === 'replace' && existing && !positioned) {
          // Replaced where it is: in an ordered-by-user list (firewall rules) the position is part
          // of the configuration, and a replace without 'insert' does not move the entry (as
          // RESTCONF's PUT, RFC 8040 erratum 6277). Path operations would re-create it last.
          replaceAt(parent.children, idx, probe);
          if (sn.orderedByUser) this.lyOps = undefined;
          else {
            this.removeOp(path);
            this.setOp(path, probe);
          }
          node = probe;
        } else if (op === 'replace' && existing) {
          removeAt(parent.children, idx);
          this.removeOp(path);
        }
        if (!node || (op === 'replace' && node !== probe)) {
          node = probe;
          this.insertNode(parent, node, el, parentDataPath);
          this.setOp(path, node);
        } else if (sn.orderedByUser && positioned && op !== 'replace') {
          removeAt(parent.children, parent.children.indexOf(node));
          this.insertNode(parent, node, el, parentDataPath);
          this.lyOps = undefined;
        }
        record(existing ? op : 'create');
        // Under a new or replaced node everything is new, so merge is what the children inherit.
        yield* this.applyChildren(node, sn.path, path, sn.module, el.children, 'merge', sn.kind === 'list' ? sn.keys : []);
        return;
      }
      case 'none': {
        if (isLeafy) return;
        if (existing) {
          yield* this.applyChildren(this.own(parent, existing, idx), sn.path, path, sn.module, el.children, 'none', sn.kind === 'list' ? sn.keys : []);
          return;
        }
        // Not there yet: keep it only if a descendant operation created something inside.
        const keyCount = probe.children.length;
        yield* this.applyChildren(probe, sn.path, path, sn.module, el.children, 'none', sn.kind === 'list' ? sn.keys : []);
        if (probe.children.length > keyCount || sn.presence) {
          if (probe.children.length > keyCount) this.insertNode(parent, probe, el, parentDataPath);
        }
        return;
      }
    }
  }
}

function rawXml(el: XmlElement): string {
  const attrs = el.attrs.map((a) => ` ${a.prefix ? `${a.prefix}:` : ''}${a.name}="${a.value.replace(/"/g, '&quot;')}"`).join('');
  const ns = el.prefix ? ` xmlns:${el.prefix}="${el.ns}"` : ` xmlns="${el.ns}"`;
  const q = el.prefix ? `${el.prefix}:${el.name}` : el.name;
  const inner = el.children.length ? el.children.map(rawXml).join('') : el.text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return `<${q}${ns}${attrs}>${inner}</${q}>`;
}

/**
 * Apply the children of a <config> element to `root`, giving a new root (copy on write: `root` is
 * not changed and shares its untouched subtrees with the result). Throws the first NetconfError
 * unless errorOption is continue-on-error, in which case the errors are returned and the rest applied.
 */
export function applyEdit(root: ConfigRoot, config: XmlElement, schema: SchemaIndex, opts: EditOptions): EditResult {
  const edit = startEdit(root, config, schema, opts);
  while (!edit.walk.next().done) { /* no pause */ }
  return edit.result();
}

/**
 * applyEdit with the event loop running every SLICE_NODES nodes: the same result and errors, but a
 * 100,000-rule edit does not hold the thread for the seconds its walk takes. The input root is not
 * changed meanwhile (the edit copies what it changes), so others may read it between two slices.
 */
export async function applyEditInSlices(root: ConfigRoot, config: XmlElement, schema: SchemaIndex, opts: EditOptions): Promise<EditResult> {
  const edit = startEdit(root, config, schema, opts);
  while (!edit.walk.next().done) await nextTurn();
  return edit.result();
}

export interface EditOptions {
  defaultOperation: 'merge' | 'replace' | 'none';
  errorOption: ErrorOption;
}

function startEdit(root: ConfigRoot, config: XmlElement, schema: SchemaIndex, opts: EditOptions): { walk: Generator<void, void, void>; result: () => EditResult } {
  const applier = new EditApplier(schema, opts.errorOption);
  const out: ConfigRoot = { children: copyChildren(root.children) };
  if (opts.defaultOperation === 'replace') {
    // RFC 6241 7.2: the <config> completely replaces the configuration of the target.
    out.children = [];
    applier.lyOps = undefined;
    applier.changes.push({ path: '/', operation: 'replace' });
  }
  return {
    walk: applier.applyChildren(out, '/', '', undefined, config.children, opts.defaultOperation),
    result: () => ({ root: out, changes: applier.changes, errors: applier.errors, lyOps: applier.lyOps, nodes: applier.nodes }),
  };
}

/** Build a datastore from a complete configuration document (the children of <config>/<data>). */
export function configFromXml(config: XmlElement, schema: SchemaIndex): ConfigRoot {
  return applyEdit({ children: [] }, config, schema, { defaultOperation: 'merge', errorOption: 'stop-on-error' }).root;
}
