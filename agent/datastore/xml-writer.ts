// Serialise XmlElement trees back to text, declaring exactly the namespaces each element needs
// (its own, its attributes', and the prefixes in scope that its text may use).
import type { XmlElement } from '../netconf/xml-element.js';
import { escapeAttr, escapeText } from './config-tree.js';

export interface WriteOptions {
  /** Skip an element (and its subtree) when this returns true. */
  skip?: (el: XmlElement) => boolean;
  /** Drop an attribute when this returns true. */
  dropAttr?: (el: XmlElement, attr: XmlElement['attrs'][number]) => boolean;
}

/** Text of `el` as a standalone element, namespaces declared relative to `inScope`. */
export function writeXml(el: XmlElement, opts: WriteOptions = {}, inScope: Record<string, string> = {}): string {
  const out: string[] = [];
  write(el, inScope, opts, out);
  return out.join('');
}

/** Text of the children of `el` (a wrapper such as <config> or <data>), each standalone. */
export function writeChildren(el: XmlElement, opts: WriteOptions = {}): string {
  const out: string[] = [];
  for (const c of el.children) write(c, {}, opts, out);
  return out.join('');
}

function write(el: XmlElement, scope: Record<string, string>, opts: WriteOptions, out: string[]): void {
  if (opts.skip?.(el)) return;
  const decl: Record<string, string> = {};
  // Keep every declaration the source had in scope if it changed here: values (identityrefs,
  // instance-identifiers, XPath in filters) may use any prefix in scope.
  for (const [p, ns] of Object.entries(el.nsScope)) if (scope[p] !== ns) decl[p] = ns;
  const own = el.prefix ?? '';
  if ((scope[own] ?? decl[own]) !== el.ns && decl[own] !== el.ns) decl[own] = el.ns;
  const attrs: string[] = [];
  for (const a of el.attrs) {
    if (opts.dropAttr?.(el, a)) continue;
    if (a.ns && a.prefix && (scope[a.prefix] ?? decl[a.prefix]) !== a.ns) decl[a.prefix] = a.ns;
    attrs.push(` ${a.prefix && a.ns ? `${a.prefix}:` : ''}${a.name}="${escapeAttr(a.value)}"`);
  }
  const qname = own ? `${own}:${el.name}` : el.name;
  let open = `<${qname}`;
  const next = { ...scope };
  for (const [p, ns] of Object.entries(decl)) {
    if (p === '' && ns === '' && scope[''] === undefined) continue;
    open += p ? ` xmlns:${p}="${escapeAttr(ns)}"` : ` xmlns="${escapeAttr(ns)}"`;
    next[p] = ns;
  }
  open += attrs.join('');
  const kids = el.children.filter((c) => !opts.skip?.(c));
  if (kids.length === 0) {
    const text = el.text;
    out.push(text === '' ? `${open}/>` : `${open}>${escapeText(text)}</${qname}>`);
    return;
  }
  out.push(`${open}>`);
  for (const c of kids) write(c, next, opts, out);
  out.push(`</${qname}>`);
}
