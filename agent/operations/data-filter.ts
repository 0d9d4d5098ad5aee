// The <filter> parameter (get, get-config, create-subscription) and get-data's subtree/xpath filters:
// subtree filters run on the printed data, XPath filters run in libyang with the client's XML
// prefixes rewritten to module names.
import type { XmlElement } from '../netconf/xml-element.js';
import { NetconfError } from '../../core/netconf-error.js';
import { NETCONF_BASE_NS } from '../datastore/edit-config.js';
import { parseXml } from '../netconf/xml-parser.js';
import { subtreeFilter, type ListKeysOf } from '../datastore/subtree-filter.js';
import { writeXml } from '../datastore/xml-writer.js';
import type { SchemaIndex } from '../datastore/schema-index.js';

export type DataFilter = { kind: 'subtree'; nodes: XmlElement[] } | { kind: 'xpath'; expr: string };

/** Keys of lists outside the libyang schema (monitoring, yang-library, streams). */
const STATIC_KEYS: Record<string, string[]> = {
  session: ['session-id'],
  schema: ['identifier', 'version', 'format'],
  datastore: ['name'],
  'module-set': ['name'],
  module: ['name'],
  'import-only-module': ['name', 'revision'],
  submodule: ['name'],
  stream: ['name'],
};

export function listKeysResolver(schema: SchemaIndex): ListKeysOf {
  return (path) => {
    let sp = '/';
    let sn;
    for (const el of path) {
      sn = schema.findChild(sp, el.ns, el.name);
      if (!sn) return STATIC_KEYS[path[path.length - 1].name] ?? [];
      sp = sn.path;
    }
    return sn?.kind === 'list' ? sn.keys : [];
  };
}

/** Rewrite XML namespace prefixes of an XPath expression into the module names libyang expects. */
export function xpathToModulePrefixes(expr: string, nsScope: Record<string, string>, schema: SchemaIndex): string {
  return expr.replace(/('[^']*'|"[^"]*")|\b([A-Za-z_][\w.-]*):(?=[A-Za-z_*])/g, (m, lit: string | undefined, p: string | undefined) => {
    if (lit !== undefined || p === undefined) return m;
    const ns = nsScope[p];
    if (ns === undefined) {
      if (schema.module(p)) return m;
      throw new NetconfError('invalid-value', 'application', `XPath filter uses undeclared prefix '${p}'`, {
        info: [{ name: 'bad-attribute', value: 'select' }, { name: 'bad-element', value: 'filter' }],
      });
    }
    const mod = schema.moduleByNamespace(ns);
    if (!mod) {
      throw new NetconfError('unknown-namespace', 'application', `XPath filter prefix '${p}' names unknown namespace '${ns}'`, {
        info: [{ name: 'bad-element', value: 'filter' }, { name: 'bad-namespace', value: ns }],
      });
    }
    return `${mod.name}:`;
  });
}

/** The <filter> element of get/get-config/create-subscription. */
export function parseFilter(el: XmlElement | undefined, schema: SchemaIndex): DataFilter | undefined {
  if (!el) return undefined;
  const type = el.attrs.find((a) => a.name === 'type')?.value ?? 'subtree';
  if (type === 'subtree') return { kind: 'subtree', nodes: el.children };
  if (type === 'xpath') {
    const select = el.attrs.find((a) => a.name === 'select');
    if (!select) {
      throw new NetconfError('missing-attribute', 'protocol', 'an xpath filter needs a select attribute', {
        info: [{ name: 'bad-attribute', value: 'select' }, { name: 'bad-element', value: 'filter' }],
      });
    }
    return { kind: 'xpath', expr: xpathToModulePrefixes(select.value, el.nsScope, schema) };
  }
  throw new NetconfError('bad-attribute', 'protocol', `unknown filter type '${type}'`, {
    info: [{ name: 'bad-attribute', value: 'type' }, { name: 'bad-element', value: 'filter' }],
  });
}

/** Parse printed data (top-level siblings) into elements. */
export function parseData(text: string): XmlElement[] {
  if (text.trim() === '') return [];
  return parseXml(`<data xmlns="${NETCONF_BASE_NS}">${text}</data>`, { maxElements: Number.MAX_SAFE_INTEGER, maxDepth: 1024 }).children;
}

/** Apply a subtree filter to printed data; returns the printed result. */
export function subtreeFilterText(text: string, nodes: XmlElement[], schema: SchemaIndex): string {
  const kept = subtreeFilter(parseData(text), nodes, listKeysResolver(schema));
  return kept.map((e) => writeXml(e)).join('');
}

/** Does a subtree filter ask for anything under a top-level node called `name` in namespace `ns`? */
export function filterWants(filter: DataFilter | undefined, ns: string, name: string): boolean {
  if (!filter || filter.kind !== 'subtree') return true;
  return filter.nodes.some((f) => f.name === name && (f.ns === '' || f.ns === NETCONF_BASE_NS || f.ns === ns));
}

/**
 * Does a subtree filter select the top-level node `name` whole: a selection node (RFC 6241 6.2.5)
 * for it with no content match, attribute match or child inside? Then the node's printed text is
 * the answer as it is, without parsing and printing it again.
 */
export function filterSelectsWhole(filter: DataFilter, ns: string, name: string): boolean {
  if (filter.kind !== 'subtree') return false;
  return filter.nodes.some((f) => f.name === name && (f.ns === '' || f.ns === NETCONF_BASE_NS || f.ns === ns) &&
    f.children.length === 0 && f.text.trim() === '' && f.attrs.every((a) => a.name === 'xmlns' || a.name.startsWith('xmlns:')));
}

/** Does a subtree filter reach any top-level node outside the given (ns, name) set? */
export function filterWantsOther(filter: DataFilter | undefined, known: { ns: string; name: string }[]): boolean {
  if (!filter || filter.kind !== 'subtree') return true;
  return filter.nodes.some((f) => !known.some((k) => k.name === f.name && (f.ns === k.ns)));
}

/**
 * Schema paths a subtree filter selects (module prefixes where the module changes, as in
 * "/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack"): a node with containment or selection
 * children selects through them; any other node (content matches only, or empty) selects its whole
 * subtree. Undefined when every path may be selected (no filter, an XPath filter).
 */
export function filterSchemaPaths(filter: DataFilter | undefined, schema: SchemaIndex): string[] | undefined {
  if (!filter || filter.kind !== 'subtree') return undefined;
  const out: string[] = [];
  const walk = (el: XmlElement, parentPath: string, parentModule: string): void => {
    const module = schema.moduleByNamespace(el.ns)?.name ?? parentModule;
    const path = `${parentPath}/${module !== parentModule ? `${module}:` : ''}${el.name}`;
    const inner = el.children.filter((c) => c.children.length > 0 || c.text.trim() === '');
    if (inner.length === 0) out.push(path);
    else for (const c of inner) walk(c, path, module);
  };
  for (const n of filter.nodes) walk(n, '', '');
  return out;
}

/** Whether a state provider with these paths can contribute to what the filter selects. */
export function selectsAny(selected: string[] | undefined, providerPaths: string[] | undefined): boolean {
  if (!selected || !providerPaths) return true;
  return providerPaths.some((p) => selected.some((f) => f === p || p.startsWith(`${f}/`) || f.startsWith(`${p}/`)));
}
