// Write access (RFC 8341 3.4.5) of an edit: libyang's diff between the datastore before and after it
// says which nodes are created, updated (value changed or moved) and deleted; each needs its access.
// A created or deleted subtree is created or deleted node by node.
import type { XmlElement } from '../netconf/xml-element.js';
import type { SchemaIndex } from '../datastore/schema-index.js';
import type { DataPath, PathStep } from './data-path.js';
import type { Access } from './nacm-rules.js';
import type { UserAccess } from './user-access.js';
import { elementStep } from './xml-data-path.js';

const YANG_NS = 'urn:ietf:params:xml:ns:yang:1';

export interface WriteDenial {
  path: DataPath;
  access: Exclude<Access, 'read' | 'exec'>;
}

function diffOperation(el: XmlElement): string | undefined {
  return el.attrs.find((a) => a.name === 'operation' && a.ns === YANG_NS)?.value;
}

/** The first node of the diff (libyang XML diff, parsed) the user may not change; undefined if none. */
export function firstWriteDenial(diff: XmlElement[], access: UserAccess, schema: SchemaIndex): WriteDenial | undefined {
  return walk(diff, access, schema, '/', [], undefined);
}

function walk(els: XmlElement[], access: UserAccess, schema: SchemaIndex, schemaPath: string | undefined,
  path: PathStep[], inherited: WriteDenial['access'] | undefined): WriteDenial | undefined {
  for (const el of els) {
    const { step, schema: sn } = elementStep(schema, schemaPath, el);
    const here = [...path, step];
    const op = diffOperation(el);
    let need: WriteDenial['access'] | undefined = inherited;
    if (op === 'create') need = 'create';
    else if (op === 'delete') need = 'delete';
    else if (op === 'replace') need = 'update';
    else if (op === 'none') need = undefined;
    if (need && !access.data(here, need)) return { path: here, access: need };
    // Below a replaced leaf there is nothing; below a moved entry nothing else changed.
    const below = op === 'replace' ? undefined : need;
    const denied = walk(el.children, access, schema, sn?.path, here, below);
    if (denied) return denied;
  }
  return undefined;
}
