// The conntrack codec on its own: every field survives a round trip, IPv6 included, and what
// cannot be encoded is a build error, not a broken frame.
import { expect } from 'chai';
import type { ConntrackEntry, FlowTuple } from '../../fastpath/engine.js';
import { decodeDeletes, decodeRecords, deleteSize, encodeDeletes, encodeRecordBatch, encodeRecords, recordSize, type SyncRecord } from '../../sync/conntrack-codec.js';
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

  it('encodeRecordBatch gives the bytes of recordSize + encodeRecords, and leaves out (with its error) what recordSize refuses', () => {
    const now = 90_000;
    const v4 = (a: string, b: string, c: string, d: string, extra: Partial<ConntrackEntry> = {}, timeout = 300): SyncRecord => ({
      entry: entry({ proto: 'tcp', src: a, dst: b, sport: 40000, dport: 80 }, { proto: 'tcp', src: c, dst: d, sport: 8080, dport: 1024 }, { lastActivity: now - 77, ...extra }),
      withActivity: false, timeout,
    });
    const good: SyncRecord[] = [
      v4('10.0.0.1', '192.0.2.1', '198.51.100.7', '203.0.113.9'),
      v4('0.0.0.0', '255.255.255.255', '1.2.3.4', '100.64.0.1', { virtualService: 'web', state: 'fin-wait' }, 432000),
      { ...v4('10.9.8.7', '10.0.0.2', '10.0.0.2', '10.9.8.7', { lastActivity: now - 5 }), withActivity: true },
      { entry: entry({ proto: 'udp', src: '2001:db8::1', dst: '2001:db8:0:1::53', sport: 5353, dport: 53 }, { proto: 'udp', src: '2001:db8:0:1::53', dst: '2001:db8::1', sport: 53, dport: 5353 }), withActivity: false, timeout: 10 },
      { entry: entry({ proto: 'icmp', src: '10.1.1.1', dst: '10.1.1.2', sport: 7, dport: 0 }, { proto: 'icmp', src: '10.1.1.2', dst: '10.1.1.1', sport: 7, dport: 0 }, { virtualService: 'ünïcode' }), withActivity: false, timeout: 30 },
    ];
    const bad: SyncRecord[] = [
      v4('10.0.0.1', '2001:db8::2', '10.0.0.2', '10.0.0.1'), // mixed families
      v4('10.0.0.01', '10.0.0.2', '10.0.0.2', '10.0.0.1'), // not an address (leading zero)
      v4('10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.256'),
      v4('10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.1', {}, -1), // timeout out of range
      v4('10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.1', { state: 'bogus' as ConntrackEntry['state'] }),
      v4('10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.1', { virtualService: 'x'.repeat(256) }),
      { ...v4('10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.1'), entry: entry({ proto: 'sctp' as FlowTuple['proto'], src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, { proto: 'tcp', src: '10.0.0.2', dst: '10.0.0.1', sport: 2, dport: 1 }) },
    ];
    // Good and bad interleaved, the bad ones at the ends too.
    const mixed: SyncRecord[] = [bad[0] as SyncRecord];
    good.forEach((g, i) => mixed.push(g, ...(bad[i + 1] ? [bad[i + 1] as SyncRecord] : [])));
    mixed.push(bad[bad.length - 1] as SyncRecord);
    const { payload, errors } = encodeRecordBatch(mixed, now);
    expect(payload.equals(encodeRecords(good, good.map(recordSize), now))).to.equal(true);
    expect(errors.map((e) => e.index)).to.deep.equal(mixed.map((r, i) => (good.includes(r) ? -1 : i)).filter((i) => i >= 0));
    for (const e of errors) {
      const rec = mixed[e.index] as SyncRecord;
      let expected = '';
      try {
        recordSize(rec);
      } catch (err) {
        expected = (err as Error).message;
      }
      expect(e.err).to.be.instanceOf(SyncProtocolError);
      expect((e.err as Error).message).to.equal(expected);
    }
    // Many records (the buffer grows past its first guess with IPv6 and names).
    const many = Array.from({ length: 1000 }, (_, i) => good[i % good.length] as SyncRecord);
    expect(encodeRecordBatch(many, now).payload.equals(encodeRecords(many, many.map(recordSize), now))).to.equal(true);
    expect(encodeRecordBatch([], now).payload.equals(encodeRecords([], [], now))).to.equal(true);
  });
});
