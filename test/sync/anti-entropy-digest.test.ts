// Anti-entropy's digest (sync/anti-entropy/range-digest.ts, table-walk.ts) on the soft engine:
// equal sets of synced conntracks give equal digests whatever the order they were written in and
// however many workers the engine runs (the split is sync's, by the tuple hash); changing one field
// sync carries (state, NAT binding) changes exactly the range of that conntrack; timers do not.
// Plus the anti-entropy frames: round trips, and malformed frames refused.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry, FlowTuple, L4Proto, TcpState } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { seededRandom } from '../../fastpath/traffic/seeded-random.js';
import { STATES } from '../../sync/conntrack-codec.js';
import { STATE_INDEX } from '../../sync/conntrack-key.js';
import { SyncProtocolError } from '../../sync/protocol.js';
import {
  decodeDigestReply, decodeDigestRequest, decodeRangeMarker, decodeRangeRepair, encodeDigestReply, encodeDigestRequest, encodeRangeMarker,
  encodeRangeRepair, SKIPPED,
} from '../../sync/anti-entropy/digest-frames.js';
import { type DigestFilter, differingRanges, entryHash, entryHashIPv4, laneB, placeOf, RangeDigests } from '../../sync/anti-entropy/range-digest.js';
import { digestTable, entriesInRanges } from '../../sync/anti-entropy/table-walk.js';
import { vrfJson } from '../fastpath/vrf-json.js';

const PROTOS: L4Proto[] = ['tcp', 'udp', 'icmp'];
const SYNCED: DigestFilter = {
  entry: (e) => (e.synced ? (STATE_INDEX.get(e.state) as number) : -1),
  packed: (b, i) => (b.synced(i) ? b.stateIndex(i) : -1),
};

function conntracks(n: number, now: number): ConntrackEntry[] {
  const r = seededRandom(11);
  return Array.from({ length: n }, (_, i) => {
    const proto = PROTOS[i % 3] as L4Proto;
    const v6 = i % 97 === 0;
    const src = v6 ? `2001:db8::${(i + 1).toString(16)}` : `10.${(i >> 14) & 255}.${(i >> 6) & 255}.${i & 63}`;
    const dst = v6 ? '2001:db8:1::10' : `192.0.2.${i % 200}`;
    const orig: FlowTuple = { proto, src, dst, sport: proto === 'icmp' ? i % 65536 : 1024 + (i % 60000), dport: proto === 'icmp' ? 0 : 443 };
    const reply: FlowTuple = { proto, src: dst, dst: v6 ? src : `198.51.100.${i % 50}`, sport: orig.dport, dport: 2000 + (i % 50000) };
    const state: TcpState = proto === 'tcp' ? STATES[i % STATES.length] as TcpState : 'established';
    return {
      vrf: 'main', orig, reply, state, timeout: 30 + Math.floor(r() * 1000), alg: false, establishedAt: now, lastActivity: now - Math.floor(r() * 5000), synced: true,
    };
  });
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const r = seededRandom(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('anti-entropy digest', function () {
  this.timeout(60000);
  const engines: SoftEngine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
  });

  async function engineWith(workers: number, entries: ConntrackEntry[]): Promise<SoftEngine> {
    const e = await SoftEngine.create({ clock: new ManualClock(1_000_000), workers });
    engines.push(e);
    await e.applyVrf('main', { name: 'main', json: vrfJson('main') });
    await e.setRole('main', 'backup');
    for (let i = 0; i < entries.length; i += 500) expect(await e.upsert(entries.slice(i, i + 500))).to.equal(Math.min(500, entries.length - i));
    return e;
  }

  it('the packed hash of a plain IPv4 entry equals the object hash', () => {
    for (const e of conntracks(300, 1_000_000).filter((x) => !x.orig.src.includes(':'))) {
      const ip = (s: string): number => s.split('.').reduce((v, p) => v * 256 + Number(p), 0);
      const a = entryHash(e);
      const b = laneB;
      const pa = entryHashIPv4(PROTOS.indexOf(e.orig.proto), STATE_INDEX.get(e.state) as number, ip(e.orig.src), ip(e.orig.dst), e.orig.sport, e.orig.dport,
        ip(e.reply.src), ip(e.reply.dst), e.reply.sport, e.reply.dport);
      expect([pa, laneB]).to.deep.equal([a, b]);
    }
  });

  it('equal sets give equal digests whatever the insertion order and the engine\'s worker count', async () => {
    const set = conntracks(4000, 1_000_000);
    const one = await engineWith(1, set);
    const three = await engineWith(3, shuffled(set, 3));
    for (const syncWorkers of [1, 2, 4]) {
      const a = await digestTable(one, 'main', syncWorkers, 64, SYNCED);
      const b = await digestTable(three, 'main', syncWorkers, 64, SYNCED);
      expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer)), `${syncWorkers} sync workers`).to.equal(true);
      let total = 0;
      for (let w = 0; w < syncWorkers; w++) for (let r = 0; r < 64; r++) total += a.count(w, r);
      expect(total).to.equal(4000);
      // The ranges are really used: no single range holds most of the table.
      let biggest = 0;
      for (let w = 0; w < syncWorkers; w++) for (let r = 0; r < 64; r++) biggest = Math.max(biggest, a.count(w, r));
      expect(biggest).to.be.below(4000 / 16);
    }
  });

  it('one field changed (state, NAT binding) or one entry missing: exactly that range differs; timers do not count', async () => {
    const set = conntracks(3000, 1_000_000);
    const base = await engineWith(2, set);
    const ref = await digestTable(base, 'main', 2, 64, SYNCED);
    const cases: Array<[string, (e: ConntrackEntry) => ConntrackEntry | undefined, boolean]> = [
      ['state', (e) => ({ ...e, state: e.state === 'established' ? 'fin-wait' : 'established' }), true],
      ['NAT port', (e) => ({ ...e, reply: { ...e.reply, dport: e.reply.dport + 1 } }), true],
      ['NAT address', (e) => ({ ...e, reply: { ...e.reply, dst: e.orig.src.includes(':') ? '2001:db8::ffff' : '198.51.100.250' } }), true],
      ['missing', () => undefined, true],
      ['timeout and activity only', (e) => ({ ...e, timeout: e.timeout + 77, lastActivity: e.lastActivity - 999 }), false],
    ];
    for (const [what, change, differs] of cases) {
      const victim = 1234 + what.length; // a different entry per case
      const altered = set.flatMap((e, i) => (i === victim ? [change(e)].filter((x): x is ConntrackEntry => x !== undefined) : [e]));
      const other = await engineWith(2, shuffled(altered, victim));
      const d = await digestTable(other, 'main', 2, 64, SYNCED);
      const at = placeOf(set[victim] as ConntrackEntry, 2, 64);
      for (let w = 0; w < 2; w++) {
        const diff = differingRanges(ref.ofWorker(w), d.ofWorker(w));
        expect(diff, `${what}, worker ${w}`).to.deep.equal(differs && w === at.worker ? [at.range] : []);
      }
      // entriesInRanges gives the range's entries, the changed one included (unless missing).
      const inRange = await entriesInRanges(other, 'main', 2, 64, (w, r) => w === at.worker && r === at.range, SYNCED);
      expect(inRange.length, what).to.equal(ref.count(at.worker, at.range) - (what === 'missing' ? 1 : 0));
      await other.close();
      engines.pop();
    }
  });

  it('entries not covered by the filter (not synced) are left out', async () => {
    const set = conntracks(500, 1_000_000);
    const e = await engineWith(2, set);
    const none = await digestTable(e, 'main', 2, 8, { entry: () => -1, packed: () => -1 });
    expect(none.data.every((x) => x === 0)).to.equal(true);
  });

  it('frames: round trips and refusals', () => {
    const d = new RangeDigests(2, 4);
    d.add(7, 1, 2);
    const view = d.ofWorker(1).slice();
    view[3] = SKIPPED;
    const req = decodeDigestRequest(encodeDigestRequest({ round: 9, worker: 1, workers: 2, ranges: 4, digests: view }));
    expect([req.round, req.worker, req.workers, req.ranges, [...req.digests]]).to.deep.equal([9, 1, 2, 4, [...view]]);
    expect(() => decodeDigestRequest(encodeDigestRequest({ round: 9, worker: 1, workers: 2, ranges: 4, digests: view }).subarray(0, 20))).to.throw(SyncProtocolError);
    const bad = encodeDigestRequest({ round: 9, worker: 1, workers: 2, ranges: 4, digests: view });
    bad.writeUInt16BE(2, 4); // worker 2 of 2
    expect(() => decodeDigestRequest(bad)).to.throw(SyncProtocolError, /worker 2 of 2/);
    expect(decodeDigestReply(encodeDigestReply({ kind: 'differing', round: 3, worker: 0, compared: 60, ranges: [1, 63] })))
      .to.deep.equal({ kind: 'differing', round: 3, worker: 0, compared: 60, ranges: [1, 63] });
    const repaired = { kind: 'repaired' as const, round: 3, worker: 1, ranges: 2, added: 5, updated: 1, removed: 7, refused: 0 };
    expect(decodeDigestReply(encodeDigestReply(repaired))).to.deep.equal(repaired);
    expect(() => decodeDigestReply(Buffer.from([2, 0, 0]))).to.throw(SyncProtocolError, /kind 2/);
    expect(decodeRangeMarker(encodeRangeMarker({ kind: 'start', round: 4, ranges: [5, 6] }))).to.deep.equal({ kind: 'start', round: 4, ranges: [5, 6] });
    expect(decodeRangeMarker(encodeRangeMarker({ kind: 'end', round: 4, range: 6, last: true, records: 12 })))
      .to.deep.equal({ kind: 'end', round: 4, range: 6, last: true, records: 12 });
    expect(() => decodeRangeMarker(Buffer.from([0, 0, 0, 4, 1, 0]))).to.throw(SyncProtocolError);
    const rr = decodeRangeRepair(encodeRangeRepair(4, 6, Buffer.from([0, 0])));
    expect([rr.round, rr.range, [...rr.records]]).to.deep.equal([4, 6, [0, 0]]);
  });
});
