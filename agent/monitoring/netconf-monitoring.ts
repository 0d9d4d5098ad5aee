// ietf-netconf-monitoring (RFC 6022): the netconf-state subtree and the get-schema operation.
import type { ModuleInfo, YangContext } from '../../yang/libyang/api.js';
import type { XmlElement } from '../netconf/xml-element.js';
import { NetconfError } from '../../core/netconf-error.js';
import { escapeText } from '../datastore/config-tree.js';
import type { SessionRegistry } from './session-registry.js';

export const MONITORING_NS = 'urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring';

export interface DatastoreLockView {
  name: 'running' | 'candidate' | 'startup';
  lock?: { sessionId: number; since: string };
  exists: boolean;
}

/** Every module the context knows, with its submodules: what get-schema can return. */
export function schemaList(yang: YangContext): { identifier: string; version: string; ns: string }[] {
  const out: { identifier: string; version: string; ns: string }[] = [];
  for (const m of yang.modules()) {
    out.push({ identifier: m.name, version: m.revision ?? '', ns: m.namespace });
    for (const s of m.submodules) out.push({ identifier: s.name, version: s.revision ?? '', ns: m.namespace });
  }
  return out;
}

// The parts that depend only on the schema, printed once per set of capabilities / modules (both
// arrays stay the same objects until a module is loaded): a monitoring poll prints only what changes.
const capabilitiesXml = new WeakMap<readonly string[], string>();
const schemasXml = new WeakMap<readonly ModuleInfo[], string>();

function printCapabilities(caps: readonly string[]): string {
  let text = capabilitiesXml.get(caps);
  if (text === undefined) {
    text = `<capabilities>${caps.map((c) => `<capability>${escapeText(c)}</capability>`).join('')}</capabilities>`;
    capabilitiesXml.set(caps, text);
  }
  return text;
}

function printSchemas(yang: YangContext): string {
  const modules = yang.modules();
  let text = schemasXml.get(modules);
  if (text === undefined) {
    const o: string[] = [];
    for (const s of schemaList(yang)) {
      for (const f of ['yang', 'yin']) {
        o.push(`<schema><identifier>${escapeText(s.identifier)}</identifier><version>${escapeText(s.version)}</version>`
          + `<format xmlns:ncm="${MONITORING_NS}">ncm:${f}</format><namespace>${escapeText(s.ns)}</namespace><location>NETCONF</location></schema>`);
      }
    }
    schemasXml.set(modules, text = `<schemas>${o.join('')}</schemas>`);
  }
  return text;
}

export function netconfStateXml(opts: {
  capabilities: readonly string[]; datastores: DatastoreLockView[]; yang: YangContext; sessions: SessionRegistry;
}): string {
  const o: string[] = [`<netconf-state xmlns="${MONITORING_NS}">`];
  o.push(printCapabilities(opts.capabilities));
  o.push('<datastores>');
  for (const d of opts.datastores) {
    if (!d.exists) continue;
    o.push(`<datastore><name>${d.name}</name>`);
    if (d.lock) {
      o.push(`<locks><global-lock><locked-by-session>${d.lock.sessionId}</locked-by-session><locked-time>${d.lock.since}</locked-time></global-lock></locks>`);
    }
    o.push('</datastore>');
  }
  o.push('</datastores>', printSchemas(opts.yang), '<sessions>');
  for (const s of opts.sessions.sessions.values()) {
    o.push(`<session><session-id>${s.sessionId}</session-id><transport xmlns:ncm="${MONITORING_NS}">ncm:${s.transport}</transport>`
      + `<username>${escapeText(s.username)}</username><source-host>${escapeText(s.sourceHost)}</source-host>`
      + `<login-time>${s.loginTime}</login-time><in-rpcs>${s.inRpcs}</in-rpcs><in-bad-rpcs>${s.inBadRpcs}</in-bad-rpcs>`
      + `<out-rpc-errors>${s.outRpcErrors}</out-rpc-errors><out-notifications>${s.outNotifications}</out-notifications></session>`);
  }
  const t = opts.sessions.totals();
  o.push(`</sessions><statistics><netconf-start-time>${opts.sessions.startTime}</netconf-start-time>`
    + `<in-bad-hellos>${opts.sessions.badHellos}</in-bad-hellos><in-sessions>${opts.sessions.inSessions}</in-sessions>`
    + `<dropped-sessions>${opts.sessions.droppedSessions}</dropped-sessions><in-rpcs>${t.inRpcs}</in-rpcs>`
    + `<in-bad-rpcs>${t.inBadRpcs}</in-bad-rpcs><out-rpc-errors>${t.outRpcErrors}</out-rpc-errors>`
    + `<out-notifications>${t.outNotifications}</out-notifications></statistics></netconf-state>`);
  return o.join('');
}

/**
 * The format parameter is an identityref; clients send it as 'yang', 'ncm:yang' or with any prefix
 * bound to the monitoring namespace (ncclient sends it with no default namespace at all).
 */
function schemaFormat(el: XmlElement | undefined): 'yang' | 'yin' {
  if (!el) return 'yang';
  const v = el.text.trim();
  const m = /^(?:([\w.-]+):)?(yang|yin)$/.exec(v);
  if (m && (!m[1] || m[1] === 'ncm' || el.nsScope[m[1]] === MONITORING_NS)) return m[2] as 'yang' | 'yin';
  throw new NetconfError('invalid-value', 'application', `unsupported schema format '${v}'`, {
    info: [{ name: 'bad-element', value: 'format' }],
  });
}

/** get-schema: the text of one module or submodule. */
export function getSchema(op: XmlElement, yang: YangContext): string {
  const byName = (n: string) => op.children.find((c) => c.name === n);
  const ident = byName('identifier')?.text.trim();
  if (!ident) {
    throw new NetconfError('missing-element', 'protocol', 'get-schema needs an <identifier>', {
      info: [{ name: 'bad-element', value: 'identifier' }],
    });
  }
  const version = byName('version')?.text.trim() || undefined;
  const format = schemaFormat(byName('format'));
  const matches = schemaList(yang).filter((s) => s.identifier === ident && (version === undefined || s.version === version));
  if (matches.length === 0) {
    throw new NetconfError('invalid-value', 'application', `no schema '${ident}'${version ? ` revision ${version}` : ''}`, {
      info: [{ name: 'bad-element', value: 'identifier' }],
    });
  }
  const distinct = new Set(matches.map((m) => m.version));
  if (distinct.size > 1) {
    throw new NetconfError('operation-failed', 'application', `several revisions of '${ident}' exist; give <version>`, {
      appTag: 'data-not-unique',
    });
  }
  const text = yang.schemaText(ident, matches[0].version || undefined, format);
  return `<data xmlns="${MONITORING_NS}">${escapeText(text)}</data>`;
}

export type { ModuleInfo };
