// The fast path's part of a commit: system/fast-path (engine, pool size, conntrack max), network
// profiles, and each VRF's firewall, CG-NAT, virtual services and conntrack timeouts. A VRF whose
// part changed is staged in the engine at prepare and made live at apply; a pool size change
// rebalances the workers at apply. Must run before the sync subsystem (it creates the VRFs).
import type { DataplaneEngine, VrfDataplaneConfig } from './engine.js';
import { logger } from '../core/log.js';
import { SubsystemApplyError, type CommitContext, type CommitSubsystem, type ConfigChange, type ConfigJson, type StateProvider, type SubsystemError } from '../core/subsystem.js';
import { parseFirewallDefaults, parseFirewallRule, parseNetworkProfiles, parseVrfConfig, VrfConfigError } from './config/vrf-config.js';
import { carriedPositions, type FirewallRuleDelta } from './config/rule-delta.js';
import type { VirtualServiceStats } from './soft/vrf-dataplane.js';

const log = logger('fastpath');

export const FASTPATH_OWNS = [
  '/tandem-system:system/fast-path',
  '/tandem-network-profile:network-profile',
  '/tandem-vrf:vrf/tandem-firewall:firewall',
  '/tandem-vrf:vrf/tandem-cg-nat:cg-nat',
  '/tandem-vrf:vrf/tandem-virtual-service:virtual-service',
  '/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/timeouts',
];

type Json = Record<string, unknown>;

interface FastPathSettings {
  engine: string;
  workers: number;
  conntrackMax: number;
}

function obj(v: unknown): Json {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {};
}

function settingsOf(config: ConfigJson): FastPathSettings {
  const fp = obj(obj(config['tandem-system:system'])['fast-path']);
  const limits = obj(fp.limits);
  // Printed with defaults, so these leaves are present; the fallbacks cover a config without the container.
  return {
    engine: typeof fp.engine === 'string' ? fp.engine : 'soft',
    workers: Number(obj(limits['cg-nat'])['nb-event-threads'] ?? 2),
    conntrackMax: Number(obj(limits.conntrack).max ?? 1048576),
  };
}

function profilesOf(config: ConfigJson): Json[] {
  const p = config['tandem-network-profile:network-profile'];
  return Array.isArray(p) ? (p as Json[]) : [];
}

function vrfsOf(config: ConfigJson): Map<string, Json> {
  const list = config['tandem-vrf:vrf'];
  const out = new Map<string, Json>();
  if (Array.isArray(list)) for (const v of list as Json[]) if (typeof v.name === 'string') out.set(v.name, v);
  return out;
}

/** The members of a VRF entry the fast path reads (others belong to sync/ha). */
function fastPathPart(vrf: Json): Json {
  const ns = obj(vrf['tandem-conntrack:network-stack']);
  const timeouts = obj(obj(obj(ns['fast-path']).conntrack).timeouts);
  const part: Json = { name: vrf.name, 'tandem-conntrack:network-stack': { 'fast-path': { conntrack: { timeouts } } } };
  for (const k of ['tandem-firewall:firewall', 'tandem-cg-nat:cg-nat', 'tandem-virtual-service:virtual-service']) {
    if (vrf[k] !== undefined) part[k] = vrf[k];
  }
  return part;
}

/** Names of the profiles added, removed or changed. */
function changedProfiles(before: Json[], after: Json[]): Set<string> {
  const out = new Set<string>();
  const old = new Map(before.map((p) => [String(p.name), p]));
  for (const p of after) {
    const name = String(p.name);
    const o = old.get(name);
    if (!o || (o !== p && JSON.stringify(o) !== JSON.stringify(p))) out.add(name);
    old.delete(name);
  }
  for (const name of old.keys()) out.add(name);
  return out;
}

/** A VRF reads network profiles only through its virtual services' network-profile leaves. */
function usesProfile(vrf: Json, names: Set<string>): boolean {
  if (names.size === 0) return false;
  const services = vrf['tandem-virtual-service:virtual-service'];
  return Array.isArray(services) && (services as Json[]).some((vs) => names.has(String(vs['network-profile'])));
}

function vrfConfig(name: string, vrf: Json, profiles: Json[], settings: FastPathSettings): VrfDataplaneConfig {
  return { name, json: fastPathPart(vrf), networkProfiles: profiles, conntrackMax: settings.conntrackMax };
}

/** The first key value of a path's list entry at `list` (e.g. the VRF name), undefined when the path stops at the list. */
function entryName(path: string, list: string): string | undefined {
  if (!path.startsWith(list)) return undefined;
  const m = /^\[[\w.-]+=(?:'([^']*)'|"([^"]*)")\]/.exec(path.slice(list.length));
  return m ? (m[1] ?? m[2]) : undefined;
}

const VRF_LIST = '/tandem-vrf:vrf';
const PROFILE_LIST = '/tandem-network-profile:network-profile';
const FIREWALL = `${VRF_LIST}/tandem-firewall:firewall`;
const FIREWALL_RULE = `${FIREWALL}/rule`;
const FIREWALL_LEAVES = new Set([`${FIREWALL}/default-action`, `${FIREWALL}/drop-invalid`]);
/** Above this many changed rules in one VRF, the engine gets the VRF's whole configuration instead. */
const MAX_DELTA_RULES = 256;

/**
 * The rules of one VRF that its changes touch, when every change of that VRF is a firewall rule
 * (or inside one), a firewall leaf, or merely names the VRF entry or the firewall container; else
 * undefined (the change needs the whole VRF configured again).
 */
function changedRuleNames(changes: ConfigChange[], vrfName: string): Set<string> | undefined {
  const names = new Set<string>();
  for (const c of changes) {
    if (entryName(c.path, VRF_LIST) !== vrfName) continue;
    if ((c.schemaPath === VRF_LIST || c.schemaPath === FIREWALL) && c.operation === 'modify') continue;
    if (FIREWALL_LEAVES.has(c.schemaPath)) continue;
    if (c.schemaPath !== FIREWALL_RULE && !c.schemaPath.startsWith(`${FIREWALL_RULE}/`)) return undefined;
    const m = /^\/tandem-vrf:vrf\[name=(?:'[^']*'|"[^"]*")\]\/tandem-firewall:firewall\/rule\[name=(?:'([^']*)'|"([^"]*)")\]/.exec(c.path);
    if (!m) return undefined;
    names.add(m[1] ?? m[2]!);
  }
  return names.size <= MAX_DELTA_RULES ? names : undefined;
}

function rulesOf(vrf: Json | undefined): Json[] {
  const fw = obj(vrf?.['tandem-firewall:firewall']);
  return Array.isArray(fw.rule) ? (fw.rule as Json[]) : [];
}

const ruleName = (r: Json): string => String(r.name);

/**
 * The delta that turns the old rule list (`old`, the VRF before the commit) into `vrf`'s (JSON
 * after the commit) for the rules named. Each named rule is found through the rules' position
 * index (carried over from the previous commit's list when only these rules changed), not by a
 * scan of the VRF's rules.
 */
function ruleDelta(old: Json | undefined, vrf: Json, names: Set<string>): FirewallRuleDelta {
  const fw = obj(vrf['tandem-firewall:firewall']);
  const rules = rulesOf(vrf);
  const placed: FirewallRuleDelta['placed'] = [];
  if (names.size) {
    const at = carriedPositions(rulesOf(old), rules, ruleName, names);
    const found: number[] = [];
    for (const name of names) {
      const i = at.get(name);
      if (i !== undefined) found.push(i);
    }
    // In the new order (first match decides: each placed after the rule it now follows).
    found.sort((a, b) => a - b);
    for (const i of found) placed.push({ after: i === 0 ? null : ruleName(rules[i - 1]!), rule: rules[i]! });
  }
  const leaves: Json = {};
  for (const k of ['default-action', 'drop-invalid']) if (fw[k] !== undefined) leaves[k] = fw[k];
  return { removed: [...names], placed, leaves };
}

/** What a commit's changes say about the fast path, or undefined when they cannot say (compare the JSON). */
interface ChangedParts {
  /** VRFs with a change under one of their fast-path subtrees, or created/deleted. */
  vrfs: Set<string>;
  /** VRFs whose entry itself was set (a merge may or may not have changed their fast-path part). */
  maybeVrfs: Set<string>;
  profiles: Set<string>;
  system: boolean;
}

function changedParts(changes: ConfigChange[]): ChangedParts | undefined {
  const out: ChangedParts = { vrfs: new Set(), maybeVrfs: new Set(), profiles: new Set(), system: false };
  for (const c of changes) {
    if (c.schemaPath.startsWith('/tandem-system:system')) {
      out.system = true;
    } else if (c.schemaPath.startsWith(PROFILE_LIST)) {
      const name = entryName(c.path, PROFILE_LIST);
      if (name === undefined) return undefined;
      out.profiles.add(name);
    } else if (c.schemaPath.startsWith(VRF_LIST)) {
      const name = entryName(c.path, VRF_LIST);
      if (name === undefined) return undefined;
      if (c.schemaPath === VRF_LIST && c.operation === 'modify') out.maybeVrfs.add(name);
      else out.vrfs.add(name);
    } else {
      return undefined; // '/' or anything unexpected: the whole configuration may have changed
    }
  }
  return out;
}

export class FastpathSubsystem implements CommitSubsystem {
  readonly name = 'fastpath';
  readonly owns = FASTPATH_OWNS;
  private prepared: string[] = [];
  /** Pool size before the last apply (undo restores it). */
  private workersBefore: number | undefined;

  constructor(private readonly engine: DataplaneEngine) {}

  validate(ctx: CommitContext): SubsystemError[] {
    const errors: SubsystemError[] = [];
    const settings = settingsOf(ctx.newConfig);
    if (settings.engine !== this.engine.kind) {
      errors.push({
        message: `not yet implemented: switching the running ${this.engine.kind} engine to ${settings.engine}; start the agent with that engine instead`,
        path: '/tandem-system:system/fast-path/engine',
      });
    }
    let profiles;
    try {
      profiles = parseNetworkProfiles(profilesOf(ctx.newConfig));
    } catch (err) {
      errors.push(this.toError(err));
      return errors;
    }
    // A VRF whose part and profiles did not change parses as it did when it was committed; of a
    // VRF whose rules alone changed, only those rules are parsed.
    for (const [name, cfg] of this.changedVrfs(ctx)) {
      if (!cfg) continue;
      try {
        if (cfg.ruleDelta) {
          const fwPath = `/tandem-vrf:vrf[name='${name}']/tandem-firewall:firewall`;
          parseFirewallDefaults(cfg.ruleDelta.leaves, fwPath);
          for (const { rule } of cfg.ruleDelta.placed) parseFirewallRule(rule, `${fwPath}/rule[name='${String(rule.name)}']`);
        } else {
          parseVrfConfig(cfg.json, profiles, settings.conntrackMax);
        }
      } catch (err) {
        errors.push(this.toError(err, `/tandem-vrf:vrf[name='${name}']`));
      }
    }
    return errors;
  }

  async prepare(ctx: CommitContext): Promise<SubsystemError[]> {
    this.prepared = [];
    const errors: SubsystemError[] = [];
    for (const [name, cfg] of this.changedVrfs(ctx)) {
      if (!cfg) continue;
      try {
        await this.engine.prepareVrf(cfg);
        this.prepared.push(name);
      } catch (err) {
        errors.push(this.toError(err, `/tandem-vrf:vrf[name='${name}']`));
      }
    }
    return errors;
  }

  async apply(ctx: CommitContext): Promise<void> {
    const before = settingsOf(ctx.oldConfig), after = settingsOf(ctx.newConfig);
    this.workersBefore = this.engine.workers;
    for (const [name, cfg] of this.changedVrfs(ctx)) {
      try {
        await this.engine.applyVrf(name, cfg);
      } catch (err) {
        log.error({ tx: ctx.id, vrf: name, err: (err as Error).message }, 'applying VRF to the dataplane failed');
        throw new SubsystemApplyError(`vrf ${name}: ${(err as Error).message}`, `/tandem-vrf:vrf[name='${name}']`);
      }
    }
    this.prepared = [];
    if (after.workers !== this.engine.workers || before.workers !== after.workers) {
      try {
        log.info({ tx: ctx.id, from: this.engine.workers, to: after.workers }, 'resizing the fast-path worker pool');
        await this.engine.setWorkers(after.workers);
      } catch (err) {
        log.error({ tx: ctx.id, err: (err as Error).message }, 'resizing the worker pool failed');
        throw new SubsystemApplyError(`resizing the worker pool to ${after.workers}: ${(err as Error).message}`,
          '/tandem-system:system/fast-path/limits/cg-nat/nb-event-threads');
      }
    }
  }

  async abort(): Promise<void> {
    for (const name of this.prepared) await this.engine.abortVrf(name);
    this.prepared = [];
  }

  /** Put every VRF this commit changed back as oldConfig has it, and the pool size as it was. */
  async undo(ctx: CommitContext): Promise<void> {
    await this.abort();
    const back: CommitContext = { ...ctx, oldConfig: ctx.newConfig, newConfig: ctx.oldConfig };
    const failures: string[] = [];
    for (const [name, cfg] of this.changedVrfs(back)) {
      try {
        if (cfg) await this.engine.prepareVrf(cfg);
        await this.engine.applyVrf(name, cfg);
      } catch (err) {
        failures.push(`vrf ${name}: ${(err as Error).message}`);
      }
    }
    if (this.workersBefore !== undefined && this.engine.workers !== this.workersBefore) await this.engine.setWorkers(this.workersBefore);
    if (failures.length) throw new Error(failures.join('; '));
  }

  /**
   * VRFs whose fast-path part differs (undefined config: the VRF is gone): from the commit's
   * changes when known (a firewall rule edit names its VRF, nothing else is compared), else by
   * comparing every VRF's part.
   */
  private changedVrfs(ctx: CommitContext): Map<string, VrfDataplaneConfig | undefined> {
    // validate, prepare and apply of one commit get the same context: computed once for the three.
    let out = this.changedVrfsOf.get(ctx);
    if (!out) {
      const parts = ctx.changes && changedParts(ctx.changes);
      out = parts ? this.changedVrfsFrom(ctx, parts) : this.comparedVrfs(ctx);
      this.changedVrfsOf.set(ctx, out);
    }
    return out;
  }

  private readonly changedVrfsOf = new WeakMap<CommitContext, Map<string, VrfDataplaneConfig | undefined>>();

  private changedVrfsFrom(ctx: CommitContext, parts: ChangedParts): Map<string, VrfDataplaneConfig | undefined> {
    const out = new Map<string, VrfDataplaneConfig | undefined>();
    const oldSettings = settingsOf(ctx.oldConfig), newSettings = settingsOf(ctx.newConfig);
    if (parts.system && oldSettings.conntrackMax !== newSettings.conntrackMax) return this.comparedVrfs(ctx);
    const oldVrfs = vrfsOf(ctx.oldConfig), newVrfs = vrfsOf(ctx.newConfig);
    const newProfiles = profilesOf(ctx.newConfig);
    const names = new Set(parts.vrfs);
    for (const name of parts.maybeVrfs) {
      const o = oldVrfs.get(name), n = newVrfs.get(name);
      if (!o || !n || JSON.stringify(fastPathPart(o)) !== JSON.stringify(fastPathPart(n))) names.add(name);
    }
    if (parts.profiles.size) {
      for (const [name, vrf] of newVrfs) if (usesProfile(vrf, parts.profiles)) names.add(name);
      for (const [name, vrf] of oldVrfs) if (usesProfile(vrf, parts.profiles)) names.add(name);
    }
    for (const name of names) {
      const vrf = newVrfs.get(name);
      if (vrf) {
        const cfg = vrfConfig(name, vrf, newProfiles, newSettings);
        // Only its rules changed (not a profile it uses, not the VRF itself): a delta will do.
        const rules = oldVrfs.has(name) && !parts.maybeVrfs.has(name) && !usesProfile(vrf, parts.profiles)
          ? changedRuleNames(ctx.changes ?? [], name) : undefined;
        if (rules) cfg.ruleDelta = ruleDelta(oldVrfs.get(name), vrf, rules);
        out.set(name, cfg);
      } else if (oldVrfs.has(name)) {
        out.set(name, undefined);
      }
    }
    return out;
  }

  private comparedVrfs(ctx: CommitContext): Map<string, VrfDataplaneConfig | undefined> {
    const out = new Map<string, VrfDataplaneConfig | undefined>();
    const oldVrfs = vrfsOf(ctx.oldConfig), newVrfs = vrfsOf(ctx.newConfig);
    const oldSettings = settingsOf(ctx.oldConfig), newSettings = settingsOf(ctx.newConfig);
    const newProfiles = profilesOf(ctx.newConfig);
    const profileChanges = changedProfiles(profilesOf(ctx.oldConfig), newProfiles);
    const globalChange = oldSettings.conntrackMax !== newSettings.conntrackMax;
    for (const [name, vrf] of newVrfs) {
      const old = oldVrfs.get(name);
      if (!old || globalChange || usesProfile(vrf, profileChanges) || usesProfile(old, profileChanges)
        || (old !== vrf && JSON.stringify(fastPathPart(old)) !== JSON.stringify(fastPathPart(vrf)))) {
        out.set(name, vrfConfig(name, vrf, newProfiles, newSettings));
      }
    }
    for (const name of oldVrfs.keys()) if (!newVrfs.has(name)) out.set(name, undefined);
    return out;
  }

  private toError(err: unknown, fallbackPath?: string): SubsystemError {
    if (err instanceof VrfConfigError) return { message: err.message, path: err.path };
    return { message: err instanceof Error ? err.message : String(err), path: fallbackPath };
  }
}

/** Something that can report per-virtual-service counters (the soft engine does). */
export interface VirtualServiceStatsSource {
  vrfNames(): string[];
  virtualServiceStats(vrf: string): Promise<Map<string, VirtualServiceStats>>;
}

/** State data: tcpstat of every virtual service (uint64 gauges are JSON strings in RFC 7951). */
export class FastpathStateProvider implements StateProvider {
  readonly name = 'fastpath';
  readonly paths = ['/tandem-vrf:vrf/tandem-virtual-service:virtual-service'];

  constructor(private readonly source: VirtualServiceStatsSource) {}

  async state(): Promise<ConfigJson> {
    const vrfs: Json[] = [];
    for (const vrf of this.source.vrfNames()) {
      const stats = await this.source.virtualServiceStats(vrf);
      if (stats.size === 0) continue;
      vrfs.push({
        name: vrf,
        'tandem-virtual-service:virtual-service': [...stats].map(([name, s]) => ({
          name,
          tcpstat: {
            'mirror-conn-list-on-active': String(s.mirrorConnListOnActive),
            'mirrored-connections-on-standby': String(s.mirroredConnectionsOnStandby),
            connections: String(s.connections),
          },
        })),
      });
    }
    return vrfs.length ? { 'tandem-vrf:vrf': vrfs } : {};
  }
}
