// A configuration datastore as a plain tree of schema-resolved nodes. Edits are applied here (libyang
// does not implement NETCONF operations); the tree is printed as XML for libyang to validate.
import type { DataSchemaNode } from './schema-index.js';

export interface ConfigNode {
  schema: DataSchemaNode;
  /** Leaf / leaf-list value, as written (lexical form). */
  value?: string;
  /** Prefix -> namespace declarations a prefixed value (identityref, instance-identifier) needs. */
  valueNs?: Record<string, string>;
  /** anydata / anyxml content, serialised XML. */
  raw?: string;
  children: ConfigNode[];
}

/** The root of a datastore: only children. */
export interface ConfigRoot {
  children: ConfigNode[];
}

export type ConfigParent = ConfigNode | ConfigRoot;

/** Identity of a node among its siblings: name, plus keys (list) or value (leaf-list). */
export function identityOf(node: ConfigNode): string {
  const s = node.schema;
  const base = `${s.module}:${s.name}`;
  if (s.kind === 'leaf-list') return `${base}=${node.value ?? ''}`;
  if (s.kind === 'list') {
    return base + s.keys.map((k) => `[${k}=${node.children.find((c) => c.schema.name === k)?.value ?? ''}]`).join('');
  }
  return base;
}

/** Two leaves (or leaf-list entries, or anydata) of one schema node that write out the same. */
export function sameLeaf(a: ConfigNode, b: ConfigNode): boolean {
  if (a.value !== b.value || a.raw !== b.raw || a.children.length || b.children.length) return false;
  if (a.valueNs === b.valueNs) return true;
  if (!a.valueNs || !b.valueNs) return false;
  const ka = Object.keys(a.valueNs);
  return ka.length === Object.keys(b.valueNs).length && ka.every((k) => a.valueNs![k] === b.valueNs![k]);
}

export function escapeText(s: string): string {
  if (!/[&<>]/.test(s)) return s;
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function escapeAttr(s: string): string {
  return escapeText(s).replace(/"/g, '&quot;');
}

/**
 * XML of inner nodes already printed. Stored trees are never changed in place (edits copy what they
 * change), so a node's text stays valid as long as the node lives; an edit then prints only the
 * nodes it copied.
 */
const printed = new WeakMap<ConfigNode, string>();

/** The start tag of a node without its closing '>' (namespace declared where the module changes). */
function openTag(node: ConfigNode, parentModule: string | undefined, nsOf: (module: string) => string): string {
  const s = node.schema;
  let open = '<' + s.name;
  if (s.module !== parentModule) open += ` xmlns="${escapeAttr(nsOf(s.module))}"`;
  if (node.valueNs) for (const p in node.valueNs) open += ` xmlns:${p}="${escapeAttr(node.valueNs[p])}"`;
  return open;
}

/** The start tag of an inner node, as nodeXml writes it. */
export function startTag(node: ConfigNode, parentModule: string | undefined, nsOf: (module: string) => string): string {
  return openTag(node, parentModule, nsOf) + '>';
}

/** XML of one node and its subtree under a parent of module `parentModule` (cached for inner nodes). */
export function nodeXml(node: ConfigNode, parentModule: string | undefined, nsOf: (module: string) => string): string {
  const s = node.schema;
  const open = openTag(node, parentModule, nsOf);
  const kind = s.kind;
  if (kind === 'leaf' || kind === 'leaf-list') {
    return node.value === undefined || node.value === '' ? open + '/>' : open + '>' + escapeText(node.value) + '</' + s.name + '>';
  }
  if (kind === 'anydata' || kind === 'anyxml') return open + '>' + (node.raw ?? '') + '</' + s.name + '>';
  const cached = printed.get(node);
  if (cached !== undefined) return cached;
  // String concatenation (V8 ropes) is the fastest way to build the megabytes this can be.
  let out: string = open + '>';
  if (kind === 'list' && s.keys.length) {
    // libyang wants list keys first, in key order.
    const keys: ConfigNode[] = [];
    for (const k of s.keys) {
      const kn = node.children.find((c) => c.schema.name === k);
      if (kn) {
        keys.push(kn);
        out += nodeXml(kn, s.module, nsOf);
      }
    }
    for (const c of node.children) if (!keys.includes(c)) out += nodeXml(c, s.module, nsOf);
  } else {
    for (const c of node.children) out += nodeXml(c, s.module, nsOf);
  }
  out += '</' + s.name + '>';
  printed.set(node, out);
  return out;
}

/** XML of the tree's nodes (siblings, no wrapper). `nsOf` maps a module name to its namespace. */
export function configToXml(parent: ConfigParent, nsOf: (module: string) => string): string {
  let out = '';
  for (const c of parent.children) out += nodeXml(c, undefined, nsOf);
  return out;
}
