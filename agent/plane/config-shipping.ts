// Configurations sent to the plane worker without cloning the whole tree for every phase call, nor
// for every commit. Both sides keep the same short window of configuration versions. A version the
// plane already holds is named by its id; a new one is sent as a delta against the last one sent:
// what is the same object (the operations layer shares with the previous version what a commit did
// not change, see derivedJson in agent/datastore/config-store.ts) or compares equal is named, and only
// what differs is cloned. A single-rule commit in a VRF of 10,000 rules sends that rule, not the VRF:
// structured cloning is far dearer than comparing (about 30x for such a VRF), and it runs on the
// main thread.
import type { ConfigJson } from '../../core/subsystem.js';
import { replacedPositions } from '../../core/array-copies.js';

/** How many versions the plane keeps (a commit needs two: old and new); few, as a large configuration stays until it leaves the window. */
export const CONFIG_WINDOW = 4;

/**
 * What turns a value of the base version into the new one: 0 = the same; { v } = this new value;
 * { o } = an object whose members, in order, are [name] (the same) or [name, delta]; { a } = an
 * array whose elements are, in order, runs { r: [first base index, count] } of base elements kept,
 * [base index, delta] or { v }.
 */
export type Delta = 0 | { v: unknown } | { o: ([string] | [string, Delta])[] } | { a: ArrayElementDelta[] };
type ArrayElementDelta = { r: [number, number] } | [number, Delta] | { v: unknown };

export type ShippedConfig =
  | { ref: number }
  | { id: number; full: ConfigJson }
  | { id: number; base: number; delta: Delta };

type Json = Record<string, unknown>;

function isRecord(x: unknown): x is Json {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** The value of a list entry's first member: libyang prints list keys first in RFC 7951 JSON. */
function firstMember(x: unknown): unknown {
  if (!isRecord(x)) return undefined;
  for (const k in x) return x[k];
  return undefined;
}

export interface ShippingStats {
  refs: number;
  full: number;
  deltas: number;
  /** Values cloned (the parts of a delta that differ). */
  cloned: number;
}

/**
 * The delta from `a` to `b`; 0 when they are equal. Objects equal in value are equal whatever the
 * order of their members (libyang prints members in schema order): nothing is allocated for them,
 * which is what keeps comparing a large unchanged subtree cheap.
 */
export function diff(a: unknown, b: unknown, stats?: ShippingStats): Delta {
  if (a === b) return 0;
  if (isRecord(a) && isRecord(b)) {
    let changed: [number, string, Delta][] | undefined;
    let count = 0;
    for (const k in b) {
      const d = k in a ? diff(a[k], b[k], stats) : newValue(b[k], stats);
      if (d !== 0) (changed ??= []).push([count, k, d]);
      count++;
    }
    if (!changed) {
      let countA = 0;
      for (const k in a) if (k) countA++;
      if (countA === count) return 0;
    }
    const members: ([string] | [string, Delta])[] = Object.keys(b).map((k) => [k]);
    for (const [i, k, d] of changed ?? []) members[i] = [k, d];
    return { o: members };
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const replaced = replacedPositions(b, a);
    if (replaced) return diffAt(a, b, replaced, stats);
    // List entries are compared at the same position first, else matched by their first member (the key).
    let byKey: Map<unknown, number> | undefined;
    const out: ArrayElementDelta[] = [];
    let same = a.length === b.length;
    for (let i = 0; i < b.length; i++) {
      const e = b[i];
      if (i < a.length && a[i] === e) {
        // A run of the same elements at the same place (a VRF's rules but the edited one): one tight
        // loop and one run, not a call per element.
        let end = i + 1;
        const last = Math.min(a.length, b.length);
        while (end < last && a[end] === b[end]) end++;
        keep(out, i, end - i);
        i = end - 1;
        continue;
      }
      if (i < a.length) {
        const d = diff(a[i], e, stats);
        if (d === 0) {
          keep(out, i);
          continue;
        }
        if (firstMember(a[i]) === firstMember(e)) {
          same = false;
          out.push([i, d]);
          continue;
        }
      }
      same = false;
      let j = -1;
      if (isRecord(e)) {
        byKey ??= new Map(a.map((x, n) => [firstMember(x), n]));
        j = byKey.get(firstMember(e)) ?? -1;
      }
      if (j < 0) {
        out.push(newValue(e, stats));
        continue;
      }
      const d = diff(a[j], e, stats);
      if (d === 0) keep(out, j);
      else out.push([j, d]);
    }
    return same ? 0 : { a: out };
  }
  return newValue(b, stats);
}

/**
 * diff of two arrays when `b` is a copy of `a` whose elements differ only at `positions` (whoever
 * copied it said so, core/array-copies.ts): a rule edit in a VRF of 10,000 rules compares that
 * rule, not the 10,000.
 */
function diffAt(a: unknown[], b: unknown[], positions: number[], stats?: ShippingStats): Delta {
  const out: ArrayElementDelta[] = [];
  let from = 0;
  let same = true;
  for (const p of positions) {
    const d = diff(a[p], b[p], stats);
    if (d === 0) continue; // part of the run
    same = false;
    if (p > from) keep(out, from, p - from);
    out.push([p, d]);
    from = p + 1;
  }
  if (same) return 0;
  if (b.length > from) keep(out, from, b.length - from);
  return { a: out };
}

/** Base elements j.. j + count - 1 kept: extends a run of base elements that ends at j - 1. */
function keep(out: ArrayElementDelta[], j: number, count = 1): void {
  const last = out.at(-1);
  if (last !== undefined && typeof last === 'object' && 'r' in last && last.r[0] + last.r[1] === j) last.r[1] += count;
  else out.push({ r: [j, count] });
}

function newValue(v: unknown, stats?: ShippingStats): { v: unknown } {
  if (stats) stats.cloned++;
  return { v };
}

/** `base` turned by `d` into the new value, sharing with `base` everything `d` names as the same. */
export function patch(base: unknown, d: Delta): unknown {
  if (d === 0) return base;
  if ('v' in d) return d.v;
  if ('o' in d) {
    const b = base as Json;
    const out: Json = {};
    for (const m of d.o) out[m[0]] = m.length === 1 ? b[m[0]] : patch(b[m[0]], m[1]);
    return out;
  }
  const b = base as unknown[];
  const out: unknown[] = [];
  for (const e of d.a) {
    if (Array.isArray(e)) out.push(patch(b[e[0]], e[1]));
    else if ('r' in e) for (let j = e.r[0]; j < e.r[0] + e.r[1]; j++) out.push(b[j]);
    else out.push(e.v);
  }
  return out;
}

/** Main side: turns configurations into what to post. */
export class ConfigSender {
  private readonly ids = new WeakMap<object, number>();
  /** Ids of the versions the plane holds, oldest first (the objects are not kept here). */
  private readonly window: number[] = [];
  /** The delta base: the last non-empty configuration shipped (an empty one is what a commit that concerns nobody passes). */
  private base: { id: number; json: ConfigJson } | undefined;
  private seq = 0;
  readonly stats: ShippingStats = { refs: 0, full: 0, deltas: 0, cloned: 0 };

  /** Forget what the plane holds (a message was not posted): the next configuration goes whole. */
  reset(): void {
    this.window.length = 0;
    this.base = undefined;
  }

  ship(json: ConfigJson): ShippedConfig {
    const known = this.ids.get(json);
    if (known !== undefined && this.window.includes(known)) {
      this.stats.refs++;
      return { ref: known };
    }
    const id = ++this.seq;
    const base = this.base && this.window.includes(this.base.id) ? this.base : undefined;
    let shipped: ShippedConfig;
    if (!base) {
      this.stats.full++;
      shipped = { id, full: json };
    } else {
      this.stats.deltas++;
      shipped = { id, base: base.id, delta: diff(base.json, json, this.stats) };
    }
    this.ids.set(json, id);
    this.window.push(id);
    if (this.window.length > CONFIG_WINDOW) this.window.shift();
    if (Object.keys(json).length > 0 || !this.base) this.base = { id, json };
    return shipped;
  }
}

/** Plane side: rebuilds the configurations, sharing what did not change with the version before. */
export class ConfigReceiver {
  private readonly versions = new Map<number, ConfigJson>();

  receive(s: ShippedConfig): ConfigJson {
    if ('ref' in s) {
      const json = this.versions.get(s.ref);
      if (!json) throw new Error(`plane bridge: configuration version ${s.ref} is not held`);
      return json;
    }
    let json: ConfigJson;
    if ('full' in s) {
      json = s.full;
    } else {
      const base = this.versions.get(s.base);
      if (!base) throw new Error(`plane bridge: base configuration version ${s.base} is not held`);
      json = patch(base, s.delta) as ConfigJson;
    }
    this.versions.set(s.id, json);
    // Same eviction as the sender's window: insertion order, oldest out.
    if (this.versions.size > CONFIG_WINDOW) this.versions.delete(this.versions.keys().next().value as number);
    return json;
  }
}
