// The soft engine with real worker threads and a manual clock: ownership by hash, rebalancing,
// events, upsert/dump/remove, backup and master behaviour (rules 4 and 5 on the engine side).
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry, ConntrackEvent, FlowTuple } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, Verdict, type SoftPacket } from '../../fastpath/soft/vrf-dataplane.js';
import { ownerWorker } from '../../fastpath/tuple-hash.js';
import { vrfJson } from './vrf-json.js';

function flows(n: number, proto: 'tcp' | 'udp' = 'tcp'): FlowTuple[] {
  return Array.from({ length: n }, (_, i) => ({ proto, src: `10.1.${i >> 8}.${i & 255}`, dst: '192.0.2.10', sport: 30000 + (i % 1000), dport: 80 }));
}

function handshake(fs: FlowTuple[]): SoftPacket[][] {
  return [fs.map((flow) => ({ flow, flags: TCP_SYN })), fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), fs.map((flow) => ({ flow, flags: TCP_ACK }))];
}

async function allEntries(engine: SoftEngine, vrf: string): Promise<ConntrackEntry[]> {
  const out: ConntrackEntry[] = [];
  await engine.dump(vrf, (b) => { out.push(...b); });
  return out;
}

function established(vrf: string, flow: FlowTuple, timeout: number): ConntrackEntry {
  return { vrf, orig: flow, reply: { proto: flow.proto, src: flow.dst, dst: flow.src, sport: flow.dport, dport: flow.sport }, state: 'established', timeout, alg: false, establishedAt: 1, lastActivity: 1 };
}

describe('fastpath: soft engine worker pool', function () {
  this.timeout(30000);
  let engine: SoftEngine | undefined;
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  it('starts no worker thread until the first VRF, then the set pool size, its counters read right, and stops them with the last VRF', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    expect(engine.started).to.equal(false);
    expect(engine.workers).to.equal(2);
    // A resize before any VRF only sets the size; ticks and memory reports on an empty pool are no-ops.
    await engine.setWorkers(3);
    expect(engine.started).to.equal(false);
    clock.advance(5_000);
    await engine.flush();
    expect(await engine.memory()).to.include({ conntracks: 0, tableBytes: 0 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    expect(engine.started).to.equal(true);
    expect(engine.workers).to.equal(3);
    const fs = flows(300);
    for (const step of handshake(fs)) expect(new Set(await engine.inject('main', step))).to.deep.equal(new Set([Verdict.Forward]));
    await engine.flush();
    expect(engine.counters('main')).to.include({ conntracks: 300, created: 300, destroyed: 0 });
    const perWorker = await engine.workerCounters('main');
    expect(perWorker.map((w) => w.worker)).to.deep.equal([0, 1, 2]);
    for (const w of perWorker) expect(w.counters.conntracks).to.equal(fs.filter((f) => ownerWorker(f, 3) === w.worker).length);
    // The last VRF removed stops the workers; the next one starts a fresh pool with fresh counters.
    await engine.applyVrf('main', undefined);
    expect(engine.started).to.equal(false);
    expect(engine.workers).to.equal(3);
    clock.advance(5_000);
    await engine.flush();
    await engine.applyVrf('other', { name: 'other', json: vrfJson('other') });
    expect(engine.started).to.equal(true);
    expect(await engine.inject('other', fs.slice(0, 10).map((flow) => ({ flow, flags: TCP_SYN })))).to.deep.equal(new Array(10).fill(Verdict.Forward));
    await engine.flush();
    expect(engine.counters('other')).to.include({ conntracks: 10, created: 10 });
    expect(() => engine!.counters('main')).to.throw(/not configured/);
  });

  it('puts every conntrack in the worker given by the tuple hash, and events carry that worker', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 3 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    const events: ConntrackEvent[] = [];
    engine.onEvent((e) => events.push(e));
    const fs = flows(300);
    for (const step of handshake(fs)) expect(new Set(await engine.inject('main', step))).to.deep.equal(new Set([Verdict.Forward]));
    await engine.flush();
    const est = events.filter((e) => e.kind === 'established');
    expect(est).to.have.length(300);
    for (const e of est) expect(e.worker).to.equal(ownerWorker(e.entry.orig, 3));
    expect(new Set(est.map((e) => e.worker)).size).to.equal(3);
    expect(engine.counters('main')).to.include({ conntracks: 300, created: 300 });
  });

  it('rebalances on a pool size change without losing or duplicating a conntrack', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { tcp: { established: 100 } }) });
    const fs = flows(500);
    for (const step of handshake(fs)) await engine.inject('main', step);
    const before = (await allEntries(engine, 'main')).map((e) => JSON.stringify(e.orig)).sort();
    await engine.setWorkers(5);
    expect(engine.workers).to.equal(5);
    // Totals survive the move: 500 created, none destroyed, 500 live.
    expect(engine.counters('main')).to.include({ created: 500, destroyed: 0, conntracks: 500 });
    const events: ConntrackEvent[] = [];
    engine.onEvent((e) => events.push(e));
    const after = (await allEntries(engine, 'main')).map((e) => JSON.stringify(e.orig)).sort();
    expect(after).to.deep.equal(before);
    // Traffic after the move finds its conntrack in the new owner (no invalid drops), and the
    // timeouts moved along: everything expires 100 s after its last packet.
    const verdicts = await engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_ACK, reply: true })));
    expect(verdicts.every((v) => v === Verdict.Forward)).to.equal(true);
    clock.advance(99_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(500);
    clock.advance(2_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(0);
    const destroyed = events.filter((e) => e.kind === 'destroy');
    expect(destroyed).to.have.length(500);
    for (const e of destroyed) expect(e.worker).to.equal(ownerWorker(e.entry.orig, 5));
    await engine.setWorkers(1);
    expect(engine.workers).to.equal(1);
  });

  it('stays consistent when the pool is resized while traffic, sync writes and dumps run', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    const e = engine;
    const fs = flows(3000);
    const syn = (part: FlowTuple[]) => e.inject('main', part.map((flow) => ({ flow, flags: TCP_SYN })));
    const synced = flows(4000).slice(3000).map((f) => established('main', { ...f, proto: 'udp' }, 60));
    const dumped: number[] = [];
    const results = await Promise.all([
      syn(fs.slice(0, 1000)), e.setWorkers(4), syn(fs.slice(1000, 2000)), e.upsert(synced),
      e.dump('main', (b) => { dumped.push(b.length); }), e.setWorkers(3), syn(fs.slice(2000)),
    ]);
    for (const i of [0, 2, 6]) expect((results[i] as Verdict[]).every((v) => v === Verdict.Forward)).to.equal(true);
    expect(results[3]).to.equal(1000);
    expect(engine.workers).to.equal(3);
    const all = await allEntries(engine, 'main');
    expect(all).to.have.length(4000);
    expect(new Set(all.map((x) => JSON.stringify(x.orig))).size).to.equal(4000);
    const replies = await engine.inject('main', fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })));
    expect(replies.every((v) => v === Verdict.Forward)).to.equal(true);
  });

  it('replaces a crashed worker so the dataplane keeps forwarding', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    const fs = flows(200);
    await engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_SYN })));
    const onDead = fs.filter((f) => ownerWorker(f, 2) === 1);
    await engine.crashWorkerForTest(1);
    for (let i = 0; i < 200 && engine.restartedWorkers === 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(engine.restartedWorkers).to.equal(1);
    await engine.flush();
    // The crashed worker's conntracks are gone, the other worker's are intact, new traffic flows.
    expect(engine.counters('main').conntracks).to.equal(200 - onDead.length);
    const v = await engine.inject('main', onDead.map((flow) => ({ flow, flags: TCP_SYN })));
    expect(v.every((x) => x === Verdict.Forward)).to.equal(true);
    expect(engine.counters('main').conntracks).to.equal(200);
  });

  it('upserts synced conntracks, dumps and removes them by tuple', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    const fs = flows(50);
    expect(await engine.upsert(fs.map((f) => established('main', f, 300)))).to.equal(50);
    expect(await engine.upsert(fs.slice(0, 10).map((f) => established('main', f, 10)))).to.equal(10);
    const all = await allEntries(engine, 'main');
    expect(all).to.have.length(50);
    expect(all.every((e) => e.synced)).to.equal(true);
    expect(all.filter((e) => e.timeout === 10)).to.have.length(10);
    expect(engine.counters('main')).to.include({ conntracks: 50, synced: 50 });
    expect(await engine.remove('main', fs.slice(0, 20))).to.equal(20);
    expect(engine.counters('main')).to.include({ conntracks: 30, synced: 30 });
  });

  it('isolates VRFs: a conntrack of one VRF is invisible in another (rule 9)', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('red', { name: 'red', json: vrfJson('red') });
    await engine.applyVrf('blue', { name: 'blue', json: vrfJson('blue') });
    const [f] = flows(1) as [FlowTuple];
    await engine.inject('red', [{ flow: f, flags: TCP_SYN }]);
    expect(await engine.inject('blue', [{ flow: f, reply: true, flags: TCP_SYN | TCP_ACK }])).to.deep.equal([Verdict.DropInvalid]);
    await engine.upsert([established('blue', { ...f, sport: 1 }, 60)]);
    expect((await allEntries(engine, 'red')).map((e) => e.orig.sport)).to.deep.equal([f.sport]);
    expect((await allEntries(engine, 'blue')).map((e) => e.orig.sport)).to.deep.equal([1]);
    await engine.applyVrf('blue', undefined);
    expect(() => engine?.counters('blue')).to.throw(/not configured/);
  });

  it('backup: synced conntracks never expire and their traffic is blocked (rule 4)', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { tcp: { established: 30 } }) });
    await engine.setRole('main', 'backup');
    const fs = flows(20);
    await engine.upsert(fs.map((f) => established('main', f, 30)));
    clock.advance(3_600_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(20);
    const v = await engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_ACK })));
    expect(v.every((x) => x === Verdict.DropBackup)).to.equal(true);
    expect(engine.counters('main').dropsBackup).to.equal(20);
  });

  it('after switch to master, unused synced conntracks live their whole timeout from the switch time (rule 5)', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { tcp: { established: 60 } }) });
    await engine.setRole('main', 'backup');
    const fs = flows(10);
    await engine.upsert(fs.map((f, i) => established('main', f, i < 5 ? 60 : 10)));
    clock.advance(500_000);
    await engine.flush();
    await engine.setRole('main', 'master');
    // Used conntracks forward and are refreshed; unused ones go at switch + their timeout.
    expect(await engine.inject('main', [{ flow: fs[0] as FlowTuple, flags: TCP_ACK }])).to.deep.equal([Verdict.Forward]);
    clock.advance(9_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(10);
    clock.advance(2_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(5);
    clock.advance(48_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(5);
    clock.advance(2_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(0);
  });

  it('with an undefined-grace-period, unused conntracks go between grace and timeout; a synced activity time wins (rules 5, 8)', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { tcp: { established: 100 } }) });
    await engine.setRole('main', 'backup');
    engine.setFailoverPolicy('main', { graceSeconds: { tcp: 20 } });
    const fs = flows(200);
    const switchAt = clock.now() + 1000;
    await engine.upsert(fs.slice(0, 199).map((f) => established('main', f, 100)));
    // One entry carries the master's activity time from a manual synchronisation: it expires at
    // lastActivity + timeout, not after the grace period.
    // (UDP, which has no grace period here, so only the activity time can shorten its life.)
    const udpFlow: FlowTuple = { ...(fs[199] as FlowTuple), proto: 'udp' };
    await engine.upsert([{ ...established('main', udpFlow, 100), activitySynced: true, lastActivity: switchAt - 30_000 }]);
    clock.advance(1000);
    await engine.setRole('main', 'master');
    clock.advance(19_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(200);
    const seen: number[] = [];
    for (let s = 20; s <= 100; s += 10) {
      clock.set(switchAt + s * 1000);
      await engine.flush();
      seen.push(engine.counters('main').conntracks);
      const udpLeft = (await allEntries(engine, 'main')).some((e) => e.orig.proto === 'udp');
      expect(udpLeft, `UDP entry present ${s} s after the switch`).to.equal(s < 70);
    }
    // Random drops spread over (grace, timeout]: strictly fewer over time, none left at the timeout.
    expect(seen[1]).to.be.lessThan(200);
    expect(seen.at(-1)).to.equal(0);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).to.be.at.most(seen[i - 1] as number);
  });
});
