// The `path` of a NACM data-node rule (RFC 8341 node-instance-identifier) in the form libyang stores
// it (module names as prefixes, e.g. "/tandem-vrf:vrf[name='main']/tandem-firewall:firewall"), and
// the test whether a data node is the node it names or one of its descendants.
import type { DataPath } from './data-path.js';

export interface RuleStep {
  /** Module name; undefined: the module of the previous step. '*' names match any node. */
  module: string;
  name: string;
  predicates: [string, string][];
}

/** Steps of a rule path, or undefined when it is not a node-instance-identifier tandem understands. */
export function parseRulePath(text: string): RuleStep[] | undefined {
  const s = text.trim();
  if (s === '/') return [];
  if (!s.startsWith('/')) return undefined;
  const steps: RuleStep[] = [];
  let i = 0;
  let module: string | undefined;
  while (i < s.length) {
    if (s[i] !== '/') return undefined;
    i += 1;
    const m = /^(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*|\*)/.exec(s.slice(i));
    if (!m) return undefined;
    i += m[0].length;
    module = m[1] ?? module;
    if (!module) return undefined; // the first step must name its module
    const predicates: [string, string][] = [];
    while (s[i] === '[') {
      const p = /^\[\s*(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*|\.)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*\]/.exec(s.slice(i));
      if (!p) return undefined;
      predicates.push([p[1]!, p[2] ?? p[3] ?? '']);
      i += p[0].length;
    }
    steps.push({ module, name: m[2]!, predicates });
  }
  return steps;
}

/** Is the node at `path` the node the rule names, or below it? */
export function ruleCovers(rule: readonly RuleStep[], path: DataPath): boolean {
  if (rule.length > path.length) return false;
  for (let i = 0; i < rule.length; i++) {
    const r = rule[i]!;
    const n = path[i]!;
    if (r.name !== '*' && (r.name !== n.name || r.module !== n.module)) return false;
    for (const [k, v] of r.predicates) {
      const have = n.keys?.find(([name]) => name === k);
      if (!have || have[1] !== v) return false;
    }
  }
  return true;
}
