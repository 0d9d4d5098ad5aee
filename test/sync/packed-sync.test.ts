// The packed sync paths. Receiving: plain IPv4 CT_NEW/CT_UPDATE payloads go to the soft engine as
// received (DataplaneEngine.upsertIPv4Records) instead of as entry objects; it must store exactly
// what the object path stores, in the worker that owns each conntrack, and refuse a payload that
// the object decoder refuses. Sending: a full resync from a soft engine reads its dump packed
// (DataplaneEngine.dumpPacked) and encodes records from fields; the backup must end up with what
// the object path would send, IPv6 entries (which take the object path) included.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry, FlowTuple, L4Proto, TcpState } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_RST, TCP_SYN, Verdict, type SoftPacket } from '../../fastpath/soft/vrf-dataplane.js';
import { ipv4TupleHash, tupleHash } from '../../fastpath/tuple-hash.js';
import {
  decodeEntries, decodeRecords, encodeRecords, isPlainIPv4Payload, recordSize, STATES, type SyncRecord,
} from '../../sync/conntrack-codec.js';
import { SyncProtocolError } from '../../sync/protocol.js';
import { vrfJson } from '../fastpath/vrf-json.js';
import { freePort, nodeConfig, type NodeOpts, startNode, type SyncNode, waitFor } from './two-nodes.js';
import { seededRandom } from '../../fastpath/traffic/seeded-random.js';

const PROTOS: L4Proto[] = ['tcp', 'udp', 'icmp'];

/** n distinct conntracks of every protocol and TCP state, with varied timeouts and activity times. */
function entries(n: number, now: number, r: () => number): SyncRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const proto = PROTOS[i % 3] as L4Proto;
    const orig: FlowTuple = { proto, src: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, dst: `192.0.2.${i % 200}`, sport: proto === 'icmp' ? i % 65536 : 1024 + (i % 60000), dport: proto === 'icmp' ? 0 : 80 };
    const reply: FlowTuple = { proto, src: orig.dst, dst: `198.51.100.${i % 50}`, sport: orig.dport, dport: orig.sport };
    const state: TcpState = proto === 'tcp' ? STATES[i % STATES.length] as TcpState : 'established';
    const entry: ConntrackEntry = {
      vrf: 'main', orig, reply, state, timeout: 30 + Math.floor(r() * 1000), alg: false, establishedAt: now, lastActivity: now - Math.floor(r() * 50_000),
    };
    return { entry, withActivity: i % 2 === 0, timeout: entry.timeout };
  });
}

function payloads(recs: SyncRecord[], now: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < recs.length; i += 500) {
    const part = recs.slice(i, i + 500);
    out.push(encodeRecords(part, part.map(recordSize), now));
  }
  return out;
}

async function dumpSorted(engine: SoftEngine): Promise<ConntrackEntry[]> {
  const out: ConntrackEntry[] = [];
  await engine.dump('main', (b) => {
    out.push(...b);
  });
  const key = (e: ConntrackEntry): string => JSON.stringify(e.orig);
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

describe('sync fast receive path: packed IPv4 records into the soft engine', function () {
  this.timeout(30000);
  const engines: SoftEngine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
  });

  async function backup(clock: ManualClock, workers: number): Promise<SoftEngine> {
    const e = await SoftEngine.create({ clock, workers });
    engines.push(e);
    await e.applyVrf('main', { name: 'main', json: vrfJson('main') });
    await e.setRole('main', 'backup');
    return e;
  }

  it('ipv4TupleHash equals tupleHash of the dotted quad for 20,000 addresses', () => {
    const r = seededRandom(5);
    const values = [0, 0xffffffff, 0x0a000001, 0x7f000001, ...Array.from({ length: 20_000 }, () => Math.floor(r() * 2 ** 32))];
    for (const v of values) {
      const text = [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
      expect(ipv4TupleHash(v), text).to.equal(tupleHash({ src: text }));
    }
  });

  it('stores exactly what the object path stores, in the owning worker (3 workers, 3,000 conntracks)', async () => {
    const clock = new ManualClock(5_000_000);
    const fast = await backup(clock, 3);
    const slow = await backup(clock, 3);
    const now = clock.now();
    const recs = entries(3000, now, seededRandom(9));
    let written = 0;
    for (const p of payloads(recs, now)) {
      expect(isPlainIPv4Payload(p)).to.equal(true);
      written += await fast.upsertIPv4Records('main', p.subarray(2));
      await slow.upsert(decodeEntries(p, 'main', now));
    }
    expect(written).to.equal(3000);
    const a = await dumpSorted(fast);
    const b = await dumpSorted(slow);
    expect(a).to.have.length(3000);
    expect(a).to.deep.equal(b);
    expect(a.filter((e) => e.activitySynced)).to.have.length(1500);
    expect(fast.counters('main')).to.include({ conntracks: 3000, synced: 3000 });
    // In the owning worker: on a backup, traffic of a synced conntrack is blocked, which only
    // happens when the worker that receives the packet (the owner) holds the entry.
    const est = recs.filter((x) => x.entry.state === 'established').map((x) => x.entry.orig);
    const verdicts = await fast.inject('main', est.map((flow) => ({ flow, flags: TCP_ACK })));
    expect(verdicts.filter((v) => v === Verdict.DropBackup)).to.have.length(est.length);
    expect(fast.counters('main').conntracks).to.equal(3000);
  });

  it('an update through the fast path changes state and timeout in place', async () => {
    const clock = new ManualClock(1_000);
    const e = await backup(clock, 2);
    const [rec] = entries(1, clock.now(), seededRandom(1));
    const first = rec as SyncRecord;
    await e.upsertIPv4Records('main', encodeRecords([first], [recordSize(first)], clock.now()).subarray(2));
    const changed: SyncRecord = { ...first, entry: { ...first.entry, state: 'fin-wait' }, timeout: 7 };
    await e.upsertIPv4Records('main', encodeRecords([changed], [recordSize(changed)], clock.now()).subarray(2));
    const [stored] = await dumpSorted(e);
    expect(stored).to.include({ state: 'fin-wait', timeout: 7, synced: true });
    expect(e.counters('main')).to.include({ conntracks: 1, synced: 1 });
  });

  it('refuses a buffer that is not whole records', async () => {
    const e = await backup(new ManualClock(), 1);
    let err: unknown;
    try {
      await e.upsertIPv4Records('main', new Uint8Array(35));
    } catch (x) {
      err = x;
    }
    expect(err).to.be.instanceOf(TypeError);
    expect(e.counters('main').conntracks).to.equal(0);
  });

  it('isPlainIPv4Payload agrees with the object decoder on 20,000 mutated payloads', () => {
    const r = seededRandom(21);
    const base = payloads(entries(12, 100_000, r), 100_000)[0] as Buffer;
    let plain = 0, refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const b = Buffer.from(base.subarray(0, i % 10 === 0 ? Math.floor(r() * base.length) : base.length));
      for (let k = 0; k < 1 + Math.floor(r() * 2); k++) {
        const at = Math.floor(r() * b.length);
        b[at] = (b[at] as number) ^ (1 << Math.floor(r() * 8));
      }
      let fast: boolean | 'error';
      try {
        fast = isPlainIPv4Payload(b);
      } catch (err) {
        if (!(err instanceof SyncProtocolError)) throw err;
        fast = 'error';
      }
      let decoded: ReturnType<typeof decodeRecords> | 'error';
      try {
        decoded = decodeRecords(b);
      } catch (err) {
        if (!(err instanceof SyncProtocolError)) throw err;
        decoded = 'error';
      }
      if (fast === true) {
        // Accepted on the fast path: the object decoder accepts it too, all plain IPv4.
        expect(decoded, `payload ${i}`).to.not.equal('error');
        expect((decoded as ReturnType<typeof decodeRecords>).every((d) => d.virtualService === undefined && !d.orig.src.includes(':'))).to.equal(true);
        plain++;
      } else if (fast === 'error') {
        expect(decoded, `payload ${i}`).to.equal('error');
        refused++;
      }
    }
    expect(plain).to.be.greaterThan(1000);
    expect(refused).to.be.greaterThan(1000);
  });
});

describe('sync packed send path: a full resync read from a soft engine dump', function () {
  this.timeout(60000);
  const nodes: SyncNode<SoftEngine>[] = [];
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.service.close();
      await n.engine.close();
    }
  });

  it('sends every established conntrack (IPv4 packed, IPv6 as objects), keeps the synced bookkeeping, then deletes', async () => {
    const clock = new ManualClock(1_000_000);
    const port = await freePort();
    const opts = (source: string, address: string, state: 'master' | 'backup'): NodeOpts => ({
      source, address, states: { g1: state }, workers: 2, vrfs: [{ name: 'main', port, firewall: { 'default-action': 'accept' } }],
    });
    const ha1 = await startNode('ha1', await SoftEngine.create({ clock, workers: 2 }), clock, nodeConfig(opts('127.0.0.1', '127.0.0.2', 'master')));
    nodes.push(ha1);
    const tcp: FlowTuple[] = Array.from({ length: 300 }, (_, i) => ({ proto: 'tcp', src: `10.7.${i >> 8}.${i & 255}`, dst: '192.0.2.10', sport: 20000 + i, dport: 443 }));
    const v6: FlowTuple[] = Array.from({ length: 20 }, (_, i) => ({ proto: 'tcp', src: `2001:db8::${i + 1}`, dst: '2001:db8:1::10', sport: 21000 + i, dport: 443 }));
    const udp: FlowTuple[] = Array.from({ length: 60 }, (_, i) => ({ proto: 'udp', src: `10.8.0.${i}`, dst: '192.0.2.53', sport: 40000 + i, dport: 53 }));
    const half: FlowTuple[] = Array.from({ length: 40 }, (_, i) => ({ proto: 'tcp', src: `10.9.0.${i}`, dst: '192.0.2.10', sport: 22000 + i, dport: 443 }));
    const established = [...tcp, ...v6];
    const steps: SoftPacket[][] = [
      [...established, ...half].map((flow) => ({ flow, flags: TCP_SYN })),
      established.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })),
      established.map((flow) => ({ flow, flags: TCP_ACK })),
      udp.map((flow) => ({ flow })),
      udp.map((flow) => ({ flow, reply: true })),
    ];
    for (const step of steps) await ha1.engine.inject('main', step);
    await ha1.engine.flush();
    // ha1 was alone: nothing was sent live. ha2 comes up; its connections get a full resync.
    const ha2 = await startNode('ha2', await SoftEngine.create({ clock, workers: 2 }), clock, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'backup')));
    nodes.push(ha2);
    const expected = established.length + udp.length;
    await waitFor(() => ha2.engine.counters('main').conntracks === expected, `${expected} conntracks resynced`, 20000);
    await ha1.service.vrfs.get('main')?.resyncIdle();
    // Encoded payloads count as their records in the queue bound, and leave it when written.
    await waitFor(() => ha1.service.vrfs.get('main')?.pendingCount() === 0, 'ha1 queues drained');
    const key = (t: FlowTuple): string => `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
    const got = await dumpSorted(ha2.engine);
    expect(new Set(got.map((e) => key(e.orig)))).to.deep.equal(new Set([...established, ...udp].map(key)));
    const master = new Map((await dumpSorted(ha1.engine)).map((e) => [key(e.orig), e]));
    for (const e of got) {
      const m = master.get(key(e.orig)) as ConntrackEntry;
      expect(e, key(e.orig)).to.include({ state: m.state, timeout: m.timeout, synced: true });
      expect(e.reply).to.deep.equal(m.reply);
    }
    expect(ha1.service.vrfs.get('main')?.syncedCount()).to.equal(expected);
    // The synced map written from packed fields is the one live sync reads: reset connections are
    // sent as updates, and as deletes once they expire on ha1 (close timeout, in steps of 1 s).
    const gone = [...tcp.slice(0, 50), ...v6.slice(0, 5)];
    await ha1.engine.inject('main', gone.map((flow) => ({ flow, flags: TCP_RST })));
    const goneKeys = new Set(gone.map(key));
    const held = async (e: SoftEngine): Promise<Set<string>> => new Set((await dumpSorted(e)).map((x) => key(x.orig)));
    for (let i = 0; i < 300; i++) {
      clock.advance(1000);
      await ha1.engine.flush();
      if (i % 5 === 4 && ![...(await held(ha1.engine))].some((k) => goneKeys.has(k))) break;
    }
    expect([...(await held(ha1.engine))].some((k) => goneKeys.has(k)), 'reset connections expired on ha1').to.equal(false);
    const kept = [...tcp.slice(50), ...v6.slice(5)].map(key);
    let onBackup = new Set<string>();
    for (let i = 0; i < 200; i++) {
      onBackup = await held(ha2.engine);
      if (![...onBackup].some((k) => goneKeys.has(k))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect([...onBackup].filter((k) => goneKeys.has(k)), 'deleted on ha2').to.deep.equal([]);
    for (const k of kept) expect(onBackup.has(k), k).to.equal(true);
    // The binding tag marked from packed fields (and from IPv6 objects) is the one the events carry.
    expect(ha1.service.vrfs.get('main')?.olderIncarnationEvents, 'no event taken for an older incarnation').to.equal(0);
  });

  it('SPEC rule 2 on soft engines: a backup that comes back gets what it missed and loses what ended meanwhile', async () => {
    const clock = new ManualClock(1_000_000);
    const port = await freePort();
    const opts = (source: string, address: string, state: 'master' | 'backup'): NodeOpts => ({
      source, address, states: { g1: state }, workers: 2, vrfs: [{ name: 'main', port, firewall: { 'default-action': 'accept' } }],
    });
    const ha1 = await startNode('ha1', await SoftEngine.create({ clock, workers: 2 }), clock, nodeConfig(opts('127.0.0.1', '127.0.0.2', 'master')));
    nodes.push(ha1);
    let ha2 = await startNode('ha2', await SoftEngine.create({ clock, workers: 2 }), clock, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'backup')));
    nodes.push(ha2);
    await waitFor(() => ha1.service.ready() && ha2.service.ready(), 'sync connections up', 20000);
    const mk = (n: number, b: number): FlowTuple[] => Array.from({ length: n }, (_, i) => ({ proto: 'tcp', src: `10.${b}.${i >> 8}.${i & 255}`, dst: '192.0.2.10', sport: 30000 + i, dport: 80 }));
    const open = async (fs: FlowTuple[]): Promise<void> => {
      await ha1.engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_SYN })));
      await ha1.engine.inject('main', fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })));
      await ha1.engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_ACK })));
      await ha1.engine.flush();
    };
    const first = mk(200, 11);
    await open(first);
    await waitFor(() => ha2.engine.counters('main').conntracks === 200, 'first conntracks synced');
    // ha2's sync stops (its engine keeps its table); meanwhile 30 connections end and 40 start on ha1.
    await ha2.service.close();
    const clients = (): string[] => (ha1.service.vrfs.get('main')?.clientStats() ?? []).map((c) => c.status);
    await waitFor(() => clients().every((st) => st !== 'established'), 'ha1 sees the connections down');
    const ended = first.slice(0, 30);
    await ha1.engine.inject('main', ended.map((flow) => ({ flow, flags: TCP_RST })));
    for (let i = 0; i < 300 && ha1.engine.counters('main').conntracks > 170; i++) {
      clock.advance(1000);
      await ha1.engine.flush();
    }
    expect(ha1.engine.counters('main').conntracks).to.equal(170);
    const later = mk(40, 12);
    await open(later);
    expect(ha2.engine.counters('main').conntracks).to.equal(200);
    // ha2 comes back: a new sync service on the same engine (its table holds synced entries).
    const engine2 = ha2.engine;
    nodes.splice(nodes.indexOf(ha2), 1);
    ha2 = await startNode('ha2', engine2, clock, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'backup')));
    nodes.push(ha2);
    const key = (t: FlowTuple): string => `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
    const want = new Set([...first.slice(30), ...later].map(key));
    let got = new Set<string>();
    for (let i = 0; i < 200; i++) {
      got = new Set((await dumpSorted(engine2)).map((e) => key(e.orig)));
      if (got.size === want.size && [...want].every((k) => got.has(k))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(got).to.deep.equal(want);
  });
});
