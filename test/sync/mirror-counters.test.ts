// MirrorCounters (packed by tuple) against the string-keyed reference it replaced, on random
// operations over IPv4 and IPv6 tuples that move between services and end.
import { expect } from 'chai';
import type { FlowTuple } from '../../fastpath/engine.js';
import { MirrorCounters } from '../../sync/mirror-counters.js';
import { ctKey } from '../../sync/conntrack-key.js';
import { seededRandom } from '../../fastpath/traffic/seeded-random.js';

describe('sync MirrorCounters', () => {
  it('counts like a string-keyed Map of conntrack -> service over 30,000 random operations', () => {
    const r = seededRandom(21);
    const services = ['web', 'api', 'dns'];
    const tuples: FlowTuple[] = Array.from({ length: 500 }, (_, i) => (i % 5 === 0
      ? { proto: 'udp', src: `2001:db8::${i}`, dst: '2001:db8:1::53', sport: 5000 + i, dport: 53 }
      : { proto: i % 2 ? 'tcp' : 'udp', src: `10.0.${i >> 8}.${i & 255}`, dst: '203.0.113.1', sport: 1024 + (i % 7), dport: 443 }));
    const m = new MirrorCounters();
    const ref = new Map<string, string>();
    const refCount = (s: string): number => [...ref.values()].filter((v) => v === s).length;
    for (let i = 0; i < 30_000; i++) {
      const t = tuples[Math.floor(r() * tuples.length)] as FlowTuple;
      if (r() < 0.6) {
        const s = services[Math.floor(r() * services.length)] as string;
        m.set(t, s);
        ref.set(ctKey(t), s);
      } else {
        m.delete(t);
        ref.delete(ctKey(t));
      }
      if (i % 997 === 0) for (const s of services) expect(m.count(s)).to.equal(refCount(s));
    }
    for (const s of services) expect(m.count(s)).to.equal(refCount(s));
    expect(new Map(m.entries())).to.deep.equal(new Map(services.map((s) => [s, refCount(s)] as [string, number]).filter(([, n]) => n > 0)));
    m.clear();
    for (const s of services) expect(m.count(s)).to.equal(0);
    m.delete(tuples[1] as FlowTuple); // nothing counted: no-op
    m.set(tuples[1] as FlowTuple, 'web');
    expect(m.count('web')).to.equal(1);
  });
});
