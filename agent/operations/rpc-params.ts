// Reading the parameters of an operation element, with RFC 6241 Appendix A errors for what is
// missing, unknown, in a foreign namespace or malformed. A parameter is matched by name AND
// namespace: `<running xmlns="urn:other"/>` is not the running datastore.
import type { XmlElement } from '../netconf/xml-element.js';
import { NetconfError } from '../../core/netconf-error.js';
import type { DatastoreName } from '../datastore/config-store.js';
import type { WithDefaults } from '../../yang/libyang/api.js';

const BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const WITH_DEFAULTS_NS = 'urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults';
/** No namespace at all (an element under xmlns=""). */
const NO_NS = '';

/**
 * The namespaces a parameter of `op` may be in: the operation's own, and for the parameters that
 * other modules add, theirs (RFC 6243 with-defaults; a NETCONF <filter> in create-subscription,
 * which ncclient sends in the base namespace).
 */
function paramNamespaces(op: XmlElement, name: string): string[] {
  if (name === 'with-defaults') return [WITH_DEFAULTS_NS];
  if (name === 'filter') return [op.ns, BASE_NS, NO_NS];
  // Unqualified parameters of a base operation are taken as the base's: Ansible's netconf_config
  // (lxml) sends its <config> as <config xmlns=""> inside <edit-config>. A foreign namespace is
  // still refused.
  return op.ns === BASE_NS ? [op.ns, NO_NS] : [op.ns];
}

function inParamNamespace(op: XmlElement, c: XmlElement): boolean {
  return paramNamespaces(op, c.name).includes(c.ns);
}

function wrongNamespace(el: XmlElement, where: string): NetconfError {
  return new NetconfError('unknown-namespace', 'protocol', `<${el.name}> in ${where} is in namespace '${el.ns}', not one this operation defines`, {
    info: [{ name: 'bad-element', value: el.name }, { name: 'bad-namespace', value: el.ns }],
  });
}

export function child(op: XmlElement, name: string): XmlElement | undefined {
  return op.children.find((c) => c.name === name && inParamNamespace(op, c));
}

/** Refuse parameters the operation does not define (unknown-element), or in a foreign namespace (unknown-namespace). */
export function onlyParams(op: XmlElement, allowed: string[]): void {
  for (const c of op.children) {
    if (!allowed.includes(c.name)) {
      throw new NetconfError('unknown-element', 'protocol', `unexpected parameter '${c.name}' in <${op.name}>`, {
        info: [{ name: 'bad-element', value: c.name }],
      });
    }
    if (!inParamNamespace(op, c)) throw wrongNamespace(c, `<${op.name}>`);
  }
}

export function required(op: XmlElement, name: string): XmlElement {
  const c = child(op, name);
  if (!c) {
    throw new NetconfError('missing-element', 'protocol', `<${op.name}> needs a <${name}> parameter`, {
      info: [{ name: 'bad-element', value: name }],
    });
  }
  return c;
}

const DATASTORES: DatastoreName[] = ['running', 'candidate', 'startup'];

export type DatastoreRef = { datastore: DatastoreName } | { config: XmlElement };

/** <target>/<source>: one datastore element (or an inline <config> where allowed). */
export function datastoreParam(op: XmlElement, name: 'target' | 'source', allowConfig: boolean): DatastoreRef {
  const el = required(op, name);
  const inner = el.children;
  if (inner.length !== 1) {
    throw new NetconfError('missing-element', 'protocol', `<${name}> must hold exactly one datastore`, {
      info: [{ name: 'bad-element', value: name }],
    });
  }
  const d = inner[0]!;
  // The datastore elements (and an inline <config>, <url>) are ietf-netconf's, whatever the operation.
  if (d.ns !== BASE_NS && d.ns !== NO_NS) throw wrongNamespace(d, `<${name}>`);
  if (d.name === 'config' && allowConfig) return { config: d };
  if (d.name === 'url') {
    throw new NetconfError('operation-not-supported', 'protocol', 'the :url capability is not supported', {
      info: [{ name: 'bad-element', value: 'url' }],
    });
  }
  if (!DATASTORES.includes(d.name as DatastoreName)) {
    throw new NetconfError('invalid-value', 'protocol', `unknown datastore '${d.name}' in <${name}>`, {
      info: [{ name: 'bad-element', value: name }],
    });
  }
  return { datastore: d.name as DatastoreName };
}

export function withDefaultsParam(op: XmlElement): WithDefaults | undefined {
  const el = child(op, 'with-defaults');
  if (!el) return undefined;
  const v = el.text.trim();
  if (v === 'report-all' || v === 'trim' || v === 'explicit' || v === 'report-all-tagged') return v;
  throw new NetconfError('invalid-value', 'application', `unknown with-defaults mode '${v}'`, {
    info: [{ name: 'bad-element', value: 'with-defaults' }],
  });
}

/** An element's text as an integer in [min, max], or the rpc-error. */
export function uintParam(el: XmlElement, min: number, max: number): number {
  const t = el.text.trim();
  const n = /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new NetconfError('invalid-value', 'protocol', `<${el.name}> must be an integer in ${min}..${max}, not '${t}'`, {
      info: [{ name: 'bad-element', value: el.name }],
    });
  }
  return n;
}
