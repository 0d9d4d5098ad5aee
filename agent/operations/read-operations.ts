// get (running configuration, subsystem state, monitoring) and NMDA get-data (RFC 8526).
import type { WithDefaults } from '../../yang/libyang/api.js';
import type { XmlElement } from '../netconf/xml-element.js';
import type { RpcResult } from '../netconf/rpc-dispatcher.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import type { DatastoreName } from '../datastore/config-store.js';
import { NETCONF_BASE_NS } from '../datastore/edit-config.js';
import { writeXml } from '../datastore/xml-writer.js';
import type { ConfigJson } from '../../core/subsystem.js';
import { MONITORING_NS, netconfStateXml } from '../monitoring/netconf-monitoring.js';
import { YANG_LIBRARY_NS, yangLibraryXml } from '../monitoring/yang-library.js';
import { NC_NOTIFICATIONS_NS } from '../notifications/notification-hub.js';
import { child, onlyParams, withDefaultsParam } from './rpc-params.js';
import { filterSchemaPaths, filterSelectsWhole, filterWants, filterWantsOther, selectsAny, listKeysResolver, parseData, parseFilter, subtreeFilterText, xpathToModulePrefixes, type DataFilter } from './data-filter.js';
import { BASIC_MODE, printFiltered, readDatastore } from './read-output.js';
import { yangCall, type ConfigService } from './config-service.js';

export const NMDA_NS = 'urn:ietf:params:xml:ns:yang:ietf-netconf-nmda';
const DS_NS = 'urn:ietf:params:xml:ns:yang:ietf-datastores';
const log = logger('operations');

/** Deep merge of RFC 7951 objects from several providers (lists concatenate). */
function mergeJson(into: ConfigJson, from: ConfigJson): ConfigJson {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    if (Array.isArray(cur) && Array.isArray(v)) into[k] = mergeListEntries(cur, v);
    else if (cur && typeof cur === 'object' && v && typeof v === 'object' && !Array.isArray(v)) mergeJson(cur as ConfigJson, v as ConfigJson);
    else into[k] = v;
  }
  return into;
}

/**
 * Two providers' entries of one list: entries with the same `name` key (every tandem list with
 * state is keyed by name) are merged, not repeated — a repeated key (e.g. the same VRF from the
 * fastpath and the sync provider) made the whole state tree fail to parse.
 */
function mergeListEntries(into: unknown[], from: unknown[]): unknown[] {
  const out = [...into];
  for (const entry of from) {
    const key = isObject(entry) ? entry['name'] : undefined;
    const same = key === undefined ? undefined : out.find((e) => isObject(e) && e['name'] === key);
    if (same && isObject(entry)) mergeJson(same as ConfigJson, entry as ConfigJson);
    else out.push(entry);
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface ReadContext {
  svc: ConfigService;
  capabilities: () => readonly string[];
  /**
   * Runs `fn`, which reads running's tree synchronously, at a moment when that tree is the last
   * committed one (not while a commit edits it in place). Default: now (the caller holds the
   * operations queue).
   */
  readRunning?: <T>(fn: () => T) => Promise<T>;
}

/** The server's own state subtrees (outside the libyang context): name, namespace, generator. */
function monitoringParts(rc: ReadContext): { ns: string; name: string; text: () => string }[] {
  const svc = rc.svc;
  return [
    {
      ns: MONITORING_NS, name: 'netconf-state', text: () => netconfStateXml({
        capabilities: rc.capabilities(), yang: svc.yang, sessions: svc.sessions,
        datastores: (['running', 'candidate', 'startup'] as const).map((name) => ({
          name, lock: svc.locks.get(name), exists: name !== 'startup' || svc.store.startup !== undefined,
        })),
      }),
    },
    { ns: YANG_LIBRARY_NS, name: 'yang-library', text: () => yangLibraryXml(svc.yang, ['running', 'candidate', 'startup', 'operational']) },
    { ns: NC_NOTIFICATIONS_NS, name: 'netconf', text: () => svc.hub.streamsXml() },
  ];
}

/** Running configuration merged with every provider's state, printed and filtered. */
async function operationalText(rc: ReadContext, wd: WithDefaults, filter: DataFilter | undefined): Promise<string> {
  const svc = rc.svc;
  const parts: string[] = [];
  const mon = monitoringParts(rc);
  const monKeys = [...mon, { ns: YANG_LIBRARY_NS, name: 'modules-state' }];
  if (filterWantsOther(filter, monKeys)) {
    let state: ConfigJson = {};
    // Only the providers whose subtrees the filter selects run (a poll of one counter costs one provider).
    const selected = filterSchemaPaths(filter, svc.schema);
    for (const p of svc.stateProviders) {
      if (!selectsAny(selected, p.paths)) continue;
      try {
        state = mergeJson(state, await p.state());
      } catch (err) {
        log.warn({ provider: p.name, err: err instanceof Error ? err.message : String(err) }, 'state provider failed');
      }
    }
    // The state was gathered (awaiting providers); running's tree is read in one synchronous step.
    const readRunning = rc.readRunning ?? (async <T>(fn: () => T) => fn());
    if (Object.keys(state).length === 0) {
      parts.push(await readRunning(() => printFiltered(svc, svc.store.running.tree, wd, filter)));
    } else {
      const tree = yangCall(() => svc.yang.parse(JSON.stringify(state), { format: 'json', kind: 'data', validate: false }));
      try {
        parts.push(await readRunning(() => {
          yangCall(() => tree.merge(svc.store.running.tree));
          return printFiltered(svc, tree, wd, filter);
        }));
      } finally {
        tree.free();
      }
    }
  }
  for (const m of mon) {
    const wanted = filterWants(filter, m.ns, m.name) || (m.name === 'yang-library' && filterWants(filter, m.ns, 'modules-state'));
    if (!wanted) continue;
    const text = m.text();
    if (!filter) parts.push(text);
    // netconf-state asked for whole (the usual monitoring poll): its text as printed. Not for
    // yang-library, whose text also holds modules-state.
    else if (m.name !== 'yang-library' && filterSelectsWhole(filter, m.ns, m.name)) parts.push(text);
    else if (filter.kind === 'subtree') parts.push(subtreeFilterText(text, filter.nodes, svc.schema));
    else parts.push(xpathOnOwnData(rc, text, filter.expr));
  }
  return parts.join('');
}

/** XPath over the server's own state: through libyang when its modules are in the context. */
function xpathOnOwnData(rc: ReadContext, text: string, expr: string): string {
  let tree;
  try {
    tree = rc.svc.yang.parse(text, { format: 'xml', kind: 'data', validate: false, strict: false });
  } catch {
    return '';
  }
  try {
    const sel = tree.selectSubtrees(expr);
    try {
      return sel.print({ format: 'xml' });
    } finally {
      sel.free();
    }
  } catch {
    return '';
  } finally {
    tree.free();
  }
}

/** NACM's read filter of a reply body (RFC 8341 3.4.5); identity when NACM does not apply. */
export type ReadFilter = (text: string) => string;

export async function get(rc: ReadContext, op: XmlElement, readable: ReadFilter = (t) => t): Promise<RpcResult> {
  onlyParams(op, ['filter', 'with-defaults']);
  const filter = parseFilter(child(op, 'filter'), rc.svc.schema);
  const body = readable(await operationalText(rc, withDefaultsParam(op) ?? BASIC_MODE, filter));
  return { xml: `<data xmlns="${NETCONF_BASE_NS}">${body}</data>` };
}

function datastoreIdentity(el: XmlElement): DatastoreName | 'operational' {
  const v = el.text.trim();
  const m = /^(?:([\w.-]+):)?([\w-]+)$/.exec(v);
  // A declared prefix must be bound to ietf-datastores; 'ds' and 'ietf-datastores' undeclared are tolerated.
  const ok = m && (!m[1] || (m[1] in el.nsScope ? el.nsScope[m[1]] === DS_NS : m[1] === 'ds' || m[1] === 'ietf-datastores'));
  const name = m?.[2];
  if (!ok || !name || !['running', 'candidate', 'startup', 'operational', 'intended'].includes(name)) {
    throw new NetconfError('invalid-value', 'application', `unknown datastore '${v}'`, { info: [{ name: 'bad-element', value: 'datastore' }] });
  }
  return name === 'intended' ? 'running' : name as DatastoreName | 'operational';
}

/** Keep only config (true) or only state (false) nodes; list keys stay with their entries. */
function configFilter(rc: ReadContext, els: XmlElement[], wantConfig: boolean, schemaPath = '/'): XmlElement[] {
  const keysOf = listKeysResolver(rc.svc.schema);
  const out: XmlElement[] = [];
  for (const el of els) {
    const sn = rc.svc.schema.findChild(schemaPath, el.ns, el.name);
    const isConfig = sn ? sn.config : false;
    if (sn && (sn.kind === 'leaf' || sn.kind === 'leaf-list')) {
      if (isConfig === wantConfig) out.push(el);
      continue;
    }
    if (!sn) {
      if (!wantConfig) out.push(el);
      continue;
    }
    if (!isConfig) {
      if (!wantConfig) out.push(el);
      continue;
    }
    const kids = configFilter(rc, el.children, wantConfig, sn.path);
    const keys = sn.kind === 'list' ? keysOf([el]).length ? sn.keys : [] : [];
    const keyEls = el.children.filter((c) => keys.includes(c.name));
    const body = [...keyEls, ...kids.filter((k) => !keyEls.includes(k))];
    if (wantConfig || kids.length > 0) out.push({ ...el, children: body });
  }
  return out;
}

function maxDepth(els: XmlElement[], depth: number): XmlElement[] {
  if (depth <= 1) return els.map((e) => ({ ...e, children: [] }));
  return els.map((e) => ({ ...e, children: maxDepth(e.children, depth - 1) }));
}

export async function getData(rc: ReadContext, op: XmlElement, readable: ReadFilter = (t) => t): Promise<RpcResult> {
  onlyParams(op, ['datastore', 'subtree-filter', 'xpath-filter', 'config-filter', 'max-depth', 'origin-filter',
    'negated-origin-filter', 'with-origin', 'with-defaults']);
  const dsEl = child(op, 'datastore');
  if (!dsEl) {
    throw new NetconfError('missing-element', 'protocol', 'get-data needs a <datastore>', { info: [{ name: 'bad-element', value: 'datastore' }] });
  }
  const ds = datastoreIdentity(dsEl);
  const sub = child(op, 'subtree-filter');
  const xp = child(op, 'xpath-filter');
  const filter: DataFilter | undefined = sub ? { kind: 'subtree', nodes: sub.children }
    : xp ? { kind: 'xpath', expr: xpathToModulePrefixes(xp.text.trim(), xp.nsScope, rc.svc.schema) } : undefined;
  const wd = withDefaultsParam(op);
  let body = readable(ds === 'operational'
    ? await operationalText(rc, wd ?? BASIC_MODE, filter)
    : readDatastore(rc.svc, ds, wd, filter));
  const cf = child(op, 'config-filter')?.text.trim();
  const md = child(op, 'max-depth')?.text.trim();
  if ((cf === 'true' || cf === 'false') || (md && md !== 'unbounded')) {
    let els = parseData(body);
    if (cf === 'true' || cf === 'false') els = configFilter(rc, els, cf === 'true');
    if (md && md !== 'unbounded') {
      const n = Number(md);
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        throw new NetconfError('invalid-value', 'application', `max-depth must be 1..65535 or unbounded, not '${md}'`, { info: [{ name: 'bad-element', value: 'max-depth' }] });
      }
      els = maxDepth(els, n);
    }
    body = els.map((e) => writeXml(e)).join('');
  }
  return { xml: `<data xmlns="${NMDA_NS}">${body}</data>` };
}
