// The configurations the plane bridge ships: every version the plane rebuilds is the one the main
// thread had (same members, same order), and a small change of a large configuration clones only
// what changed.
import { expect } from 'chai';
import { ConfigReceiver, ConfigSender, diff, patch } from '../../agent/plane/config-shipping.js';
import type { ConfigJson } from '../../core/subsystem.js';
import { forget, recordedCopy, replaceAt } from '../../core/array-copies.js';
import { prng } from '../helpers/prng.js';

function vrf(name: string, rules: number, action: (i: number) => string = (i) => (i % 2 ? 'drop' : 'accept')): ConfigJson {
  return {
    name,
    'tandem-firewall:firewall': {
      'default-action': 'accept',
      rule: Array.from({ length: rules }, (_, i) => ({ name: `r${i}`, action: action(i), protocol: 'tcp', 'destination-port': { start: 1 + i } })),
    },
  };
}

function config(vrfs: ConfigJson[], extra: ConfigJson = {}): ConfigJson {
  return { 'tandem-ha:ha': { group: [{ name: 'g1', state: 'master' }] }, 'tandem-vrf:vrf': vrfs, ...extra };
}


describe('plane bridge: configuration shipping', () => {
  it('rebuilds exactly what was sent, through random edits (members, order, list entries, leaf-lists)', () => {
    const rnd = prng(42);
    const sender = new ConfigSender();
    const receiver = new ConfigReceiver();
    let current = config([vrf('main', 50), vrf('blue', 5)]);
    for (let step = 0; step < 300; step++) {
      // A new version: structured clone of the last, then a few random changes (as a reprint would).
      const next = structuredClone(current) as ConfigJson;
      const vrfs = next['tandem-vrf:vrf'] as ConfigJson[];
      const v = vrfs[Math.floor(rnd() * vrfs.length)]!;
      const rules = (v['tandem-firewall:firewall'] as { rule: ConfigJson[] }).rule;
      const r = rnd();
      if (r < 0.2) rules.splice(Math.floor(rnd() * (rules.length + 1)), 0, { name: `n${step}`, action: 'drop' });
      else if (r < 0.4 && rules.length) rules.splice(Math.floor(rnd() * rules.length), 1);
      else if (r < 0.6 && rules.length > 1) rules.reverse();
      else if (r < 0.7) vrfs.push(vrf(`v${step}`, 3));
      else if (r < 0.75 && vrfs.length > 1) vrfs.splice(0, 1);
      else if (r < 0.85) next['tandem-system:system'] = { 'fast-path': { tags: ['a', String(step), 'c'] } };
      else if (r < 0.9) delete next['tandem-ha:ha'];
      else if (rules.length) rules[Math.floor(rnd() * rules.length)]!.action = rnd() < 0.5 ? 'drop' : 'reject';
      // Old and new, as a commit ships them.
      const o = receiver.receive(sender.ship(current));
      const n = receiver.receive(sender.ship(next));
      expect(JSON.stringify(o), `old at step ${step}`).to.equal(JSON.stringify(current));
      expect(JSON.stringify(n), `new at step ${step}`).to.equal(JSON.stringify(next));
      current = next;
    }
    expect(sender.stats.refs).to.be.above(0);
  });

  it('a version already held is named, not sent again', () => {
    const sender = new ConfigSender();
    const receiver = new ConfigReceiver();
    const a = config([vrf('main', 3)]);
    expect(sender.ship(a)).to.have.property('full');
    expect(sender.ship(a)).to.deep.equal({ ref: 1 });
    expect(receiver.receive({ id: 1, full: a })).to.equal(a);
    expect(receiver.receive({ ref: 1 })).to.equal(a);
    expect(() => receiver.receive({ ref: 9 })).to.throw('configuration version 9 is not held');
  });

  it('one rule changed among 10,000 (the VRF reprinted whole): one value cloned, the other rules shared', () => {
    const sender = new ConfigSender();
    const receiver = new ConfigReceiver();
    const before = config([vrf('main', 10_000), vrf('blue', 10)]);
    const old = receiver.receive(sender.ship(before));
    // As derivedJson does it: the unchanged VRF shared, the changed one printed again (new objects).
    const after = config([vrf('main', 10_000, (i) => (i === 4321 ? 'reject' : i % 2 ? 'drop' : 'accept')), (before['tandem-vrf:vrf'] as ConfigJson[])[1]!]);
    const cloned = sender.stats.cloned;
    const shipped = sender.ship(after);
    expect(sender.stats.cloned - cloned, 'values cloned').to.equal(1);
    const rebuilt = receiver.receive(shipped);
    expect(JSON.stringify(rebuilt)).to.equal(JSON.stringify(after));
    const oldRules = ((old['tandem-vrf:vrf'] as ConfigJson[])[0]!['tandem-firewall:firewall'] as { rule: unknown[] }).rule;
    const newRules = ((rebuilt['tandem-vrf:vrf'] as ConfigJson[])[0]!['tandem-firewall:firewall'] as { rule: unknown[] }).rule;
    expect(newRules[4320]).to.equal(oldRules[4320]);
    expect(newRules[4321]).to.not.equal(oldRules[4321]);
    // The message itself is small: runs of kept rules and the one rule.
    expect(JSON.stringify(shipped).length).to.be.below(400);
  });

  it('an empty configuration in between (a commit that concerns nobody) does not make the next one go whole', () => {
    const sender = new ConfigSender();
    const receiver = new ConfigReceiver();
    const a = config([vrf('main', 100)]);
    receiver.receive(sender.ship(a));
    expect(receiver.receive(sender.ship({}))).to.deep.equal({});
    const b = config([vrf('main', 100)], { 'tandem-system:system': { x: 1 } });
    const shipped = sender.ship(b);
    expect(shipped).to.have.property('base', 1);
    expect(JSON.stringify(receiver.receive(shipped))).to.equal(JSON.stringify(b));
  });

  it('diff/patch: values of another type, removed members, entries moved', () => {
    const cases: [unknown, unknown][] = [
      [{ a: 1, b: [1, 2] }, { a: '1', b: { x: 1 } }],
      [{ a: 1, b: 2 }, { a: 1 }],
      [{ a: 1, b: 2 }, { b: 3, a: 1 }],
      [[{ k: 1 }, { k: 2 }], [{ k: 2 }, { k: 1 }, { k: 3 }]],
      [[1, 2, 3], [3, 2]],
      [null, { a: null }],
    ];
    for (const [a, b] of cases) expect(JSON.stringify(patch(a, diff(a, b)))).to.equal(JSON.stringify(b));
    expect(diff({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] })).to.equal(0);
    // Equal in value: the base's member order is kept (libyang prints in schema order).
    expect(diff({ a: 1, b: 2 }, { b: 2, a: 1 })).to.equal(0);
  });
});

describe('plane bridge: configuration shipping of recorded copies (core/array-copies.ts)', () => {
  /** 10,000 rules whose elements count how often they are read. */
  function countedRules(n: number): { rules: unknown[]; reads: () => number } {
    let reads = 0;
    const rules: unknown[] = [];
    for (let i = 0; i < n; i++) {
      const value = { name: `r${i}`, action: 'accept' };
      Object.defineProperty(rules, i, { get: () => { reads++; return value; }, enumerable: true, configurable: true });
    }
    return { rules, reads: () => reads };
  }

  it('a rule replaced in a recorded copy of 10,000: the delta reads that rule only, and rebuilds the same', () => {
    const { rules, reads } = countedRules(10_000);
    const copy = recordedCopy(rules);
    replaceAt(copy, 4321, { name: 'r4321', action: 'drop' });
    replaceAt(copy, 17, { name: 'r17', action: 'accept' }); // replaced by an equal value: no change
    const before = reads();
    const d = diff(rules, copy);
    expect(reads() - before, 'elements of the base read').to.equal(2);
    expect(d).to.deep.equal({ a: [{ r: [0, 4321] }, [4321, { o: [['name'], ['action', { v: 'drop' }]] }], { r: [4322, 5678] }] });
    expect(JSON.stringify(patch(rules, d))).to.equal(JSON.stringify(copy));
    // Without the record, the same delta by comparing every element.
    const plain = copy.slice();
    const walked = reads();
    expect(diff(rules, plain)).to.deep.equal(d);
    expect(reads() - walked).to.be.at.least(10_000);
  });

  it('random replacements in recorded copies and unrecorded edits: every version rebuilt exactly', () => {
    const rnd = prng(7);
    const sender = new ConfigSender();
    const receiver = new ConfigReceiver();
    let rules: ConfigJson[] = Array.from({ length: 300 }, (_, i) => ({ name: `r${i}`, action: 'accept' }));
    receiver.receive(sender.ship({ rule: rules }));
    for (let step = 0; step < 200; step++) {
      const next = recordedCopy(rules);
      const r = rnd();
      const at = () => Math.floor(rnd() * next.length);
      if (r < 0.5) replaceAt(next, at(), { name: `r${step}`, action: rnd() < 0.5 ? 'drop' : 'accept' });
      else if (r < 0.7) for (let k = 0; k < 3; k++) replaceAt(next, at(), { ...next[at()]!, action: 'reject' });
      else if (r < 0.8) { forget(next); next.splice(at(), 1); }
      else if (r < 0.9) { forget(next); next.splice(at(), 0, { name: `n${step}`, action: 'drop' }); }
      else replaceAt(next, at(), next[at()]!); // an element moved to another place (a duplicate key: the delta copes)
      const rebuilt = receiver.receive(sender.ship({ rule: next }));
      expect(JSON.stringify(rebuilt), `step ${step}`).to.equal(JSON.stringify({ rule: next }));
      rules = next;
    }
  });
});
