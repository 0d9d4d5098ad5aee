// TupleMap against a plain Map on random operations, with tuples crafted to collide on the
// source address and port, IPv6 ones, and value updates.
import { expect } from 'chai';
import type { FlowTuple } from '../../fastpath/engine.js';
import { TupleMap } from '../../sync/tuple-map.js';
import { seededRandom } from '../../fastpath/traffic/seeded-random.js';

describe('sync TupleMap', () => {
  it('behaves like a string-keyed Map over 50,000 random operations', () => {
    const r = seededRandom(3);
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)] as T;
    const tuples: FlowTuple[] = [];
    for (let i = 0; i < 400; i++) {
      const v6 = r() < 0.1;
      tuples.push({
        proto: pick(['tcp', 'udp', 'icmp'] as const),
        src: v6 ? `2001:db8::${Math.floor(r() * 4)}` : `10.0.0.${Math.floor(r() * 4)}`, // few sources: collisions
        dst: v6 ? `2001:db8:1::${Math.floor(r() * 4)}` : `192.0.2.${Math.floor(r() * 255)}`,
        sport: 1000 + Math.floor(r() * 3),
        dport: Math.floor(r() * 65536),
      });
    }
    const key = (t: FlowTuple): string => `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
    const m = new TupleMap();
    const ref = new Map<string, number>();
    for (let i = 0; i < 50_000; i++) {
      const t = pick(tuples);
      const op = r();
      if (op < 0.45) {
        const v = Math.floor(r() * 8);
        expect(m.set(t, v), 'set gives the value it replaced').to.equal(ref.get(key(t)));
        ref.set(key(t), v);
      } else if (op < 0.6) {
        expect(m.delete(t)).to.equal(ref.delete(key(t)));
      } else if (op < 0.75) {
        expect(m.take(t), 'take gives the value it removed').to.equal(ref.get(key(t)));
        ref.delete(key(t));
      } else {
        expect(m.get(t)).to.equal(ref.get(key(t)));
      }
      expect(m.size).to.equal(ref.size);
    }
    for (const t of tuples) expect(m.get(t)).to.equal(ref.get(key(t)));
  });

  it('grows, shrinks and keeps every tuple through 100,000 distinct tuples inserted and removed', () => {
    const r = seededRandom(11);
    const key = (t: FlowTuple): string => `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
    const tuples: FlowTuple[] = [];
    for (let i = 0; i < 100_000; i++) {
      tuples.push({
        proto: (['tcp', 'udp', 'icmp'] as const)[i % 3] as FlowTuple['proto'],
        src: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
        dst: `192.0.2.${i % 7}`, // many tuples share a destination
        sport: 1024 + (i % 50_000),
        dport: i % 3 === 2 ? 0 : 80,
      });
    }
    const m = new TupleMap();
    const ref = new Map<string, number>();
    for (const t of tuples) {
      const v = Math.floor(r() * 8);
      m.set(t, v);
      ref.set(key(t), v);
    }
    expect(m.size).to.equal(ref.size);
    // Remove a random 90 % (the table shrinks), checking the rest after each tenth.
    const order = tuples.map((t) => ({ t, k: r() })).sort((a, b) => a.k - b.k).map((x) => x.t);
    for (let i = 0; i < 90_000; i++) {
      const t = order[i] as FlowTuple;
      expect(m.delete(t)).to.equal(true);
      ref.delete(key(t));
      expect(m.delete(t)).to.equal(false);
      if (i % 10_000 === 9_999) for (let j = i + 1; j < order.length; j += 97) expect(m.get(order[j] as FlowTuple)).to.equal(ref.get(key(order[j] as FlowTuple)));
    }
    expect(m.size).to.equal(10_000);
    for (const t of tuples) expect(m.get(t)).to.equal(ref.get(key(t)));
    m.clear();
    expect(m.size).to.equal(0);
    expect(m.get(tuples[0] as FlowTuple)).to.equal(undefined);
  });

  it('refuses values it cannot pack', () => {
    const t = { proto: 'tcp' as const, src: '1.2.3.4', dst: '5.6.7.8', sport: 1, dport: 2 };
    const m = new TupleMap();
    m.set(t, 2 ** 29 - 1); // the largest value (the sender's state and binding tag, sync/synced-binding.ts)
    expect(m.get(t)).to.equal(2 ** 29 - 1);
    for (const bad of [2 ** 29, -1, 1.5]) expect(() => m.set(t, bad)).to.throw(RangeError);
    expect(() => m.setIPv4(0, 1, 2, 3, 4, 2 ** 29)).to.throw(RangeError);
  });
});
