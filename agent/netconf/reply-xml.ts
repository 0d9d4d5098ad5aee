// Serialisation of what the server sends: hello, rpc-reply (echoing every attribute of the rpc) and
// rpc-error exactly as RFC 6241 Appendix A lays it out.
import { NetconfError, type ErrorInfo } from '../../core/netconf-error.js';
import type { XmlElement } from './xml-element.js';
import { escapeAttr, escapeText } from './xml-writer.js';

export const BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';
export const CAP_BASE_10 = 'urn:ietf:params:netconf:base:1.0';
export const CAP_BASE_11 = 'urn:ietf:params:netconf:base:1.1';

/** Module name (as used in libyang paths) -> XML namespace, to declare the prefixes of an error-path. */
export type NamespaceResolver = (prefix: string) => string | undefined;

export function serverHello(capabilities: string[], sessionId: number): string {
  const caps = capabilities.map((c) => `<capability>${escapeText(c)}</capability>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?><hello xmlns="${BASE_NS}"><capabilities>${caps}</capabilities>`
    + `<session-id>${sessionId}</session-id></hello>`;
}

/**
 * The <rpc-reply> start tag for an rpc: the base namespace as default, every prefixed namespace the
 * rpc declared, and every attribute of the rpc (message-id included) with its prefix.
 */
export function replyStartTag(rpc: Pick<XmlElement, 'attrs' | 'nsScope'> | undefined): string {
  let tag = `<rpc-reply xmlns="${BASE_NS}"`;
  if (rpc) {
    for (const [prefix, uri] of Object.entries(rpc.nsScope)) {
      if (prefix !== '' && prefix !== 'xml') tag += ` xmlns:${prefix}="${escapeAttr(uri)}"`;
    }
    for (const a of rpc.attrs) {
      const declared = a.prefix === '' || a.prefix === 'xml' || a.prefix in rpc.nsScope;
      if (!declared) continue; // cannot happen with a namespace-aware parser; never emit an unbound prefix
      tag += ` ${a.prefix ? `${a.prefix}:` : ''}${a.name}="${escapeAttr(a.value)}"`;
    }
  }
  return `${tag}>`;
}

const PREFIX_IN_PATH = /([A-Za-z_][A-Za-z0-9_.-]*):(?=[A-Za-z_*])/g;

/** xmlns declarations for the prefixes used in an error-path (quoted key values are ignored). */
function pathNamespaces(path: string, resolve: NamespaceResolver): string {
  const unquoted = path.replace(/'[^']*'|"[^"]*"/g, "''");
  const seen = new Set<string>();
  let decls = '';
  for (const m of unquoted.matchAll(PREFIX_IN_PATH)) {
    const prefix = m[1]!;
    if (seen.has(prefix)) continue;
    seen.add(prefix);
    const uri = resolve(prefix);
    if (uri) decls += ` xmlns:${prefix}="${escapeAttr(uri)}"`;
  }
  return decls;
}

function infoXml(info: ErrorInfo): string {
  const ns = info.ns && info.ns !== BASE_NS ? ` xmlns="${escapeAttr(info.ns)}"` : '';
  return `<${info.name}${ns}>${escapeText(info.value)}</${info.name}>`;
}

export function rpcErrorXml(err: NetconfError, resolve: NamespaceResolver): string {
  const x = err.extra;
  let out = `<rpc-error><error-type>${err.type}</error-type><error-tag>${err.tag}</error-tag>`
    + `<error-severity>${x.severity ?? 'error'}</error-severity>`;
  if (x.appTag) out += `<error-app-tag>${escapeText(x.appTag)}</error-app-tag>`;
  if (x.path) out += `<error-path${pathNamespaces(x.path, resolve)}>${escapeText(x.path)}</error-path>`;
  if (err.message) out += `<error-message xml:lang="en">${escapeText(err.message)}</error-message>`;
  if (x.info && x.info.length > 0) out += `<error-info>${x.info.map(infoXml).join('')}</error-info>`;
  return `${out}</rpc-error>`;
}

/** Whatever an operation threw, as the list of NetconfErrors to report. */
export function toNetconfErrors(thrown: unknown): NetconfError[] {
  if (thrown instanceof NetconfError) return [thrown];
  if (Array.isArray(thrown) && thrown.length > 0 && thrown.every((e) => e instanceof NetconfError)) return thrown;
  const nested = (thrown as { errors?: unknown } | null)?.errors;
  if (Array.isArray(nested) && nested.length > 0 && nested.every((e) => e instanceof NetconfError)) return nested;
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  return [new NetconfError('operation-failed', 'application', message || 'operation failed')];
}
