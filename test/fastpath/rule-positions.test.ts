// Issue 8 (commit cost must not grow with the datastore): a rule delta that replaces rules where
// they are is applied through a position index instead of scans, and must give exactly what the
// general algorithm gives; the index is carried to the next version of a list only when that
// version differs in the changed rules' contents alone.
import { expect } from 'chai';
import { applyRuleDelta, carriedPositions, positionsOf, type RuleDelta } from '../../fastpath/config/rule-delta.js';

interface R { name: string; v: number }
const nameOf = (r: R): string => r.name;
const list = (n: number, v = 0): R[] => Array.from({ length: n }, (_, i) => ({ name: `r${i}`, v }));

/** The general algorithm, written out independently: remove, then insert each after its predecessor. */
function reference(rules: readonly R[], delta: RuleDelta<R>): string[] {
  const out = rules.filter((r) => !delta.removed.includes(r.name));
  for (const { after, rule } of delta.placed) out.splice(after === null ? 0 : out.findIndex((r) => r.name === after) + 1, 0, rule);
  return out.map((r) => `${r.name}:${r.v}`);
}

const show = (rules: readonly R[]): string[] => rules.map((r) => `${r.name}:${r.v}`);

describe('fastpath: rule positions for rule deltas (issue 8)', () => {
  it('replaces changed rules in place, sharing the index, with the result of the general algorithm', () => {
    const rules = list(1000);
    const at = positionsOf(rules, nameOf);
    const delta: RuleDelta<R> = {
      removed: ['r0', 'r500', 'r501', 'r999'],
      placed: [
        { after: null, rule: { name: 'r0', v: 1 } },
        { after: 'r499', rule: { name: 'r500', v: 1 } },
        { after: 'r500', rule: { name: 'r501', v: 1 } },
        { after: 'r998', rule: { name: 'r999', v: 1 } },
      ],
    };
    const out = applyRuleDelta(rules, nameOf, delta);
    expect(show(out)).to.deep.equal(reference(rules, delta));
    expect(positionsOf(out, nameOf)).to.equal(at); // carried, not rebuilt
    expect(show(rules)).to.deep.equal(show(list(1000))); // the input is left as it was
  });

  it('takes the general path for creates, deletes and moves, and the index then fits the new list', () => {
    const rules = list(20);
    positionsOf(rules, nameOf);
    const cases: RuleDelta<R>[] = [
      { removed: ['x'], placed: [{ after: 'r3', rule: { name: 'x', v: 2 } }] }, // create
      { removed: ['r3'], placed: [] }, // delete
      { removed: ['r3'], placed: [{ after: 'r10', rule: { name: 'r3', v: 2 } }] }, // move down
      { removed: ['r10'], placed: [{ after: null, rule: { name: 'r10', v: 2 } }] }, // move first
      { removed: ['r3', 'r4'], placed: [{ after: 'r2', rule: { name: 'r4', v: 2 } }, { after: 'r4', rule: { name: 'r3', v: 2 } }] }, // swap
      { removed: ['r3', 'r7'], placed: [{ after: 'r2', rule: { name: 'r3', v: 2 } }] }, // change one, delete another
    ];
    for (const delta of cases) {
      const out = applyRuleDelta(rules, nameOf, delta);
      expect(show(out), JSON.stringify(delta)).to.deep.equal(reference(rules, delta));
      const at = positionsOf(out, nameOf);
      out.forEach((r, i) => expect(at.get(r.name), r.name).to.equal(i));
      expect(at.size).to.equal(out.length);
    }
  });

  it('applying the same in-place delta twice gives the same list (idempotent, as the general case)', () => {
    const rules = list(10);
    const delta: RuleDelta<R> = { removed: ['r4'], placed: [{ after: 'r3', rule: { name: 'r4', v: 9 } }] };
    const once = applyRuleDelta(rules, nameOf, delta);
    expect(show(applyRuleDelta(once, nameOf, delta))).to.deep.equal(show(once));
  });

  it('carries positions to the next version only when the changed rules are where they were', () => {
    const prev = list(100);
    const at = positionsOf(prev, nameOf);
    const edited = prev.slice();
    edited[42] = { name: 'r42', v: 1 };
    expect(carriedPositions(prev, edited, nameOf, ['r42'])).to.equal(at);

    const moved = prev.filter((r) => r.name !== 'r42');
    moved.splice(60, 0, { name: 'r42', v: 1 });
    const movedAt = carriedPositions(prev, moved, nameOf, ['r42']);
    expect(movedAt).to.not.equal(at);
    moved.forEach((r, i) => expect(movedAt.get(r.name)).to.equal(i));

    const swapped = prev.slice();
    [swapped[1], swapped[2]] = [swapped[2]!, swapped[1]!];
    // A change list that names only one of two swapped rules is caught by that rule's position.
    const swappedAt = carriedPositions(prev, swapped, nameOf, ['r1']);
    swapped.forEach((r, i) => expect(swappedAt.get(r.name)).to.equal(i));

    const grown = [...prev, { name: 'r100', v: 0 }];
    const grownAt = carriedPositions(prev, grown, nameOf, ['r100']);
    expect(grownAt.get('r100')).to.equal(100);
  });
});
