// RFC 8341's access decisions for one user under one compiled configuration: protocol operations
// (3.4.4), data nodes (3.4.5) and notifications (3.4.6). Pure: no I/O, no counters, no logs.
import type { DataPath } from './data-path.js';
import type { DefaultDenyIndex } from './default-deny.js';
import type { Access, CompiledNacm, CompiledRule } from './nacm-rules.js';
import { ruleCovers } from './rule-path.js';

/** Who is asking, as the transport authenticated them. */
export interface NacmIdentity {
  username: string;
  /** Groups from the transport (the user store); used when enable-external-groups is true. */
  groups: readonly string[];
  /** The recovery user (RFC 8341 3.2.3): never subject to NACM. */
  recovery: boolean;
}

export class UserAccess {
  /** No check applies: NACM disabled, or the recovery user. */
  readonly bypass: boolean;
  /** The user's groups: the transport's (if enabled) and the configured ones naming the user. */
  readonly groups: readonly string[];
  /** The rules of the rule-lists that apply to the user, in order. */
  private readonly rules: CompiledRule[];

  /** `version`: of the configuration the rules were compiled from (a cache key for results). */
  constructor(readonly identity: NacmIdentity, private readonly nacm: CompiledNacm, private readonly deny: DefaultDenyIndex,
    readonly version = -1) {
    this.bypass = identity.recovery || !nacm.enabled;
    const groups = new Set(nacm.externalGroups ? identity.groups : []);
    for (const [g, users] of nacm.groups) if (users.has(identity.username)) groups.add(g);
    this.groups = [...groups];
    this.rules = nacm.ruleLists.filter((rl) => rl.groups.some((g) => g === '*' || groups.has(g))).flatMap((rl) => rl.rules);
  }

  /** May the user run this RPC (module name, rpc name)? */
  exec(module: string, name: string): boolean {
    if (this.bypass) return true;
    if (module === 'ietf-netconf' && name === 'close-session') return true;
    for (const r of this.rules) {
      if (!r.access.has('exec') || (r.module !== '*' && r.module !== module)) continue;
      if (r.type.kind === 'any' || (r.type.kind === 'rpc' && (r.type.name === '*' || r.type.name === name))) return r.permit;
    }
    if (this.deny.ofOperation(module, name) === 'all') return false;
    return this.nacm.execDefault;
  }

  /** May the user have `access` to the data node at `path`? */
  data(path: DataPath, access: Exclude<Access, 'exec'>): boolean {
    if (this.bypass || path.length === 0) return true;
    const module = path[path.length - 1]!.module;
    for (const r of this.rules) {
      if (!r.access.has(access) || (r.module !== '*' && r.module !== module)) continue;
      if (r.type.kind === 'any' || (r.type.kind === 'data' && r.type.path && ruleCovers(r.type.path, path))) return r.permit;
    }
    const mark = this.deny.of(path);
    if (mark === 'all') return false;
    if (access === 'read') return this.nacm.readDefault;
    if (mark === 'write') return false;
    return this.nacm.writeDefault;
  }

  /** May the user receive this notification (module name, notification name)? */
  notification(module: string, name: string): boolean {
    if (this.bypass) return true;
    // RFC 8341 3.4.6: the subscription's own end markers are always delivered.
    if (name === 'replayComplete' || name === 'notificationComplete') return true;
    for (const r of this.rules) {
      if (!r.access.has('read') || (r.module !== '*' && r.module !== module)) continue;
      if (r.type.kind === 'any' || (r.type.kind === 'notification' && (r.type.name === '*' || r.type.name === name))) return r.permit;
    }
    if (this.deny.ofOperation(module, name) === 'all') return false;
    return this.nacm.readDefault;
  }

  /**
   * Could any node at or below the top-level node `module:name` be unreadable? False lets a reply
   * keep that subtree without parsing it: no read default of deny, no deny rule that can reach it,
   * no default-deny mark in it.
   */
  mayDenyReadUnder(module: string, name: string): boolean {
    if (this.bypass) return false;
    if (!this.nacm.readDefault) return true;
    for (const r of this.rules) {
      if (r.permit || !r.access.has('read')) continue;
      if (r.type.kind === 'any') return true; // a module rule: its nodes may be augmented anywhere
      if (r.type.kind !== 'data' || !r.type.path) continue;
      const first = r.type.path[0];
      if (!first || first.name === '*' || (first.name === name && first.module === module)) return true;
    }
    return this.deny.marksUnder(`${module}:${name}`);
  }

  /**
   * Does every data node pass `access` without looking at it? True when NACM does not apply, or
   * when the first rule that can match a data node is a permit of any module and any node (the
   * factory `admin` rule): then reads need no pruning and writes no diff.
   */
  permitsAllData(access: Exclude<Access, 'exec'>): boolean {
    if (this.bypass) return true;
    for (const r of this.rules) {
      if (r.type.kind === 'rpc' || r.type.kind === 'notification' || !r.access.has(access)) continue;
      return r.permit && r.module === '*' && r.type.kind === 'any';
    }
    return false;
  }
}
