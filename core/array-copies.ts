// Which elements of a copied array differ from the array it was copied from. Stored trees are never
// changed in place, so a commit that edits one rule of a VRF copies the VRF's array of 10,000 rules
// and replaces one element; whoever compares the old and the new array afterwards (the journal's
// patch, the plane's delta) would walk all 10,000 to find it (~0.2 ms per commit, issue 8). The
// code that copies and replaces says so here; the code that compares asks.
//
// Only copies that keep every position are described: an element replaced where it was. An insert
// or a removal forgets the record (forget()), and comparing walks the arrays as before. The array
// copied from is named by a number, not referenced: a record never keeps an older version of a
// configuration alive (not even through a WeakRef, which V8 clears only in a full collection:
// until then each copy of 10,000 rules could hold its predecessor through its record).

interface CopyRecord {
  /** The number of the array this one was copied from. */
  from: number;
  /** Positions replaced since the copy (unsorted, may repeat). */
  replaced: number[];
}

const records = new WeakMap<readonly unknown[], CopyRecord>();
/** Numbers of the arrays copied from. */
const numbers = new WeakMap<readonly unknown[], number>();
let lastNumber = 0;

/** A copy of `from` that remembers where it came from. */
export function recordedCopy<T>(from: readonly T[]): T[] {
  const copy = from.slice();
  let n = numbers.get(from);
  if (n === undefined) numbers.set(from, (n = ++lastNumber));
  records.set(copy, { from: n, replaced: [] });
  return copy;
}

/** `copy[index] = value`, noted on copy's record (if it has one). */
export function replaceAt<T>(copy: T[], index: number, value: T): void {
  copy[index] = value;
  records.get(copy)?.replaced.push(index);
}

/** `copy` is about to change its length or the order of its elements: what its record says no longer holds. */
export function forget(copy: readonly unknown[]): void {
  records.delete(copy);
}

/**
 * The positions (ascending, once each) where `copy` may differ from `from`, when `copy` is a
 * recorded copy of that very array whose elements were only replaced in place; undefined otherwise
 * (the caller compares every element).
 */
export function replacedPositions(copy: readonly unknown[], from: readonly unknown[]): number[] | undefined {
  const r = records.get(copy);
  if (!r || numbers.get(from) !== r.from || copy.length !== from.length) return undefined;
  return r.replaced.length < 2 ? r.replaced : [...new Set(r.replaced)].sort((x, y) => x - y);
}
