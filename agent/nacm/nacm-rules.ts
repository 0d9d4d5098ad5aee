// The ietf-netconf-acm configuration (RFC 8341 section 3.5), compiled once per change of running into
// what the checker evaluates: the global switches and defaults, the configured groups, and the
// rule-lists in order with each rule's module, type, parsed path and access operations.
import { logger } from '../../core/log.js';
import { parseRulePath, type RuleStep } from './rule-path.js';

const log = logger('nacm');

export type Access = 'read' | 'create' | 'update' | 'delete' | 'exec';
const ALL_ACCESS: readonly Access[] = ['read', 'create', 'update', 'delete', 'exec'];

export interface CompiledRule {
  ruleList: string;
  name: string;
  /** Module name or '*'. */
  module: string;
  /** Which requests the rule can match: all of them, or one kind (RFC 8341 rule-type choice). */
  type: { kind: 'any' } | { kind: 'rpc'; name: string } | { kind: 'notification'; name: string }
    | { kind: 'data'; path: RuleStep[] | undefined };
  access: ReadonlySet<Access>;
  permit: boolean;
}

export interface RuleList {
  name: string;
  groups: readonly string[];
  rules: CompiledRule[];
}

export interface CompiledNacm {
  enabled: boolean;
  readDefault: boolean;
  writeDefault: boolean;
  execDefault: boolean;
  /** Use the groups the transport gives (the user store); RFC 8341 enable-external-groups. */
  externalGroups: boolean;
  /** Configured groups: group name -> user names. */
  groups: Map<string, Set<string>>;
  ruleLists: RuleList[];
}

type Json = Record<string, unknown>;

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
}

function list(v: unknown): Json[] {
  return Array.isArray(v) ? v.filter((e): e is Json => typeof e === 'object' && e !== null) : [];
}

function accessSet(v: unknown): Set<Access> {
  const text = str(v) ?? '*';
  if (text.trim() === '*') return new Set(ALL_ACCESS);
  return new Set(text.split(/\s+/).filter((t): t is Access => (ALL_ACCESS as readonly string[]).includes(t)));
}

/** RFC 7951 JSON of /ietf-netconf-acm:nacm (printed with defaults), or {} when absent. */
export function compileNacm(root: Json): CompiledNacm {
  const nacm = (root['ietf-netconf-acm:nacm'] ?? {}) as Json;
  const groups = new Map<string, Set<string>>();
  for (const g of list((nacm['groups'] as Json | undefined)?.['group'])) {
    const name = str(g['name']);
    if (name) groups.set(name, new Set((Array.isArray(g['user-name']) ? g['user-name'] : []).map(String)));
  }
  const ruleLists: RuleList[] = [];
  for (const rl of list(nacm['rule-list'])) {
    const name = str(rl['name']) ?? '';
    const rules: CompiledRule[] = [];
    for (const r of list(rl['rule'])) {
      let type: CompiledRule['type'] = { kind: 'any' };
      if (r['rpc-name'] !== undefined) type = { kind: 'rpc', name: str(r['rpc-name']) ?? '' };
      else if (r['notification-name'] !== undefined) type = { kind: 'notification', name: str(r['notification-name']) ?? '' };
      else if (r['path'] !== undefined) {
        const path = parseRulePath(str(r['path']) ?? '');
        // A path tandem cannot parse matches nothing: the rule is inert rather than too wide.
        if (!path) log.warn({ ruleList: name, rule: str(r['name']), path: r['path'] }, 'NACM rule path not understood; rule ignored');
        type = { kind: 'data', path };
      }
      rules.push({
        ruleList: name,
        name: str(r['name']) ?? '',
        module: str(r['module-name']) ?? '*',
        type,
        access: accessSet(r['access-operations']),
        permit: str(r['action']) === 'permit',
      });
    }
    ruleLists.push({ name, groups: (Array.isArray(rl['group']) ? rl['group'] : []).map(String), rules });
  }
  return {
    enabled: nacm['enable-nacm'] !== false,
    readDefault: str(nacm['read-default']) !== 'deny',
    writeDefault: str(nacm['write-default']) === 'permit',
    execDefault: str(nacm['exec-default']) !== 'deny',
    externalGroups: nacm['enable-external-groups'] !== false,
    groups,
    ruleLists,
  };
}
