// The changes of a commit as data paths with create/modify/delete, computed once per commit: from
// the edit's libyang path operations when the edit was replayed on running's tree (exact and
// cheap), else from libyang's diff of the old and new trees (copy-config, a large edit, a revert).
import type { ChangeOperation, ConfigChange } from '../../core/subsystem.js';
import type { LyOp } from '../datastore/edit-config.js';

/** Schema path of a data path (predicates dropped), e.g. /tandem-vrf:vrf/tandem-firewall:firewall. */
export function schemaPathOf(dataPath: string): string {
  return dataPath.replace(/\[(?:[^\]'"]|'[^']*'|"[^"]*")*\]/g, '');
}

/**
 * The changes that path operations make. A 'set' without a value (a list entry or container) is a
 * create when `exists` says the node was not there before, else it changes nothing by itself (its
 * children's own operations say what changed): it is then reported as modify, which does not
 * concern the subtrees below it.
 */
export function changesFromOps(ops: LyOp[], exists?: (path: string) => boolean): ConfigChange[] {
  return ops.map((o) => {
    let operation: ChangeOperation = o.op === 'remove' ? 'delete' : 'modify';
    if (o.op === 'set' && o.value === undefined && exists && !exists(o.path)) operation = 'create';
    return { operation, path: o.path, schemaPath: schemaPathOf(o.path) };
  });
}

/** List keys of a list's schema path, in order (empty when not a list). */
export type KeysOf = (schemaPath: string) => string[];

type Json = Record<string, unknown>;

function quote(v: unknown): string {
  const s = String(v);
  return s.includes("'") ? `"${s}"` : `'${s}'`;
}

function operationOf(meta: unknown, inherited: string): string {
  const op = meta && typeof meta === 'object' ? (meta as Json)['yang:operation'] : undefined;
  return typeof op === 'string' ? op : inherited;
}

function reported(op: string): ChangeOperation | undefined {
  if (op === 'create') return 'create';
  if (op === 'delete') return 'delete';
  if (op === 'replace') return 'modify';
  return undefined;
}

/**
 * The changes in libyang's diff (RFC 7951 JSON with yang:operation metadata, as DataTree.diff
 * prints it): a created or deleted container or list entry is one change for its whole subtree.
 */
export function changesFromDiff(diffJson: string, keysOf: KeysOf): ConfigChange[] {
  const out: ConfigChange[] = [];
  if (!diffJson.trim()) return out;
  const walk = (node: Json, path: string, schema: string, inherited: string): void => {
    for (const [member, value] of Object.entries(node)) {
      if (member.startsWith('@')) continue;
      const childPath = `${path}/${member}`;
      const childSchema = `${schema}/${member}`;
      if (Array.isArray(value)) {
        const metas = node[`@${member}`];
        value.forEach((entry, i) => {
          if (entry !== null && typeof entry === 'object') {
            const e = entry as Json;
            const op = operationOf(e['@'], inherited);
            const predicates = keysOf(childSchema).map((k) => `[${k}=${quote(e[k])}]`).join('');
            const entryPath = `${childPath}${predicates}`;
            const r = reported(op);
            if (r) out.push({ operation: r, path: entryPath, schemaPath: childSchema });
            if (r !== 'create' && r !== 'delete') walk(e, entryPath, childSchema, op);
          } else {
            const r = reported(operationOf(Array.isArray(metas) ? metas[i] : undefined, inherited));
            if (r) out.push({ operation: r, path: `${childPath}[.=${quote(entry)}]`, schemaPath: childSchema });
          }
        });
      } else if (value !== null && typeof value === 'object') {
        const op = operationOf((value as Json)['@'], inherited);
        const r = reported(op);
        if (r) out.push({ operation: r, path: childPath, schemaPath: childSchema });
        if (r !== 'create' && r !== 'delete') walk(value as Json, childPath, childSchema, op);
      } else {
        const r = reported(operationOf(node[`@${member}`], inherited));
        if (r) out.push({ operation: r, path: childPath, schemaPath: childSchema });
      }
    }
  };
  walk(JSON.parse(diffJson) as Json, '', '', 'none');
  return out;
}

/** Whether `path` lies strictly below `ancestor` (`ancestor` + '/' + more). */
function isBelow(path: string, ancestor: string): boolean {
  return path.length > ancestor.length && path.charCodeAt(ancestor.length) === 47 /* '/' */ && path.startsWith(ancestor);
}

/**
 * Whether a change concerns the subtree at schema path `owned`: inside it or at it; above it only
 * when it created or deleted (or replaced, path '/') the ancestor, not when it merely named it.
 */
export function touches(owned: string, change: ConfigChange): boolean {
  const c = change.schemaPath;
  // Asked for every owned path of every subsystem and every change: compared without building strings.
  if (c === owned || isBelow(c, owned) || c === '' || c === '/') return true;
  return isBelow(owned, c) && change.operation !== 'modify';
}
