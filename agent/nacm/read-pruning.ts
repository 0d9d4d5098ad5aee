// Read access (RFC 8341 3.4.5) on a reply: every data node the user may not read is left out, with
// its subtree. A list entry that is kept keeps its keys.
import type { XmlElement } from '../netconf/xml-element.js';
import type { SchemaIndex } from '../datastore/schema-index.js';
import type { PathStep } from './data-path.js';
import type { UserAccess } from './user-access.js';
import { elementStep } from './xml-data-path.js';

export interface PruneResult {
  kept: XmlElement[];
  /** How many subtrees were left out. */
  removed: number;
}

/** `els` are the children of the node at `under` (schema path, data path); the top level by default. */
export function pruneUnreadable(els: XmlElement[], access: UserAccess, schema: SchemaIndex,
  under: { schemaPath: string; path: PathStep[] } = { schemaPath: '/', path: [] }): PruneResult {
  const result = { removed: 0 };
  const kept = prune(els, access, schema, under.schemaPath, under.path, result);
  return { kept, removed: result.removed };
}

function prune(els: XmlElement[], access: UserAccess, schema: SchemaIndex, schemaPath: string | undefined,
  path: PathStep[], result: { removed: number }): XmlElement[] {
  const out: XmlElement[] = [];
  for (const el of els) {
    const { step, schema: sn } = elementStep(schema, schemaPath, el);
    const here = [...path, step];
    if (!access.data(here, 'read')) {
      result.removed += 1;
      continue;
    }
    if (el.children.length === 0) {
      out.push(el);
      continue;
    }
    const keys = sn?.kind === 'list' ? new Set(sn.keys) : undefined;
    const others = el.children.filter((c) => !keys?.has(c.name));
    const children = prune(others, access, schema, sn?.path, here, result);
    const unchanged = children.length === others.length && children.every((c, i) => c === others[i]);
    const keyEls = keys ? el.children.filter((c) => keys.has(c.name)) : [];
    out.push(unchanged ? el : { ...el, children: [...keyEls, ...children] });
  }
  return out;
}
