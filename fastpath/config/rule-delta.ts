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
 * Where each rule of a list is, by name. Versions of a list that differ only in rules replaced
 * where they were (the common one-rule edit) share one map, so finding a rule in a list of 10,000
 * does not cost a scan of it on every commit (issue 8: a commit's cost must not grow with the
 * datastore). Built once per list that was not derived that way.
 */
const positions = new WeakMap<readonly unknown[], Map<string, number>>();

/** The position of every rule of `rules` by name (cached with the array; rules must not be mutated). */
export function positionsOf<R>(rules: readonly R[], nameOf: (r: R) => string): Map<string, number> {
  let at = positions.get(rules);
  if (!at) {
    at = new Map();
    for (let i = 0; i < rules.length; i++) at.set(nameOf(rules[i]!), i);
    positions.set(rules, at);
  }
  return at;
}

/**
 * Positions of `next` taken over from `prev` when `next` is `prev` with only the rules `changed`
 * replaced where they were: same length, and every changed rule at its old position (then every
 * other rule, which kept its relative order, is at its old position too). Else `next`'s are built.
 */
export function carriedPositions<R>(prev: readonly R[] | undefined, next: readonly R[], nameOf: (r: R) => string, changed: Iterable<string>): Map<string, number> {
  const known = positions.get(next);
  if (known) return known;
  const old = prev && positions.get(prev);
  if (old && prev!.length === next.length) {
    let same = true;
    for (const name of changed) {
      const i = old.get(name);
      if (i === undefined || nameOf(next[i]!) !== name) {
        same = false;
        break;
      }
    }
    if (same) {
      positions.set(next, old);
      return old;
    }
  }
  return positionsOf(next, nameOf);
}

/**
 * `rules` with `delta` applied (a new array; `rules` is left as it is). Removing every placed name
 * first makes the delta idempotent: applying it twice, or to a list that already has it, gives the
 * same list. Throws when a rule is to follow a rule that is not there.
 */
export function applyRuleDelta<R>(rules: readonly R[], nameOf: (r: R) => string, delta: RuleDelta<R>): R[] {
  const replaced = replacedInPlace(rules, nameOf, delta);
  if (replaced) return replaced;
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

/**
 * The result of a delta that takes out only the rules it places, each of which already follows the
 * rule it is to follow: those rules replaced where they are (what the general case gives too),
 * found through the position index instead of scans; the result shares the index. Undefined for
 * any other delta (creates, deletes, moves: the general case).
 */
function replacedInPlace<R>(rules: readonly R[], nameOf: (r: R) => string, delta: RuleDelta<R>): R[] | undefined {
  if (delta.placed.length === 0 || delta.placed.length !== delta.removed.length) return undefined;
  const at = positionsOf(rules, nameOf);
  const slots: number[] = [];
  const placedNames = new Set<string>();
  for (const { after, rule } of delta.placed) {
    const name = nameOf(rule);
    const i = at.get(name);
    if (i === undefined || placedNames.has(name)) return undefined;
    if ((i === 0 ? null : nameOf(rules[i - 1]!)) !== after) return undefined;
    placedNames.add(name);
    slots.push(i);
  }
  if (!delta.removed.every((n) => placedNames.has(n))) return undefined;
  const out = rules.slice();
  delta.placed.forEach(({ rule }, k) => {
    out[slots[k]!] = rule;
  });
  positions.set(out, at);
  return out;
}
