// Printing a datastore for get, get-config and get-data: libyang prints (with the asked
// with-defaults mode), then the filter is applied. Running's printout is cached so that repeated
// reads are cheap and byte-identical.
import type { DataTree, WithDefaults } from '../../yang/libyang/api.js';
import type { DatastoreName } from '../datastore/config-store.js';
import type { ConfigRoot } from '../datastore/config-tree.js';
import { NetconfError } from '../../core/netconf-error.js';
import type { XmlElement } from '../netconf/xml-element.js';
import { NETCONF_BASE_NS } from '../datastore/edit-config.js';
import { subtreeFilterText, type DataFilter } from './data-filter.js';
import { yangCall, type ConfigService } from './config-service.js';

/** With-defaults when the client names none: the server's basic mode (RFC 6243). */
export const BASIC_MODE: WithDefaults = 'explicit';

/**
 * libyang tags defaults with the ietf-netconf-with-defaults module namespace; RFC 6243 section 6
 * puts the `default` attribute in urn:ietf:params:xml:ns:netconf:default:1.0.
 */
export function fixDefaultTags(text: string): string {
  if (!text.includes('ncwd:default')) return text;
  return text.replace(/xmlns:ncwd="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults"/g, 'xmlns:wd="urn:ietf:params:xml:ns:netconf:default:1.0"')
    .replace(/ncwd:default=/g, 'wd:default=');
}

function print(tree: DataTree, wd: WithDefaults): string {
  const text = yangCall(() => tree.print({ format: 'xml', withDefaults: wd }));
  return wd === 'report-all-tagged' ? fixDefaultTags(text) : text;
}

/**
 * Printouts of one running version (a commit makes a new one, which empties it): whole per
 * with-defaults mode, and filtered per mode and filter (least recently used first, FILTERED_CACHE_CHARS at most).
 */
interface RunningPrints { version: number; byMode: Map<string, string>; filtered: Map<string, string>; filteredChars: number }
const runningPrintCache = new WeakMap<ConfigService, RunningPrints>();

function runningPrints(svc: ConfigService): RunningPrints {
  let c = runningPrintCache.get(svc);
  if (!c || c.version !== svc.store.runningVersion) {
    c = { version: svc.store.runningVersion, byMode: new Map(), filtered: new Map(), filteredChars: 0 };
    runningPrintCache.set(svc, c);
  }
  return c;
}

/** A libyang tree of the datastore (caller frees it when `owned`). */
export function datastoreTree(svc: ConfigService, ds: DatastoreName): { tree: DataTree; owned: boolean } {
  const store = svc.store;
  if (ds === 'running' || (ds === 'candidate' && !store.candidateDirty)) return { tree: store.running.tree, owned: false };
  const root = svc.rootOf(ds);
  if (!root) {
    throw new NetconfError('invalid-value', 'application', `the ${ds} datastore does not exist`, {
      info: [{ name: 'bad-element', value: ds }],
    });
  }
  // A candidate being edited may not be valid yet: print it as it is.
  try {
    return { tree: store.tree(root, true), owned: true };
  } catch {
    return { tree: yangCall(() => store.tree(root, false)), owned: true };
  }
}

function printRunning(svc: ConfigService, wd: WithDefaults): string {
  const c = runningPrints(svc);
  let text = c.byMode.get(wd);
  if (text === undefined) {
    text = print(svc.store.running.tree, wd);
    c.byMode.set(wd, text);
  }
  return text;
}

/** XPath of the top-level subtrees a subtree filter can select, or undefined when not sure. */
function preselect(svc: ConfigService, nodes: XmlElement[]): string[] | undefined {
  const plain = new Set<string>();
  const keyed = new Map<string, string[]>();
  for (const f of nodes) {
    if (!f.ns || f.ns === NETCONF_BASE_NS) return undefined;
    const sn = svc.schema.findChild('/', f.ns, f.name);
    if (!sn) continue; // selects nothing from this tree
    const base = `/${sn.module}:${sn.name}`;
    if (sn.kind === 'list' && sn.keys.length) {
      const values = sn.keys.map((k) => f.children.find((c) => c.name === k && c.children.length === 0 && c.text.trim() !== '')?.text.trim());
      if (values.every((v): v is string => v !== undefined && !(v.includes("'") && v.includes('"')))) {
        const pred = sn.keys.map((k, i) => `[${k}=${values[i].includes("'") ? `"${values[i]}"` : `'${values[i]}'`}]`).join('');
        keyed.set(base, [...(keyed.get(base) ?? []), base + pred]);
        continue;
      }
    }
    plain.add(base);
  }
  const out = [...plain];
  for (const [base, list] of keyed) if (!plain.has(base)) out.push(...new Set(list));
  return out;
}

/** What a filter selects, as a string: two filters with the same key select the same nodes. */
export function filterKey(filter: DataFilter): string {
  if (filter.kind === 'xpath') return `x${filter.expr}`;
  const node = (e: XmlElement): string => JSON.stringify([e.ns, e.name, e.attrs.map((a) => [a.ns, a.name, a.value]), e.text,
    e.nsScope, e.children.map(node)]);
  return `s${filter.nodes.map(node).join('')}`;
}

/** Filtered printouts of one running version kept, at most this many characters in all. */
const FILTERED_CACHE_CHARS = 4 * 1024 * 1024;

/** A filtered read of running, printed once per running version, with-defaults mode and filter: a monitoring poller asks the same again and again. */
function filteredRunning(svc: ConfigService, wd: WithDefaults, filter: DataFilter, print: () => string): string {
  const c = runningPrints(svc);
  const key = `${wd}\0${filterKey(filter)}`;
  const hit = c.filtered.get(key);
  if (hit !== undefined) {
    c.filtered.delete(key); // most recently used last
    c.filtered.set(key, hit);
    return hit;
  }
  const text = print();
  if (text.length + key.length > FILTERED_CACHE_CHARS / 4) return text; // big answers are not kept
  c.filtered.set(key, text);
  c.filteredChars += text.length + key.length;
  for (const [k, v] of c.filtered) {
    if (c.filteredChars <= FILTERED_CACHE_CHARS) break;
    c.filtered.delete(k);
    c.filteredChars -= v.length + k.length;
  }
  return text;
}

/** Print a tree, filtered. XPath filters select in libyang; subtree filters work on the text. */
export function printFiltered(svc: ConfigService, tree: DataTree, wd: WithDefaults, filter: DataFilter | undefined,
  cached?: () => string): string {
  if (filter && tree === svc.store.running.tree) return filteredRunning(svc, wd, filter, () => printFilteredNow(svc, tree, wd, filter, cached));
  return printFilteredNow(svc, tree, wd, filter, cached);
}

function printFilteredNow(svc: ConfigService, tree: DataTree, wd: WithDefaults, filter: DataFilter | undefined,
  cached?: () => string): string {
  if (filter?.kind === 'xpath') {
    const sel = yangCall(() => tree.selectSubtrees(filter.expr));
    try {
      return print(sel, wd);
    } finally {
      sel.free();
    }
  }
  if (!filter) return cached ? cached() : print(tree, wd);
  // Print only the top-level subtrees the filter can reach (one list entry when it names every key).
  const paths = preselect(svc, filter.nodes);
  let text: string;
  if (paths) {
    text = '';
    for (const p of paths) {
      const sel = yangCall(() => tree.selectSubtrees(p));
      try {
        text += print(sel, wd);
      } finally {
        sel.free();
      }
    }
  } else {
    text = cached ? cached() : print(tree, wd);
  }
  return subtreeFilterText(text, filter.nodes, svc.schema);
}

/** The configuration of a datastore as reply content (without the <data> wrapper). */
/** Printed candidate/startup content by root (roots are never changed in place, so this stays right). */
const printedRoots = new WeakMap<ConfigRoot, Map<WithDefaults, string>>();

export function readDatastore(svc: ConfigService, ds: DatastoreName, wd: WithDefaults | undefined, filter: DataFilter | undefined): string {
  const mode = wd ?? BASIC_MODE;
  const root = svc.rootOf(ds);
  const shared = ds === 'running' || (ds === 'candidate' && !svc.store.candidateDirty);
  if (!shared && root && filter?.kind !== 'xpath') {
    // A candidate being edited is read again and again (Ansible reads it after every edit).
    let byMode = printedRoots.get(root);
    let text = byMode?.get(mode);
    if (text === undefined) {
      const { tree } = datastoreTree(svc, ds);
      try {
        text = print(tree, mode);
      } finally {
        tree.free();
      }
      if (!byMode) printedRoots.set(root, byMode = new Map());
      byMode.set(mode, text);
    }
    return filter ? subtreeFilterText(text, filter.nodes, svc.schema) : text;
  }
  const { tree, owned } = datastoreTree(svc, ds);
  try {
    return printFiltered(svc, tree, mode, filter, tree === svc.store.running.tree ? () => printRunning(svc, mode) : undefined);
  } finally {
    if (owned) tree.free();
  }
}
