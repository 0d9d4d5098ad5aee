// Which schema nodes carry RFC 8341's nacm:default-deny-all / nacm:default-deny-write: read from the
// modules' YIN (libyang prints extension instances there), following uses -> grouping and augment,
// since the binding's compiled-schema view does not carry extensions.
import type { YangContext } from '../../yang/libyang/api.js';
import { logger } from '../../core/log.js';
import { parseXml } from '../netconf/xml-parser.js';
import type { XmlElement } from '../netconf/xml-element.js';
import { schemaKey, type DataPath } from './data-path.js';

const log = logger('nacm');

export const NACM_NS = 'urn:ietf:params:xml:ns:yang:ietf-netconf-acm';
const YIN_NS = 'urn:ietf:params:xml:ns:yang:yin:1';

export type DefaultDeny = 'all' | 'write';

/**
 * RPCs RFC 8341 section 3.2 marks default-deny-all in ietf-netconf (RFC 6241's module carries the
 * statement; the 2011 revision shipped in yang/ietf predates it): only users NACM explicitly permits
 * may kill another session or delete a datastore.
 */
const BUILT_IN: [string, DefaultDeny][] = [
  ['ietf-netconf:kill-session', 'all'],
  ['ietf-netconf:delete-config', 'all'],
];

const DATA_NODES = new Set(['container', 'list', 'leaf', 'leaf-list', 'anydata', 'anyxml', 'rpc', 'action', 'notification']);
const TRANSPARENT = new Set(['choice', 'case', 'input', 'output']);

interface ModuleYin {
  name: string;
  root: XmlElement;
  groupings: Map<string, XmlElement>;
}

export class DefaultDenyIndex {
  private readonly marks = new Map<string, DefaultDeny>();

  constructor(entries: Iterable<[string, DefaultDeny]> = []) {
    for (const [k, v] of entries) this.marks.set(k, v);
  }

  /** Built from every implemented module of the context. */
  static fromContext(yang: YangContext): DefaultDenyIndex {
    const index = new DefaultDenyIndex(BUILT_IN);
    const modules = new Map<string, ModuleYin>();
    const byNs = new Map<string, string>();
    const texts = new Map<string, string>();
    for (const m of yang.modules()) {
      byNs.set(m.namespace, m.name);
      try {
        texts.set(m.name, yang.schemaText(m.name, m.revision, 'yin'));
      } catch (err) {
        log.warn({ module: m.name, err: err instanceof Error ? err.message : String(err) }, 'module not scanned for NACM extensions');
      }
    }
    // Parsing YIN is the slow part: only modules that can carry a mark (they bind the NACM
    // namespace), and those that import them (their groupings may carry one), are read.
    const wanted = new Set([...texts].filter(([, t]) => t.includes(`"${NACM_NS}"`)).map(([n]) => n));
    for (let grew = true; grew;) {
      grew = false;
      for (const [name, t] of texts) {
        if (!wanted.has(name) && [...wanted].some((w) => t.includes(`<import module="${w}"`))) {
          wanted.add(name);
          grew = true;
        }
      }
    }
    for (const m of yang.modules()) {
      const text = texts.get(m.name);
      if (text === undefined || !wanted.has(m.name)) continue;
      let root: XmlElement;
      try {
        root = parseXml(text, { maxElements: Number.MAX_SAFE_INTEGER, maxDepth: 1024 });
      } catch (err) {
        log.warn({ module: m.name, err: err instanceof Error ? err.message : String(err) }, 'module not scanned for NACM extensions');
        continue;
      }
      const groupings = new Map<string, XmlElement>();
      collectGroupings(root, groupings);
      modules.set(m.name, { name: m.name, root, groupings });
    }
    const implemented = new Set(yang.modules().filter((m) => m.implemented).map((m) => m.name));
    for (const mod of modules.values()) {
      if (!implemented.has(mod.name)) continue;
      const walker = new Walker(index, mod, modules, byNs, yang);
      walker.children(mod.root, [], mod.root, new Set());
      for (const aug of mod.root.children.filter((c) => c.ns === YIN_NS && c.name === 'augment')) walker.augment(aug);
    }
    log.debug({ marked: index.marks.size }, 'NACM default-deny nodes');
    return index;
  }

  /** The strongest mark on the node or any ancestor (the extension protects the whole subtree). */
  of(path: DataPath): DefaultDeny | undefined {
    let found: DefaultDeny | undefined;
    for (let i = 1; i <= path.length; i++) {
      const m = this.marks.get(schemaKey(path.slice(0, i)));
      if (m === 'all') return 'all';
      if (m) found = m;
    }
    return found;
  }

  /** Mark of an RPC or notification, by module and name. */
  ofOperation(module: string, name: string): DefaultDeny | undefined {
    return this.marks.get(`${module}:${name}`);
  }

  /** Is any node at or below the top-level node `module:name` marked `which` (default-deny-all by default)? */
  marksUnder(topLevel: string, which: DefaultDeny = 'all'): boolean {
    for (const [k, v] of this.marks) if (v === which && (k === topLevel || k.startsWith(`${topLevel}/`))) return true;
    return false;
  }

  /** Every marked node (schema keys), for logs and tests. */
  entries(): [string, DefaultDeny][] {
    return [...this.marks];
  }

  mark(key: string, what: DefaultDeny): void {
    if (this.marks.get(key) !== 'all') this.marks.set(key, what);
  }
}

function collectGroupings(el: XmlElement, out: Map<string, XmlElement>): void {
  for (const c of el.children) {
    if (c.ns !== YIN_NS) continue;
    if (c.name === 'grouping') {
      const name = attr(c, 'name');
      if (name && !out.has(name)) out.set(name, c);
    }
    collectGroupings(c, out);
  }
}

function attr(el: XmlElement, name: string): string | undefined {
  return el.attrs.find((a) => a.name === name && a.ns === '')?.value;
}

class Walker {
  constructor(
    private readonly index: DefaultDenyIndex,
    private readonly mod: ModuleYin,
    private readonly modules: Map<string, ModuleYin>,
    private readonly byNs: Map<string, string>,
    private readonly yang: YangContext,
  ) {}

  /** Data definitions under `el`, whose data path is `path` ("m:name" steps); `scope` resolves prefixes. */
  children(el: XmlElement, path: string[], scope: XmlElement, seen: Set<XmlElement>): void {
    for (const c of el.children) {
      if (c.ns !== YIN_NS) continue;
      if (DATA_NODES.has(c.name)) {
        const name = attr(c, 'name');
        if (!name) continue;
        const here = [...path, `${this.mod.name}:${name}`];
        const mark = extensionOf(c);
        if (mark) this.index.mark(here.join('/'), mark);
        this.children(c, here, scope, seen);
      } else if (TRANSPARENT.has(c.name)) {
        this.children(c, path, scope, seen);
      } else if (c.name === 'uses') {
        const g = this.grouping(attr(c, 'name') ?? '', c);
        if (g && !seen.has(g)) {
          // Nodes of a grouping belong to the module that uses it.
          const inner = new Set(seen).add(g);
          this.children(g, path, scope, inner);
          for (const aug of c.children.filter((x) => x.ns === YIN_NS && x.name === 'augment')) {
            this.children(aug, [...path, ...this.relativeSteps(attr(aug, 'target-node') ?? '', aug)], scope, inner);
          }
        }
      }
    }
  }

  /** A top-level augment: its nodes belong to this module, under the target's data path. */
  augment(aug: XmlElement): void {
    const target = attr(aug, 'target-node') ?? '';
    const steps = this.relativeSteps(target, aug);
    // Choices and cases in the target are not data nodes: keep only the steps the schema says are.
    const dataSteps: string[] = [];
    let schemaPath = '';
    for (const s of steps) {
      schemaPath += `/${s}`;
      const info = this.yang.schemaNode(schemaPath);
      if (!info) return;
      if (info.kind !== 'choice' && info.kind !== 'case' && info.kind !== 'input' as string && info.kind !== 'output' as string) dataSteps.push(s);
    }
    this.children(aug, dataSteps, aug, new Set());
  }

  /** "/p:a/p:b" or "p:a/b" -> ["m:a", "m:b"] with prefixes resolved to module names. */
  private relativeSteps(target: string, at: XmlElement): string[] {
    const out: string[] = [];
    let module = this.mod.name;
    for (const step of target.split('/').filter(Boolean)) {
      const [p, n] = step.includes(':') ? step.split(':') as [string, string] : [undefined, step];
      if (p !== undefined) module = this.byNs.get(at.nsScope[p] ?? '') ?? module;
      out.push(`${module}:${n}`);
    }
    return out;
  }

  private grouping(ref: string, at: XmlElement): XmlElement | undefined {
    const [p, n] = ref.includes(':') ? ref.split(':') as [string, string] : [undefined, ref];
    const owner = p === undefined ? this.mod : this.modules.get(this.byNs.get(at.nsScope[p] ?? '') ?? '');
    return owner?.groupings.get(n);
  }
}

function extensionOf(el: XmlElement): DefaultDeny | undefined {
  let mark: DefaultDeny | undefined;
  for (const c of el.children) {
    if (c.ns !== NACM_NS) continue;
    if (c.name === 'default-deny-all') return 'all';
    if (c.name === 'default-deny-write') mark = 'write';
  }
  return mark;
}
