// Validation that does not grow with the datastore (issue 8), for the one place where that is
// exact: a VRF's firewall rules. libyang 2 has no incremental validation (lyd_validate_all walks
// the whole tree: 10,000 rules cost 40-100 ms per commit). Every YANG constraint on a firewall rule
// is local to the rule's own entry: its musts read only sibling leaves, `action` and a port range's
// `start` are mandatory, the list has no unique, min- or max-elements, nothing has a `when`, and no
// other module imports tandem-firewall (so nothing else can point into it). Values are type-checked
// (patterns, ranges, enums) when libyang stores them (lyd_new_path). So when a commit changes
// only rules (or sets the firewall's default-action / drop-invalid) of an existing VRF, checking
// the changed rule entries here gives libyang's verdict; whenever this check finds anything wrong,
// or meets anything it does not know, the caller runs libyang's full validation, which gives the
// error (so messages, tags and paths are libyang's, exactly as before).
// test/netconf-ops/local-validation.test.ts checks the premises against the modules (and that the
// module is the one this was written for, by hash); a changed tandem-firewall module turns this
// off (full validation) until it is reviewed.
import { createHash } from 'node:crypto';
import type { DataTree, YangContext } from '../../yang/libyang/api.js';
import { logger } from '../../core/log.js';
import type { LyOp } from './edit-config.js';

const log = logger('datastore');

const FIREWALL_MODULE = 'tandem-firewall';
const FIREWALL_REVISION = '2026-11-26';
/** SHA-256 of the module text libyang prints for tandem-firewall@2026-11-26, whose constraints this file mirrors. */
export const FIREWALL_MODULE_SHA256 = 'a6d3692238e04c63e93f9d4023f6d01550a84481c0bf33386f3e1fec217224d6';

const KEY = String.raw`\[name=(?:'[^']*'|"[^"]*")\]`;
const VRF_ENTRY = new RegExp(String.raw`^/tandem-vrf:vrf${KEY}$`);
const FIREWALL = new RegExp(String.raw`^/tandem-vrf:vrf${KEY}/tandem-firewall:firewall$`);
const FIREWALL_LEAF = new RegExp(String.raw`^/tandem-vrf:vrf${KEY}/tandem-firewall:firewall/(?:default-action|drop-invalid)$`);
const RULE = new RegExp(String.raw`^((/tandem-vrf:vrf${KEY}/tandem-firewall:firewall)/rule${KEY})(?:/|$)`);

/** The rule entries a commit's path operations touch, when they touch nothing that needs the whole tree validated. */
export function locallyCheckableRules(ops: LyOp[], existed: (path: string) => boolean): Set<string> | undefined {
  const rules = new Set<string>();
  const firewalls = new Set<string>();
  for (const op of ops) {
    const rule = RULE.exec(op.path);
    if (rule) {
      // A rule of a VRF that is not there yet would create the VRF (and its defaults) on the way.
      if (!firewalls.has(rule[2]!)) {
        if (!existed(rule[2]!)) return undefined;
        firewalls.add(rule[2]!);
      }
      rules.add(rule[1]!);
      continue;
    }
    // Naming an existing VRF or its firewall changes nothing by itself; creating one adds defaults.
    if (op.op === 'set' && op.value === undefined && (VRF_ENTRY.test(op.path) || FIREWALL.test(op.path)) && existed(op.path)) continue;
    // Setting a firewall leaf (removing one would bring its default back: libyang's job).
    if (op.op === 'set' && op.value !== undefined && FIREWALL_LEAF.test(op.path)) continue;
    return undefined;
  }
  return rules;
}

const RULE_LEAVES = new Set(['name', 'description', 'protocol', 'source-prefix', 'destination-prefix', 'action']);
const PORTS = new Set(['source-port', 'destination-port']);

/**
 * Whether every rule entry named is valid as libyang would judge it (a removed entry is: nothing
 * refers to it). False also when the entry holds anything this check does not know.
 */
export function rulesValid(tree: DataTree, rulePaths: Iterable<string>): boolean {
  for (const entry of rulePaths) {
    const leaves = new Map<string, string | undefined>();
    for (const n of tree.xpath(`${entry}//*`)) {
      const rel = n.path.slice(entry.length + 1);
      if (rel.includes('[')) return false;
      leaves.set(rel, n.value);
    }
    if (leaves.size === 0) continue; // removed
    for (const rel of leaves.keys()) {
      const [top, sub, more] = rel.split('/');
      const known = sub === undefined ? RULE_LEAVES.has(top!) || PORTS.has(top!) : PORTS.has(top!) && (sub === 'start' || sub === 'end') && more === undefined;
      if (!known) return false;
    }
    if (!leaves.has('action')) return false; // mandatory
    const protocol = leaves.get('protocol');
    for (const port of PORTS) {
      if (!leaves.has(port)) continue;
      // must "../protocol = 'tcp' or ../protocol = 'udp'"
      if (protocol !== 'tcp' && protocol !== 'udp') return false;
      const start = leaves.get(`${port}/start`);
      if (start === undefined) return false; // mandatory
      const end = leaves.get(`${port}/end`);
      // must ". >= ../start"
      if (end !== undefined && !(Number(end) >= Number(start))) return false;
    }
    // must "not(../source-prefix) or contains(../source-prefix, ':') = contains(., ':')"
    const src = leaves.get('source-prefix'), dst = leaves.get('destination-prefix');
    if (dst !== undefined && src !== undefined && src.includes(':') !== dst.includes(':')) return false;
  }
  return true;
}

/** Whether the loaded tandem-firewall module is the one rulesValid mirrors (else: always validate fully). */
export function firewallModuleIsKnown(yang: YangContext): boolean {
  let text: string;
  try {
    text = yang.schemaText(FIREWALL_MODULE, FIREWALL_REVISION, 'yang');
  } catch {
    return false;
  }
  const hash = createHash('sha256').update(text).digest('hex');
  if (hash !== FIREWALL_MODULE_SHA256) {
    log.warn({ module: `${FIREWALL_MODULE}@${FIREWALL_REVISION}`, hash }, 'firewall module differs from the one local rule validation was written for: every commit validates the whole tree');
    return false;
  }
  return true;
}
