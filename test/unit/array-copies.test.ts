// core/array-copies.ts: a copy says where it may differ from the array it was copied from, and only
// while that is true (same length, elements replaced in place, copied from that very array).
import { expect } from 'chai';
import { forget, recordedCopy, replaceAt, replacedPositions } from '../../core/array-copies.js';

describe('core: recorded array copies', () => {
  it('names the positions replaced, ascending and once each', () => {
    const a = ['a', 'b', 'c', 'd', 'e'];
    const b = recordedCopy(a);
    expect(b).to.deep.equal(a);
    expect(b).to.not.equal(a);
    expect(replacedPositions(b, a)).to.deep.equal([]);
    replaceAt(b, 3, 'D');
    replaceAt(b, 1, 'B');
    replaceAt(b, 3, 'DD');
    expect(b).to.deep.equal(['a', 'B', 'c', 'DD', 'e']);
    expect(replacedPositions(b, a)).to.deep.equal([1, 3]);
  });

  it('says nothing about another base, a copy of a copy, a reshaped or an unrecorded array', () => {
    const a = [1, 2, 3];
    const b = recordedCopy(a);
    const c = recordedCopy(b);
    replaceAt(c, 0, 9);
    expect(replacedPositions(c, a), 'c was copied from b, not a').to.equal(undefined);
    expect(replacedPositions(c, b)).to.deep.equal([0]);
    expect(replacedPositions(a, b), 'a is no copy').to.equal(undefined);
    forget(b);
    b.splice(1, 1);
    expect(replacedPositions(b, a), 'b lost an element').to.equal(undefined);
    const d = recordedCopy(a);
    d.push(4); // a change not noted: the length tells
    expect(replacedPositions(d, a)).to.equal(undefined);
    const plain = a.slice();
    replaceAt(plain, 0, 7); // not a recorded copy: replaced, nothing noted
    expect(plain[0]).to.equal(7);
    expect(replacedPositions(plain, a)).to.equal(undefined);
  });
});
