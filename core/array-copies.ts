// Which elements of a copied array differ from the array it was copied from. Stored trees are never
// changed in place, so a commit that edits one rule of a VRF copies the VRF's array of 10,000 rules
// and replaces one element; whoever compares the old and the new array afterwards (the journal's
// patch, the plane's delta) would walk all 10,000 to find it (~0.2 ms per commit, issue 8). The
// code that copies and replaces says so here; the code that compares asks.
//
// Only copies that keep every position are described: an element replaced where it was. An insert
// or a removal forgets the record (forget()), and comparing walks the arrays as before. The array
// copied from is held weakly: records never keep an old version of a configuration alive.

interface CopyRecord {
  from: WeakRef<readonly unknown[]>;
  /** Positions replaced since the copy (unsorted, may repeat). */
  replaced: number[];
}

const records = new WeakMap<readonly unknown[], CopyRecord>();

/** A copy of `from` that remembers where it came from. */
export function recordedCopy<T>(from: readonly T[]): T[] {
  const copy = from.slice();
  records.set(copy, { from: new WeakRef(from), replaced: [] });
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
  if (!r || r.from.deref() !== from || copy.length !== from.length) return undefined;
  return r.replaced.length < 2 ? r.replaced : [...new Set(r.replaced)].sort((x, y) => x - y);
}
