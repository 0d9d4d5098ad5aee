// The in-place rule edit's steps (nft-rule-edit.ts), without a kernel: which rules a delta deletes
// and inserts where, which counters go and come, and when the table must be loaded whole. The
// same steps on a real kernel: nft-rule-edit.test.ts and nft-rule-batch.test.ts (root).
import { expect } from 'chai';
import type { FirewallRule, SoftVrfConfig } from '../../fastpath/config/vrf-config.js';
import { parseVrfConfig } from '../../fastpath/config/vrf-config.js';
import { applyRuleDelta } from '../../fastpath/config/rule-delta.js';
import { handlesAfter, insertedHandles, parseRuleHandles, renderRuleEdit, type RuleHandles } from '../../fastpath/linux/nft-rule-edit.js';

function rule(name: string, port: number, action = 'accept'): Record<string, unknown> {
  return { name, action, protocol: 'tcp', 'destination-port': { start: port } };
}

function config(rules: Record<string, unknown>[], leaves: Record<string, unknown> = {}): SoftVrfConfig {
  return parseVrfConfig({ name: 'main', 'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, ...leaves, rule: rules } }, new Map(), 1 << 20);
}

const BASE = ['a', 'b', 'c', 'd'].map((n, i) => rule(n, 100 + i));
/** Handles a=10, b=20, c=30, d=40; default-action rule 99. */
const HANDLES: RuleHandles = { rules: new Map([['a', 10], ['b', 20], ['c', 30], ['d', 40]]), defaultRule: 99 };

/** The configuration after a delta (as the engine computes it) and the edit's steps. */
function edit(removed: string[], placed: { after: string | null; rule: Record<string, unknown> }[], leaves: Record<string, unknown> = {}) {
  const before = config(BASE);
  const parsed = config(placed.map((p) => p.rule)).firewall.rules;
  const rules = applyRuleDelta<FirewallRule>(before.firewall.rules, (r) => r.name, { removed, placed: placed.map((p, i) => ({ after: p.after, rule: parsed[i]! })) });
  const after: SoftVrfConfig = { ...before, firewall: { ...before.firewall, ...config([], leaves).firewall, rules } };
  return renderRuleEdit(before, after, [...removed, ...placed.map((p) => String(p.rule.name))], HANDLES);
}

describe('linux: the steps of an in-place firewall rule edit', () => {
  it('an edited rule: deleted by handle, its counter renewed, inserted before the next rule', () => {
    const e = edit(['b'], [{ after: 'a', rule: rule('b', 101, 'drop') }])!;
    expect(e.ops.map((o) => o.op)).to.deep.equal(['delete-rule', 'delete-counter', 'add-counter', 'insert-rule']);
    expect(e.ops[0]).to.deep.equal({ op: 'delete-rule', handle: 20 });
    expect(e.ops[3]).to.include({ op: 'insert-rule', position: 30 });
    expect(e.script).to.include('delete rule inet tandem forward handle 20\n')
      .and.include('insert rule inet tandem forward position 30 meta l4proto tcp tcp dport 101 counter name "fw_rule_b" drop comment "rule b"');
  });

  it('a moved rule keeps its counter; the last rule goes before the default-action rule', () => {
    const e = edit(['a'], [{ after: 'd', rule: rule('a', 100) }])!;
    expect(e.ops).to.have.length(2);
    expect(e.ops[0]).to.deep.equal({ op: 'delete-rule', handle: 10 });
    expect(e.ops[1]).to.include({ op: 'insert-rule', position: 99 });
  });

  it('a deleted rule: its rule and its counter go, nothing else', () => {
    const e = edit(['c'], [])!;
    expect(e.ops).to.deep.equal([{ op: 'delete-rule', handle: 30 }, { op: 'delete-counter', name: 'fw_rule_c' }]);
  });

  it('new rules in a row are inserted in order before the same rule', () => {
    const e = edit(['x', 'y'], [{ after: 'a', rule: rule('x', 1) }, { after: 'x', rule: rule('y', 2) }])!;
    const inserts = e.ops.filter((o) => o.op === 'insert-rule');
    expect(inserts.map((o) => (o.op === 'insert-rule' ? [o.rule.name, o.position] : []))).to.deep.equal([['x', 20], ['y', 20]]);
    expect(e.inserted).to.deep.equal(['x', 'y']);
    expect(e.ops.filter((o) => o.op === 'add-counter')).to.have.length(2);
  });

  it('a rule named but unchanged in place (the undo of an edit that never applied) needs no step', () => {
    const e = edit(['b'], [{ after: 'a', rule: rule('b', 101) }])!;
    expect(e.ops).to.deep.equal([]);
    expect(e.script).to.equal('');
  });

  it('a default-action change replaces its rule in place', () => {
    const e = edit([], [], { 'default-action': 'drop' })!;
    expect(e.ops).to.deep.equal([{ op: 'replace-default', handle: 99, action: 'drop' }]);
  });

  it('loads the table whole when drop-invalid changes or a handle is unknown', () => {
    expect(edit([], [], { 'drop-invalid': false })).to.equal(undefined);
    const before = config(BASE);
    const unknown: RuleHandles = { rules: new Map([['a', 10], ['b', 20], ['c', 30]]), defaultRule: 99 };
    expect(renderRuleEdit(before, before, ['a'], unknown)).to.equal(undefined);
    // Untouched rules out of order (a delta that does not say the truth): whole.
    const swapped: SoftVrfConfig = { ...before, firewall: { ...before.firewall, rules: [...before.firewall.rules].reverse() } };
    expect(renderRuleEdit(before, swapped, [], HANDLES)).to.equal(undefined);
  });

  it('reads handles from nft listings and echoes', () => {
    const listing = JSON.stringify({ nftables: [
      { rule: { handle: 5, expr: [{ accept: null }] } },
      { rule: { handle: 7, comment: 'rule a', expr: [{ counter: 'fw_rule_a' }, { accept: null }] } },
      { rule: { handle: 9, expr: [{ counter: 'fw_default_accept' }, { accept: null }] } },
    ] });
    expect(parseRuleHandles(listing)).to.deep.equal({ rules: new Map([['a', 7]]), defaultRule: 9 });
    const echo = 'add counter inet tandem fw_rule_q { # handle 9 packets 0 bytes 0 }\n'
      + 'insert rule inet tandem forward handle 6 tcp dport 9 counter name "fw_rule_q" drop comment "rule q" # handle 10\n';
    expect(insertedHandles(echo)).to.deep.equal(new Map([['q', 10]]));
    const e = edit(['b'], [{ after: 'a', rule: rule('b', 101, 'drop') }])!;
    expect(handlesAfter(HANDLES, e, new Map([['b', 21]])).rules.get('b')).to.equal(21);
    expect(() => handlesAfter(HANDLES, e, new Map())).to.throw(/no handle echoed for rule b/);
  });
});
