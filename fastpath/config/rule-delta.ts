// A commit's change of one VRF's firewall rules as a delta (issue 8): the rules it took out and
// the rules it created, changed or moved, each placed after the rule it now follows. The rule list
// is ordered-by user (first match decides), so a delta keeps order: the soft engine's main thread
// and every worker apply the same delta to the same list, and a one-rule commit sends one rule.

export interface RuleDelta<R> {
  /** Names taken out first: the deleted rules and every rule placed again below. */
  removed: string[];
  /** Rules placed, in their new order, each right after the rule named (null: first). */
  placed: { after: string | null; rule: R }[];
}

/** The firewall part of a VRF as a delta, in RFC 7951 JSON, as the fast-path subsystem computes it. */
export interface FirewallRuleDelta extends RuleDelta<Record<string, unknown>> {
  /** The firewall container's own leaves as they are after the commit (default-action, drop-invalid). */
  leaves: Record<string, unknown>;
}

/**
 * `rules` with `delta` applied (a new array; `rules` is left as it is). Removing every placed name
 * first makes the delta idempotent: applying it twice, or to a list that already has it, gives the
 * same list. Throws when a rule is to follow a rule that is not there.
 */
export function applyRuleDelta<R>(rules: readonly R[], nameOf: (r: R) => string, delta: RuleDelta<R>): R[] {
  const gone = new Set(delta.removed);
  const out = gone.size ? rules.filter((r) => !gone.has(nameOf(r))) : rules.slice();
  for (const { after, rule } of delta.placed) {
    let at = 0;
    if (after !== null) {
      at = out.findIndex((r) => nameOf(r) === after) + 1;
      if (at === 0) throw new Error(`rule delta: no rule ${JSON.stringify(after)} to place ${JSON.stringify(nameOf(rule))} after`);
    }
    out.splice(at, 0, rule);
  }
  return out;
}
