// The conntrack codec on its own: every field survives a round trip, IPv6 included, and what
// cannot be encoded is a build error, not a broken frame.
import { expect } from 'chai';
import type { ConntrackEntry, FlowTuple } from '../../fastpath/engine.js';
import { decodeDeletes, decodeRecords, deleteSize, encodeDeletes, encodeRecords, recordSize, type SyncRecord } from '../../sync/conntrack-codec.js';
import { readIPv6, writeIPv6 } from '../../sync/ip-bytes.js';
import { SyncProtocolError } from '../../sync/protocol.js';

function entry(orig: FlowTuple, reply: FlowTuple, extra: Partial<ConntrackEntry> = {}): ConntrackEntry {
  return { vrf: 'main', orig, reply, state: 'established', timeout: 300, alg: false, establishedAt: 0, lastActivity: 0, ...extra };
}

describe('sync conntrack codec', () => {
  it('round-trips IPv4 and IPv6 records with NAT, state, timeout, activity age and virtual service', () => {
    const now = 50_000;
    const recs: SyncRecord[] = [
      { entry: entry({ proto: 'tcp', src: '10.0.0.1', dst: '192.0.2.1', sport: 40000, dport: 80 }, { proto: 'tcp', src: '198.51.100.7', dst: '203.0.113.9', sport: 8080, dport: 1024 }, { lastActivity: now - 1234, virtualService: 'web' }), withActivity: true, timeout: 432000 },
      { entry: entry({ proto: 'udp', src: '2001:db8::1', dst: '2001:db8:0:1::53', sport: 5353, dport: 53 }, { proto: 'udp', src: '2001:db8:0:1::53', dst: '2001:db8::1', sport: 53, dport: 5353 }, { state: 'fin-wait' }), withActivity: false, timeout: 10 },
      { entry: entry({ proto: 'icmp', src: '::ffff:10.1.2.3', dst: 'fe80::1', sport: 7, dport: 0 }, { proto: 'icmp', src: 'fe80::1', dst: '::ffff:10.1.2.3', sport: 7, dport: 0 }), withActivity: false, timeout: 30 },
    ];
    const buf = encodeRecords(recs, recs.map(recordSize), now);
    expect(recordSize(recs[0] as SyncRecord)).to.equal(34 + 1 + 3);
    const out = decodeRecords(buf);
    expect(out).to.have.length(3);
    expect(out[0]).to.deep.equal({
      orig: recs[0]?.entry.orig, reply: recs[0]?.entry.reply, state: 'established', timeout: 432000, activityAgeMs: 1234, activitySynced: true, virtualService: 'web',
    });
    expect(out[1]?.orig).to.deep.equal({ proto: 'udp', src: '2001:db8::1', dst: '2001:db8:0:1::53', sport: 5353, dport: 53 });
    expect(out[1]?.state).to.equal('fin-wait');
    expect(out[1]?.timeout).to.equal(10);
    expect(out[2]?.orig.src).to.equal('::ffff:a01:203'); // canonical RFC 5952 text of the same address
  });

  it('round-trips deletes', () => {
    const ts: FlowTuple[] = [{ proto: 'tcp', src: '10.0.0.1', dst: '192.0.2.1', sport: 1, dport: 2 }, { proto: 'udp', src: '2001:db8::1', dst: '2001:db8::2', sport: 3, dport: 4 }];
    const buf = encodeDeletes(ts, ts.map(deleteSize));
    expect(decodeDeletes(buf)).to.deep.equal(ts);
    expect(buf.length).to.equal(2 + 13 + 37);
  });

  it('formats IPv6 canonically', () => {
    const b = Buffer.alloc(16);
    for (const [text, canon] of [['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'], ['::', '::'], ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], ['fe80::', 'fe80::'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8']]) {
      writeIPv6(text as string, b, 0);
      expect(readIPv6(b, 0)).to.equal(canon);
    }
  });

  it('makes a build error of what cannot be encoded', () => {
    const mixed: SyncRecord = { entry: entry({ proto: 'tcp', src: '10.0.0.1', dst: '2001:db8::1', sport: 1, dport: 2 }, { proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }), withActivity: false, timeout: 1 };
    expect(() => recordSize(mixed)).to.throw(SyncProtocolError, /mixed address families/);
    const badIp: SyncRecord = { entry: entry({ proto: 'tcp', src: '10.0.0.300', dst: '10.0.0.1', sport: 1, dport: 2 }, { proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }), withActivity: false, timeout: 1 };
    expect(() => recordSize(badIp)).to.throw(SyncProtocolError, /not an IP address/);
    const longVs: SyncRecord = { entry: entry({ proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, { proto: 'tcp', src: '10.0.0.2', dst: '10.0.0.1', sport: 2, dport: 1 }, { virtualService: 'x'.repeat(300) }), withActivity: false, timeout: 1 };
    expect(() => recordSize(longVs)).to.throw(SyncProtocolError, /longer than 255/);
  });
});
