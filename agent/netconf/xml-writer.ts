// Writing XML text: escaping, and printing an XmlElement back (for operations that pass parsed
// content on, e.g. <config> to libyang). Namespaces are re-declared wherever they differ from the
// parent's, so a subtree printed alone is a complete, self-contained document.
import type { XmlElement } from './xml-element.js';

/** Characters XML 1.0 cannot carry at all (not even as references); dropped rather than sent. */
// eslint-disable-next-line no-control-regex
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

export function escapeText(s: string): string {
  return s.replace(NOT_XML, '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function escapeAttr(s: string): string {
  return s.replace(NOT_XML, '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
    .replace(/\r/g, '&#13;').replace(/\n/g, '&#10;').replace(/\t/g, '&#9;');
}

/**
 * Print an element and its subtree. Each element is printed with its own prefix; the prefixes it
 * (or its attributes) use are declared whenever the enclosing printed scope does not already bind
 * them the same way. Text is printed before child elements (mixed content is not NETCONF's).
 */
export function serializeXml(el: XmlElement, scope: Record<string, string> = {}): string {
  const own: Record<string, string> = {};
  const bind = (prefix: string, uri: string) => {
    if ((scope[prefix] ?? '') !== uri) own[prefix] = uri;
  };
  bind(el.prefix, el.ns);
  for (const a of el.attrs) if (a.prefix) bind(a.prefix, a.ns);
  // Prefixes used inside text (identityref values, instance-identifiers) need their declarations too.
  for (const [p, uri] of Object.entries(el.nsScope)) {
    if (p !== '' && !(p in own) && scope[p] !== uri && el.text.includes(`${p}:`)) own[p] = uri;
  }
  const inner: Record<string, string> = { ...scope, ...own };
  const qname = el.prefix ? `${el.prefix}:${el.name}` : el.name;
  let out = `<${qname}`;
  for (const [p, uri] of Object.entries(own)) out += p ? ` xmlns:${p}="${escapeAttr(uri)}"` : ` xmlns="${escapeAttr(uri)}"`;
  for (const a of el.attrs) out += ` ${a.prefix ? `${a.prefix}:` : ''}${a.name}="${escapeAttr(a.value)}"`;
  if (el.children.length === 0 && el.text === '') return `${out}/>`;
  out += `>${escapeText(el.text)}`;
  for (const c of el.children) out += serializeXml(c, inner);
  return `${out}</${qname}>`;
}
