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
import type { YangContext } from '../../yang/libyang/api.js';
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

function isLeafValue(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/**
 * Whether a rule entry, as libyang prints it now (RFC 7951 JSON with defaults, the entry itself:
 * see ConfigStore.applyToRunning), is valid as libyang would judge it; a removed entry (undefined)
 * is: nothing refers to it. False also when the entry holds anything this check does not know
 * (a member of another module is printed 'module:name': unknown). The JSON is the print the
 * commit needs anyway for its subsystems (one print of the rule, no XPath walk of it).
 */
export function ruleEntryValid(entry: unknown): boolean {
  if (entry === undefined) return true; // removed
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return false;
  const leaves = new Map<string, string | number | boolean>();
  for (const [top, v] of Object.entries(entry as Record<string, unknown>)) {
    if (RULE_LEAVES.has(top)) {
      if (!isLeafValue(v)) return false;
      leaves.set(top, v);
    } else if (PORTS.has(top)) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
      for (const [sub, x] of Object.entries(v as Record<string, unknown>)) {
        if ((sub !== 'start' && sub !== 'end') || !isLeafValue(x)) return false;
        leaves.set(`${top}/${sub}`, x);
      }
      leaves.set(top, '');
    } else {
      return false;
    }
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
  if (dst !== undefined && src !== undefined && String(src).includes(':') !== String(dst).includes(':')) return false;
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
