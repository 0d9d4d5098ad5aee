// The sender's per-conntrack value (sync/synced-binding.ts): state and binding tag in one number
// below 2^29, and one tag for a reply tuple whether it comes as text (events, entry objects) or as
// numbers (the packed dump), so that a resync's mark and a later event agree.
import { expect } from 'chai';
import { parseIPv4 } from '../../fastpath/ipv4-tuple-table.js';
import { bindingTag, bindingTagIPv4, syncedState, syncedTag, syncedValue } from '../../sync/synced-binding.js';
import { TupleMap } from '../../sync/tuple-map.js';
import { prng } from '../helpers/prng.js';

describe('synced binding tags', () => {
  it('packs state and tag below 2^29 and reads both back, through a TupleMap too', () => {
    const rand = prng(7);
    const map = new TupleMap();
    for (let i = 0; i < 2000; i++) {
      const state = Math.floor(rand() * 8);
      const tag = Math.floor(rand() * 2 ** 26);
      const v = syncedValue(state, tag);
      expect(v).to.be.below(2 ** 29);
      const t = { proto: 'tcp' as const, src: `10.0.${i >> 8}.${i & 255}`, dst: '192.0.2.1', sport: 1000 + i, dport: 80 };
      map.set(t, v);
      const back = map.get(t) as number;
      expect([syncedState(back), syncedTag(back)]).to.deep.equal([state, tag]);
    }
  });

  it('gives an IPv4 reply tuple the same tag as text and as numbers, and tells bindings apart', () => {
    const reply = { proto: 'tcp' as const, src: '198.51.100.10', dst: '192.0.2.255', sport: 443, dport: 40007 };
    const tag = bindingTag(reply);
    expect(bindingTagIPv4(parseIPv4(reply.src), parseIPv4(reply.dst), reply.sport, reply.dport)).to.equal(tag);
    expect(tag).to.be.within(0, 2 ** 26 - 1);
    const tags = new Set<number>();
    for (let port = 1024; port < 1024 + 5000; port++) tags.add(bindingTag({ ...reply, dport: port }));
    expect(tags.size, 'one tag per NAT port of 5,000').to.equal(5000);
    expect(bindingTag({ ...reply, dst: '192.0.2.254' })).to.not.equal(tag);
    const v6 = { proto: 'tcp' as const, src: '2001:db8::1', dst: '2001:db8::2', sport: 443, dport: 40007 };
    expect(bindingTag(v6)).to.equal(bindingTag({ ...v6 })).and.to.not.equal(bindingTag({ ...v6, dport: 40008 }));
  });
});
