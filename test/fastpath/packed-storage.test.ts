// The hand-written storage under the soft engine, checked against plain Maps with random
// operations: conntrack table indexes, address interning, and the packed record codec.
import { expect } from 'chai';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { AddressTable, ipv4Text, ipv4Value } from '../../fastpath/soft/address-table.js';
import { ConntrackTable } from '../../fastpath/soft/conntrack-table.js';
import { packEntries, unpackEntries } from '../../fastpath/soft/entry-codec.js';
import { packPackets, PacketReader } from '../../fastpath/soft/packet-codec.js';

function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('fastpath: packed storage', () => {
  it('conntrack table finds exactly what a Map model holds through 20,000 random inserts and deletes', () => {
    const r = rng(42);
    const t = new ConntrackTable(16);
    const model = new Map<string, number>(); // orig key -> slot
    const key = (p: number[]) => p.join(',');
    for (let op = 0; op < 20_000; op++) {
      const f = [6, Math.floor(r() * 50), Math.floor(r() * 50), Math.floor(r() * 20), 80];
      const k = key(f);
      const slot = t.findOrig(f[0] as number, f[1] as number, f[2] as number, f[3] as number, f[4] as number);
      expect(slot, `lookup ${k}`).to.equal(model.get(k) ?? -1);
      if (slot >= 0 && r() < 0.6) {
        t.delete(slot);
        model.delete(k);
      } else if (slot < 0) {
        // Reply tuple mirrors the original with a translated port.
        const s = t.insert(6, f[1] as number, f[2] as number, f[3] as number, 80, f[2] as number, f[1] as number, 80, 5000 + (f[3] as number));
        model.set(k, s);
        expect(t.findReply(6, f[2] as number, f[1] as number, 80, 5000 + (f[3] as number))).to.equal(s);
      }
      expect(t.count).to.equal(model.size);
    }
  });

  it('address table interns IPv4 by value and other addresses by text, releasing on the last reference', () => {
    const a = new AddressTable();
    const r = rng(7);
    const held: number[] = [];
    const model = new Map<string, number>();
    for (let op = 0; op < 20_000; op++) {
      if (held.length && r() < 0.45) {
        const id = held.splice(Math.floor(r() * held.length), 1)[0] as number;
        const text = a.text(id);
        a.release(id);
        const n = (model.get(text) as number) - 1;
        if (n === 0) model.delete(text);
        else model.set(text, n);
      } else {
        const text = r() < 0.8 ? `10.${Math.floor(r() * 4)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}` : `2001:db8::${Math.floor(r() * 500).toString(16)}`;
        const id = a.acquire(text);
        expect(a.text(id)).to.equal(text);
        held.push(id);
        model.set(text, (model.get(text) ?? 0) + 1);
      }
      if (op % 1000 === 0) {
        expect(a.size).to.equal(model.size);
        for (const text of model.keys()) expect(a.find(text)).to.be.at.least(0);
      }
    }
    expect(ipv4Value('255.255.255.255')).to.equal(0xffffffff);
    expect(ipv4Text(0xc0000201)).to.equal('192.0.2.1');
    for (const bad of ['1.2.3', '1.2.3.256', '1..2.3', 'a.b.c.d', '1.2.3.4.5', '::1']) expect(ipv4Value(bad), bad).to.equal(-1);
  });

  it('packs and unpacks conntracks and packets, IPv4 and IPv6, with every flag', () => {
    const entries: ConntrackEntry[] = [
      { vrf: 'v', orig: { proto: 'tcp', src: '10.0.0.1', dst: '203.0.113.9', sport: 40000, dport: 443 }, reply: { proto: 'tcp', src: '203.0.113.9', dst: '198.51.100.2', sport: 443, dport: 1100 }, state: 'fin-wait', timeout: 120, alg: true, establishedAt: 1.5e12, lastActivity: 1.5e12 + 7, virtualService: 'web', synced: true, activitySynced: true, noSync: true },
      { vrf: 'v', orig: { proto: 'udp', src: '2001:db8::1', dst: '2001:db8::53', sport: 5353, dport: 53 }, reply: { proto: 'udp', src: '2001:db8::53', dst: '2001:db8::1', sport: 53, dport: 5353 }, state: 'established', timeout: 30, alg: false, establishedAt: 0, lastActivity: 99 },
    ];
    expect(unpackEntries(packEntries(entries), 'v')).to.deep.equal(entries);
    const packets = [{ flow: { proto: 'icmp' as const, src: '2001:db8::1', dst: '10.0.0.2', sport: 7, dport: 0 }, reply: true, alg: true, flags: 0 }, { flow: entries[0]?.orig as ConntrackEntry['orig'], flags: 0x12 }];
    const r = new PacketReader(packPackets(packets));
    expect([r.proto(0), r.src(0), r.dst(0), r.sport(0), r.reply(0), r.alg(0)]).to.deep.equal([1, '2001:db8::1', ipv4Value('10.0.0.2'), 7, true, true]);
    expect([r.proto(1), r.flags(1), r.reply(1), r.dport(1)]).to.deep.equal([6, 0x12, false, 443]);
  });

  it('refuses packets and conntracks that do not hold IP addresses, ports or a known protocol', () => {
    const flow = { proto: 'tcp' as const, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 };
    expect(() => packPackets([{ flow: { ...flow, src: 'not-an-ip' } }])).to.throw(/packet 0 source: not an IP address: "not-an-ip"/);
    expect(() => packPackets([{ flow }, { flow: { ...flow, dport: 70000 } }])).to.throw(/packet 1: ports must be 0..65535/);
    expect(() => packPackets([{ flow: { ...flow, proto: 'sctp' as never } }])).to.throw(/unknown protocol "sctp"/);
    const e: ConntrackEntry = { vrf: 'v', orig: flow, reply: { ...flow, src: flow.dst, dst: flow.src }, state: 'established', timeout: 5, alg: false, establishedAt: 0, lastActivity: 0 };
    expect(() => packEntries([{ ...e, reply: { ...e.reply, dst: '1.2.3' } }])).to.throw(/not an IP address: "1.2.3"/);
    expect(() => packEntries([{ ...e, state: 'weird' as never }])).to.throw(/bad conntrack/);
  });
});
