// The packed per-conntrack tables (fastpath/u32-map.ts, fastpath/ipv4-tuple-table.ts) against a
// plain Map on random operations that grow and shrink them across several resizes, with keys that
// collide (sequential kernel ids, few sources), key 0, large values, and the live counts
// (conntrack-live-counts.ts), keyed by tuple, against counts recomputed from scratch.
import { expect } from 'chai';
import { U32Map } from '../../fastpath/u32-map.js';
import { Ipv4TupleTable, IPV4_TUPLE_VALUE_LIMIT, parseIPv4 } from '../../fastpath/ipv4-tuple-table.js';
import { ConntrackLiveCounts, type CountedConntrack } from '../../fastpath/linux/conntrack-live-counts.js';
import type { FlowTuple, TcpState } from '../../fastpath/engine.js';
import { seededRandom } from '../../fastpath/traffic/seeded-random.js';

describe('packed per-conntrack tables', () => {
  it('U32Map behaves like a Map over 200,000 operations that grow and shrink it', () => {
    const r = seededRandom(11);
    const m = new U32Map();
    const ref = new Map<number, number>();
    // Phase 1 mostly inserts (several doublings), phase 2 mostly deletes (shrinks back).
    for (let i = 0; i < 200_000; i++) {
      const growing = i < 100_000;
      // Sequential ids near 0 and near 2^32 (both ends of the u32 range), and key 0 itself.
      const key = r() < 0.5 ? Math.floor(r() * 20_000) : 0xffffffff - Math.floor(r() * 20_000);
      const op = r();
      if (op < (growing ? 0.6 : 0.15)) {
        const v = r() < 0.5 ? Math.floor(r() * 2 ** 31) : Date.now() + r();
        m.set(key, v);
        ref.set(key, v);
      } else if (op < (growing ? 0.75 : 0.9)) {
        expect(m.delete(key)).to.equal(ref.delete(key));
      } else {
        expect(m.get(key)).to.equal(ref.get(key));
        expect(m.has(key)).to.equal(ref.has(key));
      }
      expect(m.size).to.equal(ref.size);
    }
    for (const [k, v] of ref) expect(m.get(k)).to.equal(v);
    let walked = 0;
    m.forEach((v, k) => {
      walked++;
      expect(ref.get(k)).to.equal(v);
    });
    expect(walked).to.equal(ref.size);
    m.clear();
    expect(m.size).to.equal(0);
    expect(m.get(0)).to.equal(undefined);
  });

  it('Ipv4TupleTable behaves like a Map over 200,000 operations, values up to 2^29 - 1', () => {
    const r = seededRandom(12);
    const t = new Ipv4TupleTable();
    const ref = new Map<string, number>();
    for (let i = 0; i < 200_000; i++) {
      const growing = i < 100_000;
      const proto = Math.floor(r() * 3);
      const src = (0x0a000000 + Math.floor(r() * 8)) >>> 0; // few sources: long probe runs
      const dst = r() < 0.5 ? 0xc0000201 : 0xffffffff;
      const sport = Math.floor(r() * 3000);
      const dport = r() < 0.5 ? 443 : 65535;
      const k = `${proto} ${src} ${dst} ${sport} ${dport}`;
      const op = r();
      if (op < (growing ? 0.6 : 0.15)) {
        const v = r() < 0.5 ? Math.floor(r() * IPV4_TUPLE_VALUE_LIMIT) : IPV4_TUPLE_VALUE_LIMIT - 1;
        t.set(proto, src, dst, sport, dport, v);
        ref.set(k, v);
      } else if (op < (growing ? 0.75 : 0.9)) {
        expect(t.delete(proto, src, dst, sport, dport)).to.equal(ref.delete(k));
      } else {
        expect(t.get(proto, src, dst, sport, dport)).to.equal(ref.get(k));
      }
      expect(t.size).to.equal(ref.size);
    }
    for (const [k, v] of ref) {
      const [proto, src, dst, sport, dport] = k.split(' ').map(Number) as [number, number, number, number, number];
      expect(t.get(proto, src, dst, sport, dport)).to.equal(v);
    }
    expect(() => t.set(0, 1, 2, 3, 4, IPV4_TUPLE_VALUE_LIMIT)).to.throw(RangeError);
    expect(() => t.set(3, 1, 2, 3, 4, 0)).to.throw(RangeError);
  });

  it('Ipv4TupleTable costs 16 bytes a slot and stays at most 80 % full', () => {
    const t = new Ipv4TupleTable();
    for (let i = 0; i < 100_000; i++) t.set(0, 0x0a000000 + i, 0xc0000201, 1024 + (i % 50000), 443, 0);
    expect(t.bytes).to.equal(131072 * 16); // 10^5 fit in 2^17 slots (76 %)
    const m = new U32Map();
    for (let i = 0; i < 100_000; i++) m.set(i, i);
    expect(m.bytes).to.equal(131072 * 13);
  });

  it('parseIPv4 reads dotted quads and refuses the rest', () => {
    expect(parseIPv4('10.1.2.3')).to.equal(0x0a010203);
    expect(parseIPv4('255.255.255.255')).to.equal(0xffffffff);
    for (const bad of ['2001:db8::1', '10.1.2', '10.1.2.256', '10..2.3', '']) expect(parseIPv4(bad)).to.equal(-1);
  });

  it('live counts keyed by tuple (IPv4 and IPv6) equal counts recomputed from scratch', () => {
    const r = seededRandom(13);
    const services = [
      { name: 'web', vip: '203.0.113.1', port: 443, protocol: 'tcp', mirror: true },
      { name: 'dns6', vip: '2001:db8::53', port: 53, protocol: 'udp', mirror: true },
    ];
    const states: TcpState[] = ['syn-sent', 'established', 'fin-wait', 'time-wait'];
    const tuples: FlowTuple[] = Array.from({ length: 300 }, (_, i) => (i % 3 === 2
      ? { proto: 'udp', src: `2001:db8:1::${i}`, dst: '2001:db8::53', sport: 4000 + i, dport: 53 }
      : { proto: 'tcp', src: `10.0.${i >> 8}.${i & 255}`, dst: i % 3 === 0 ? '203.0.113.1' : '198.51.100.1', sport: 1024 + i, dport: 443 }));
    {
      const live = new ConntrackLiveCounts(services);
      const held = new Map<number, CountedConntrack>();
      for (let step = 0; step < 20_000; step++) {
        const i = Math.floor(r() * tuples.length);
        const key = tuples[i] as FlowTuple;
        if (r() < 0.3) {
          expect(live.delete(key)).to.equal(held.delete(i));
        } else {
          const ct: CountedConntrack = { orig: tuples[i] as FlowTuple, state: states[Math.floor(r() * states.length)] as TcpState, alg: r() < 0.1, synced: r() < 0.5 };
          live.set(key, ct);
          held.set(i, ct);
        }
      }
      const fresh = new ConntrackLiveCounts(services);
      for (const ct of held.values()) fresh.set(ct.orig, ct);
      expect(live.size).to.equal(held.size);
      expect(live.byState).to.deep.equal(fresh.byState);
      for (const role of ['master', 'backup'] as const) expect([...live.virtualServiceStats(role)]).to.deep.equal([...fresh.virtualServiceStats(role)]);
      expect(live.virtualServiceStats('backup').get('web')?.mirroredConnectionsOnStandby).to.be.greaterThan(0);
    }
  });

  it('live counts: setIPv4 (numbers) and setState count as set (tuple objects), then delete takes it back', () => {
    const r = seededRandom(14);
    const services = [{ name: 'web', vip: '203.0.113.1', port: 443, protocol: 'tcp', mirror: true }];
    const states: TcpState[] = ['syn-sent', 'established', 'fin-wait', 'close'];
    const protos = ['tcp', 'udp', 'icmp'] as const;
    for (const vs of [services, []]) {
      const byObject = new ConntrackLiveCounts(vs);
      const byNumber = new ConntrackLiveCounts(vs);
      const byState = new ConntrackLiveCounts(vs);
      const tuples: FlowTuple[] = [];
      for (let step = 0; step < 5_000; step++) {
        const p = Math.floor(r() * 3);
        const i = Math.floor(r() * 400);
        const t: FlowTuple = { proto: protos[p] as FlowTuple['proto'], src: `10.1.${i >> 8}.${i & 255}`, dst: i % 2 === 0 ? '203.0.113.1' : '198.51.100.7', sport: 1024 + i, dport: 443 };
        const state = states[Math.floor(r() * states.length)] as TcpState;
        const synced = r() < 0.7;
        byObject.set(t, { orig: t, state, alg: false, synced });
        byNumber.setIPv4(Uint32Array.of(p, parseIPv4(t.src), parseIPv4(t.dst), t.sport, t.dport), state, false, synced);
        const alg = r() < 0.1;
        byObject.set({ ...t, sport: t.sport + 20_000 }, { orig: { ...t, sport: t.sport + 20_000 }, state, alg, synced });
        byState.setState({ ...t, sport: t.sport + 20_000 }, state, alg, synced);
        tuples.push(t);
      }
      // byObject holds both halves (sport and sport + 20,000); byNumber and byState one each.
      expect(byNumber.size + byState.size).to.equal(byObject.size);
      expect(byNumber.size).to.be.greaterThan(100);
      expect(byNumber.byState.map((n, i) => n + (byState.byState[i] as number))).to.deep.equal(byObject.byState);
      for (const role of ['master', 'backup'] as const) {
        const sum = [...byNumber.virtualServiceStats(role)].map(([name, a]) => {
          const b = byState.virtualServiceStats(role).get(name);
          return [name, { connections: a.connections + (b?.connections ?? 0), mirrorConnListOnActive: a.mirrorConnListOnActive + (b?.mirrorConnListOnActive ?? 0), mirroredConnectionsOnStandby: a.mirroredConnectionsOnStandby + (b?.mirroredConnectionsOnStandby ?? 0) }];
        });
        expect(sum).to.deep.equal([...byObject.virtualServiceStats(role)]);
      }
      if (vs.length > 0) expect(byNumber.virtualServiceStats('backup').get('web')?.mirroredConnectionsOnStandby).to.be.greaterThan(0);
      // Entries set from numbers are found by their tuple: deletes take back what setIPv4 added.
      for (const t of tuples) byNumber.delete(t);
      expect(byNumber.size).to.equal(0);
      expect(byNumber.byState.every((n) => n === 0)).to.equal(true);
    }
  });
});
