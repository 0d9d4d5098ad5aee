// HA groups (rule 11): each group's state comes from configuration (static `state`) or, in a later
// issue, from VRRP; a group with neither stays backup. Subscribers (the sync of each VRF and that
// VRF's dataplane) are told of every change; editing a static state over NETCONF is therefore a
// planned failover.
import type { HaRole } from '../fastpath/engine.js';
import { logger } from '../core/log.js';

const log = logger('ha-groups');

export type HaController = 'static' | 'vrrp' | 'none';

export interface HaGroupState {
  name: string;
  state: HaRole;
  controller: HaController;
  transitions: number;
  /** ISO date-and-time of the last change, absent before the first decision. */
  lastChange?: string;
}

export interface HaGroupChange {
  group: string;
  oldState?: HaRole;
  newState: HaRole;
  controller: HaController;
}

export interface HaGroupDecision {
  name: string;
  /** Static state, absent when the group is left to VRRP (ha/vrrp: setVrrpState; with no instance it stays backup). */
  state?: HaRole;
}

type Json = Record<string, unknown>;

/** The groups of /tandem-ha:ha in a configuration. */
export function readHaGroups(config: Json): HaGroupDecision[] {
  const ha = config['tandem-ha:ha'] as Json | undefined;
  const groups = Array.isArray(ha?.['group']) ? (ha['group'] as Json[]) : [];
  return groups.map((g) => {
    const s = g['state'];
    if (s !== undefined && s !== 'master' && s !== 'backup') throw new Error(`HA group ${String(g['name'])}: bad state ${String(s)}`);
    return s === undefined ? { name: String(g['name']) } : { name: String(g['name']), state: s };
  });
}

export class HaGroups {
  private groups = new Map<string, HaGroupState>();
  private listeners = new Set<(change: HaGroupChange) => void>();
  /** States reported by the VRRP instances that control groups (ha/vrrp), by group name. */
  private vrrpStates = new Map<string, HaRole>();

  /** Follow every change of every group; returns an unsubscribe function. */
  subscribe(fn: (change: HaGroupChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Current state of a group; an unknown group is backup (it controls nothing). */
  state(name: string): HaRole {
    return this.groups.get(name)?.state ?? 'backup';
  }

  list(): HaGroupState[] {
    return [...this.groups.values()].map((g) => ({ ...g }));
  }

  /** Make the configured decisions live; subscribers hear every actual change. */
  apply(decisions: HaGroupDecision[]): void {
    const wanted = new Set(decisions.map((d) => d.name));
    for (const name of [...this.groups.keys()]) if (!wanted.has(name)) this.groups.delete(name);
    for (const d of decisions) {
      const vrrp = d.state ? undefined : this.vrrpStates.get(d.name);
      const controller: HaController = d.state ? 'static' : vrrp ? 'vrrp' : 'none';
      const state: HaRole = d.state ?? vrrp ?? 'backup';
      const g = this.groups.get(d.name);
      if (!g) {
        const created: HaGroupState = { name: d.name, state, controller, transitions: 0, lastChange: new Date().toISOString() };
        this.groups.set(d.name, created);
        this.emit({ group: d.name, newState: state, controller });
        continue;
      }
      g.controller = controller;
      if (g.state === state) continue;
      const old = g.state;
      g.state = state;
      g.transitions++;
      g.lastChange = new Date().toISOString();
      this.emit({ group: d.name, oldState: old, newState: state, controller });
    }
  }

  /**
   * A VRRP instance drives group `name` (added for ha/vrrp): `state` is the state it reports, or
   * undefined when the instance is gone (the group falls back to 'none', backup). A group that is
   * not configured yet takes the state when apply() creates it; a static group ignores VRRP.
   */
  setVrrpState(name: string, state: HaRole | undefined): void {
    if (state === undefined) this.vrrpStates.delete(name);
    else this.vrrpStates.set(name, state);
    const g = this.groups.get(name);
    if (!g) return;
    if (g.controller === 'static') {
      if (state !== undefined) log.warn({ group: name }, 'VRRP state ignored: the group has a static state');
      return;
    }
    const controller: HaController = state === undefined ? 'none' : 'vrrp';
    const next: HaRole = state ?? 'backup';
    g.controller = controller;
    if (g.state === next) return;
    const old = g.state;
    g.state = next;
    g.transitions++;
    g.lastChange = new Date().toISOString();
    this.emit({ group: name, oldState: old, newState: next, controller });
  }

  private emit(change: HaGroupChange): void {
    log.info(change, 'HA group state');
    for (const fn of this.listeners) {
      try {
        fn(change);
      } catch (err) {
        log.error({ group: change.group, err: (err as Error).message }, 'HA group subscriber failed');
      }
    }
  }
}
