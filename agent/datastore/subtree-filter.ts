// RFC 6241 section 6 subtree filtering over parsed data: containment, selection and content-match
// nodes, namespace matching (an unqualified filter node matches any namespace), attribute match,
// and list keys always reported with a selected list entry.
import type { XmlElement } from '../netconf/xml-element.js';
import { NETCONF_BASE_NS } from './edit-config.js';

/** Keys of the list an element is an entry of, or [] when it is not a list entry / unknown. */
export type ListKeysOf = (path: XmlElement[]) => string[];

function nameMatches(f: XmlElement, d: XmlElement): boolean {
  return f.name === d.name && (f.ns === '' || f.ns === NETCONF_BASE_NS || f.ns === d.ns);
}

function attrsMatch(f: XmlElement, d: XmlElement): boolean {
  for (const a of f.attrs) {
    if (a.ns === '' && (a.name === 'type' || a.name === 'select')) continue;
    if (!d.attrs.some((x) => x.name === a.name && (a.ns === '' || x.ns === a.ns) && x.value === a.value)) return false;
  }
  return true;
}

function isContentMatch(f: XmlElement): boolean {
  return f.children.length === 0 && f.text.trim() !== '';
}

/**
 * The data elements `data` (siblings) that the filter nodes `filter` (siblings) select, with their
 * subtrees pruned; undefined when a content-match node of this level does not match.
 */
function filterLevel(data: XmlElement[], filter: XmlElement[], ancestors: XmlElement[], keysOf: ListKeysOf): XmlElement[] | undefined {
  const matches = filter.filter(isContentMatch);
  for (const m of matches) {
    if (!data.some((d) => nameMatches(m, d) && d.children.length === 0 && d.text.trim() === m.text.trim())) return undefined;
  }
  const others = filter.filter((f) => !isContentMatch(f));
  if (others.length === 0) return data;
  const picked = new Map<XmlElement, XmlElement | 'all'>();
  for (const m of matches) for (const d of data) if (nameMatches(m, d) && d.text.trim() === m.text.trim()) picked.set(d, 'all');
  for (const f of others) {
    for (const d of data) {
      if (!nameMatches(f, d) || !attrsMatch(f, d)) continue;
      if (f.children.length === 0) {
        picked.set(d, 'all');
        continue;
      }
      if (picked.get(d) === 'all') continue;
      const kids = filterLevel(d.children, f.children, [...ancestors, d], keysOf);
      if (!kids || kids.length === 0) continue;
      const prev = picked.get(d);
      const merged = prev && prev !== 'all' ? [...prev.children, ...kids.filter((k) => !prev.children.includes(k))] : kids;
      // Report the keys of a list entry with it, in front, as the schema orders them.
      const keys = keysOf([...ancestors, d]);
      const keyEls = keys.map((k) => d.children.find((c) => c.name === k)).filter((c): c is XmlElement => !!c);
      const body = [...keyEls, ...merged.filter((k) => !keyEls.includes(k))];
      picked.set(d, { ...d, children: body });
    }
  }
  const out: XmlElement[] = [];
  for (const d of data) {
    const p = picked.get(d);
    if (p === 'all') out.push(d);
    else if (p) out.push(p);
  }
  return out;
}

/** Apply a subtree filter (the children of <filter>) to top-level data elements. */
export function subtreeFilter(data: XmlElement[], filter: XmlElement[], keysOf: ListKeysOf): XmlElement[] {
  // An empty filter selects nothing (RFC 6241 6.4.2).
  if (filter.length === 0) return [];
  return filterLevel(data, filter, [], keysOf) ?? [];
}
