// A commit that changes some firewall rules of a VRF, as one nft transaction on the live forward
// chain that touches those rules only (issue 8 item 1). Every tandem rule's nft rule carries its
// identity twice: the comment `rule NAME` (what `nft list` shows) and the kernel handle the engine
// tracks (RuleHandles, read after a whole load and kept up to date from nft's echo of each edit).
//
// The batch: the changed, moved and deleted rules are deleted by handle; the counter of an edited
// or deleted rule goes (an edited rule counts again from 0, as with a reload); the new and edited
// ones get a counter; each placed rule is inserted right before the next rule that stays (or the
// default-action rule, always last), in the new order, so inserting them in order gives exactly
// running's order; a changed default action replaces its rule in place. Rules that stay keep
// their kernel rule object, handle and counter: nothing else of the table is touched.
import type { FirewallRule, SoftVrfConfig } from '../config/vrf-config.js';
import { TABLE, defaultActionRule, firewallRule, ruleComment, ruleCounterName } from './nft-ruleset.js';

const CHAIN = `inet ${TABLE} forward`;

/** Kernel handles of the forward chain's firewall rules, by tandem rule name, and of its default-action rule. */
export interface RuleHandles {
  rules: Map<string, number>;
  defaultRule: number;
}

/** One step of an edit, in batch order (nft-rule-batch.ts sends them on netlink, `script` is their nft text). */
export type RuleEditOp =
  | { op: 'delete-rule'; handle: number }
  | { op: 'delete-counter'; name: string }
  | { op: 'add-counter'; name: string }
  /** Inserted right before the rule with handle `position`. */
  | { op: 'insert-rule'; position: number; rule: FirewallRule }
  | { op: 'replace-default'; handle: number; action: 'accept' | 'drop' };

/** An edit rendered against the live chain: its steps, the same as an `nft -f` script, and what it changes. */
export interface RuleEdit {
  ops: RuleEditOp[];
  script: string;
  /** Names whose nft rule the script deletes (deleted, edited or moved rules). */
  deleted: string[];
  /** Names the script inserts, in the order of the script. */
  inserted: string[];
  /** Rules placed plus rules deleted (0: the batch changes no rule, at most the default action). */
  touched: number;
}

type NftJson = { nftables?: Record<string, unknown>[] };

interface NftRuleJson {
  handle?: number;
  comment?: string;
  expr?: Record<string, unknown>[];
}

const COMMENT_PREFIX = ruleComment('');

function nameOfComment(comment: string | undefined): string | undefined {
  return comment?.startsWith(COMMENT_PREFIX) ? comment.slice(COMMENT_PREFIX.length) : undefined;
}

function isDefaultRule(rule: NftRuleJson): boolean {
  return (rule.expr ?? []).some((e) => e.counter === 'fw_default_accept' || e.counter === 'fw_default_drop');
}

/**
 * The handles of `nft -j -a list chain inet tandem forward`; undefined when the chain does not
 * have exactly one default-action rule or holds a tandem rule twice (then the next firewall edit
 * loads the table whole again).
 */
export function parseRuleHandles(listing: string): RuleHandles | undefined {
  const parsed = JSON.parse(listing) as NftJson;
  const rules = new Map<string, number>();
  let defaultRule: number | undefined;
  for (const item of parsed.nftables ?? []) {
    const rule = item.rule as NftRuleJson | undefined;
    if (!rule || typeof rule.handle !== 'number') continue;
    const name = nameOfComment(rule.comment);
    if (name !== undefined) {
      if (rules.has(name)) return undefined;
      rules.set(name, rule.handle);
    } else if (isDefaultRule(rule)) {
      if (defaultRule !== undefined) return undefined;
      defaultRule = rule.handle;
    }
  }
  return defaultRule === undefined ? undefined : { rules, defaultRule };
}

/**
 * Handles of the rules an edit inserted, from nft's echo (`nft -e -a -f -`, text: with -j nft
 * would open /dev/stdin by name, which fails on the socket node gives it), by tandem rule name:
 * lines `insert rule ... comment "rule NAME" # handle N` (names are [A-Za-z0-9_.-], YANG's tt:name).
 */
export function insertedHandles(echo: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of echo.split('\n')) {
    if (!line.startsWith('insert rule ')) continue;
    const m = /comment "rule ([A-Za-z0-9_.-]+)" # handle (\d+)\s*$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Handles after `edit` was applied, given the handles of the rules it inserted; throws when one is missing. */
export function handlesAfter(handles: RuleHandles, edit: RuleEdit, added: Map<string, number>): RuleHandles {
  const rules = new Map(handles.rules);
  for (const name of edit.deleted) rules.delete(name);
  for (const name of edit.inserted) {
    const handle = added.get(name);
    if (handle === undefined) throw new Error(`no handle echoed for rule ${name}`);
    rules.set(name, handle);
  }
  return { rules, defaultRule: handles.defaultRule };
}

function sameRule(a: FirewallRule | undefined, b: FirewallRule): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

/**
 * `touched` without the rules that need not change in the kernel: same content, a known handle,
 * and a place between the rules that stay (e.g. the undo of an edit that never reached the kernel,
 * or an edit that set a rule to what it was). Greedy in the new order: a touched rule stays when
 * it came after the last rule that stays and before the next untouched one.
 */
function unmoved(before: FirewallRule[], after: FirewallRule[], beforeIndex: Map<string, number>, touched: Set<string>, handles: RuleHandles): Set<string> {
  const nextUntouched: number[] = new Array<number>(after.length);
  let next = Infinity;
  for (let i = after.length - 1; i >= 0; i--) {
    nextUntouched[i] = next;
    const name = after[i]!.name;
    if (!touched.has(name)) next = beforeIndex.get(name) ?? next;
  }
  const out = new Set(touched);
  let last = -1;
  after.forEach((rule, i) => {
    const at = beforeIndex.get(rule.name);
    if (!touched.has(rule.name)) {
      if (at !== undefined) last = at;
      return;
    }
    if (at !== undefined && at > last && at < nextUntouched[i]! && handles.rules.has(rule.name) && sameRule(before[at], rule)) {
      out.delete(rule.name);
      last = at;
    }
  });
  return out;
}

/**
 * The batch that turns the live chain (`before`, with `handles`) into `after`'s rules, given the
 * names of the rules the commit touched (created, edited, moved or deleted). Undefined when the
 * edit cannot be done in place and the table must be loaded whole: drop-invalid changed (the rules
 * before the firewall rules change), a rule to delete or keep has no known handle, or the rules
 * left untouched are not in the same order before and after. A few passes over the rule lists
 * (no per-rule rendering or comparison): the kernel's part does not depend on their number.
 */
export function renderRuleEdit(before: SoftVrfConfig, after: SoftVrfConfig, touchedNames: Iterable<string>, handles: RuleHandles): RuleEdit | undefined {
  if (before.firewall.dropInvalid !== after.firewall.dropInvalid) return undefined;
  const was = before.firewall.rules, rules = after.firewall.rules;
  const beforeIndex = new Map<string, number>();
  was.forEach((r, i) => beforeIndex.set(r.name, i));
  const touched = unmoved(was, rules, beforeIndex, new Set(touchedNames), handles);
  const old = (name: string): FirewallRule | undefined => {
    const at = beforeIndex.get(name);
    return at === undefined ? undefined : was[at];
  };

  // Backwards over the new list: untouched rules must be those of before, in the same order (their
  // old positions strictly decrease), each with a handle; each placed rule goes right before the
  // next rule that stays (the default-action rule, always last, at the end).
  const placed: { rule: FirewallRule; position: number }[] = [];
  const now = new Map<string, FirewallRule>();
  let next = handles.defaultRule;
  let lastKept = Infinity;
  let kept = 0;
  for (let i = rules.length - 1; i >= 0; i--) {
    const rule = rules[i]!;
    if (touched.has(rule.name)) {
      now.set(rule.name, rule);
      placed.push({ rule, position: next });
      continue;
    }
    const at = beforeIndex.get(rule.name);
    const handle = handles.rules.get(rule.name);
    if (at === undefined || at >= lastKept || handle === undefined) return undefined;
    lastKept = at;
    next = handle;
    kept++;
  }
  const ops: RuleEditOp[] = [];
  const deleted: string[] = [];
  for (const name of touched) {
    if (!beforeIndex.has(name)) continue;
    const handle = handles.rules.get(name);
    if (handle === undefined) return undefined;
    ops.push({ op: 'delete-rule', handle });
    deleted.push(name);
  }
  if (kept !== was.length - deleted.length) return undefined; // an untouched rule of before is missing after
  // A rule deleted or edited loses its counter; a moved rule keeps it (and its counts).
  for (const name of deleted) {
    const then = now.get(name);
    if (!then || !sameRule(old(name), then)) ops.push({ op: 'delete-counter', name: ruleCounterName(name) });
  }
  placed.reverse(); // running's order: each inserted before the same next rule that stays
  for (const { rule } of placed) if (!sameRule(old(rule.name), rule)) ops.push({ op: 'add-counter', name: ruleCounterName(rule.name) });
  for (const { rule, position } of placed) ops.push({ op: 'insert-rule', position, rule });
  if (before.firewall.defaultAction !== after.firewall.defaultAction) {
    ops.push({ op: 'replace-default', handle: handles.defaultRule, action: after.firewall.defaultAction });
  }
  const script = ops.map(opText).join('\n');
  const inserted = placed.map((p) => p.rule.name);
  return { ops, script: script ? `${script}\n` : '', deleted, inserted, touched: deleted.length + inserted.length };
}

/** A step as one line of an `nft -f` script. */
function opText(op: RuleEditOp): string {
  switch (op.op) {
    case 'delete-rule': return `delete rule ${CHAIN} handle ${op.handle}`;
    case 'delete-counter': return `delete counter inet ${TABLE} ${op.name}`;
    case 'add-counter': return `add counter inet ${TABLE} ${op.name}`;
    case 'insert-rule': return `insert rule ${CHAIN} position ${op.position} ${firewallRule(op.rule)}`;
    case 'replace-default': return `replace rule ${CHAIN} handle ${op.handle} ${defaultActionRule(op.action)}`;
  }
}
