// Configurations sent to the plane worker without cloning the whole tree for every phase call.
// Both sides keep the same short window of configuration versions. A configuration the plane
// already holds is named by its version id; a new one is sent as a delta against the last one sent:
// top-level members and top-level list entries that are the same objects (the operations layer
// shares what a commit did not change, see derivedJson in agent/datastore/config-store.ts) are
// named, only the others are cloned. So a commit costs the bridge what it changed, not the datastore.
import type { ConfigJson } from '../../core/subsystem.js';

/** How many versions each side keeps (a commit needs two: old and new; validate may add one). */
export const CONFIG_WINDOW = 6;

/** A top-level member of a delta: kept from the base, a list rebuilt from base entries and new ones, or a new value. */
type MemberDelta = { keep: true } | { list: (number | { v: unknown })[] } | { v: unknown };

export type ShippedConfig =
  | { ref: number }
  | { id: number; full: ConfigJson }
  | { id: number; base: number; members: Record<string, MemberDelta> };

function isRecord(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** Main side: turns configurations into what to post. */
export class ConfigSender {
  private readonly ids = new WeakMap<object, number>();
  /** Versions the plane holds, oldest first, with the objects they were made from. */
  private readonly window: { id: number; json: ConfigJson }[] = [];
  private seq = 0;
  /** Entries cloned vs named by reference, for the bench and the debug log. */
  readonly stats = { full: 0, deltas: 0, refs: 0, clonedMembers: 0, clonedEntries: 0, keptEntries: 0 };

  /** Forget what the plane holds (a message was not posted): the next configuration goes whole. */
  reset(): void {
    this.window.length = 0;
  }

  ship(json: ConfigJson): ShippedConfig {
    const known = this.ids.get(json);
    if (known !== undefined && this.window.some((w) => w.id === known)) {
      this.stats.refs++;
      return { ref: known };
    }
    const id = ++this.seq;
    const base = this.window.at(-1);
    let shipped: ShippedConfig;
    if (!base) {
      this.stats.full++;
      shipped = { id, full: json };
    } else {
      this.stats.deltas++;
      shipped = { id, base: base.id, members: this.delta(base.json, json) };
    }
    this.ids.set(json, id);
    this.window.push({ id, json });
    if (this.window.length > CONFIG_WINDOW) this.window.shift();
    return shipped;
  }

  private delta(base: ConfigJson, json: ConfigJson): Record<string, MemberDelta> {
    const members: Record<string, MemberDelta> = {};
    for (const [k, v] of Object.entries(json)) {
      const old = base[k];
      if (old === v) {
        members[k] = { keep: true };
      } else if (Array.isArray(v) && Array.isArray(old) && old.length > 0) {
        const index = new Map<unknown, number>();
        old.forEach((e, i) => { if (isRecord(e)) index.set(e, i); });
        members[k] = {
          list: v.map((e) => {
            const i = index.get(e);
            if (i !== undefined) {
              this.stats.keptEntries++;
              return i;
            }
            this.stats.clonedEntries++;
            return { v: e };
          }),
        };
      } else {
        this.stats.clonedMembers++;
        members[k] = { v };
      }
    }
    return members;
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
      json = {};
      for (const [k, d] of Object.entries(s.members)) {
        if ('keep' in d) json[k] = base[k];
        else if ('list' in d) {
          const old = base[k] as unknown[];
          json[k] = d.list.map((e) => (typeof e === 'number' ? old[e] : e.v));
        } else json[k] = d.v;
      }
    }
    this.versions.set(s.id, json);
    // Same eviction as the sender's window: insertion order, oldest out.
    if (this.versions.size > CONFIG_WINDOW) this.versions.delete(this.versions.keys().next().value as number);
    return json;
  }
}
