// The part of a datastore change that NACM's write check needs to diff: the top-level nodes that
// differ between before and after. libyang keeps no hash table for top-level siblings, so a diff of
// two whole datastores with a long top-level list costs quadratic time (2,000 network profiles:
// seconds per edit); unchanged top-level subtrees (shared by the edit, or printing the same) are
// left out of both sides, and the diff of what remains says the same.
import { identityOf, type ConfigNode, type ConfigRoot } from '../datastore/config-tree.js';

export function changedTopLevel(before: ConfigRoot, after: ConfigRoot, xmlOf: (node: ConfigNode) => string): { before: ConfigRoot; after: ConfigRoot } {
  const shared = new Set<ConfigNode>(before.children);
  const afterByKey = new Map<string, ConfigNode>();
  for (const n of after.children) if (!shared.has(n)) afterByKey.set(identityOf(n), n);
  const sameInAfter = new Set<ConfigNode>(after.children.filter((n) => shared.has(n)));
  const keptBefore: ConfigNode[] = [];
  const unchangedAfter = new Set<ConfigNode>();
  for (const n of before.children) {
    if (sameInAfter.has(n)) continue; // the very same subtree: unchanged
    const twin = afterByKey.get(identityOf(n));
    if (twin && xmlOf(twin) === xmlOf(n)) {
      unchangedAfter.add(twin); // rebuilt (copy-config) but equal
      continue;
    }
    keptBefore.push(n);
  }
  const keptAfter = after.children.filter((n) => !sameInAfter.has(n) && !unchangedAfter.has(n));
  return { before: { children: keptBefore }, after: { children: keptAfter } };
}
