// The flow generator drives the soft engine at a rate, within concurrency, under a manual clock.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEvent } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { FlowGenerator } from '../../fastpath/traffic/flow-generator.js';
import { vrfJson } from './vrf-json.js';

describe('fastpath: flow generator', function () {
  this.timeout(30000);
  let engine: SoftEngine | undefined;
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  it('opens flows at the rate and protocol mix asked, bounded by concurrency, and closes them', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { tcp: { 'time-wait': 5 }, udp: 5, icmp: 5 }) });
    const events: ConntrackEvent[] = [];
    engine.onEvent((e) => events.push(e));
    const gen = new FlowGenerator(engine, { vrf: 'main', rate: 200, concurrency: 400, mix: { tcp: 2, udp: 1, icmp: 1 }, lifetimeMs: { min: 500, max: 1000 }, packetsPerSecond: 2, seed: 7 });
    const stats = await gen.run(10_000, 100);
    await engine.flush();
    // 200/s for 10 s = 2000 flows; lifetimes under 1 s keep at most 200 open at once.
    expect(stats.opened).to.equal(2000);
    expect(stats.open).to.be.at.most(200);
    expect(stats.verdicts.Forward).to.equal(stats.packets);
    const established = events.filter((e) => e.kind === 'established');
    expect(established).to.have.length(2000);
    const byProto = { tcp: 0, udp: 0, icmp: 0 };
    for (const e of established) byProto[e.entry.orig.proto]++;
    expect(byProto.tcp).to.be.within(850, 1150);
    expect(byProto.udp).to.be.within(400, 600);
    expect(byProto.icmp).to.be.within(400, 600);
    // Closed TCP flows went through the FIN exchange to time-wait.
    expect(events.some((e) => e.kind === 'update' && e.entry.state === 'time-wait')).to.equal(true);
    // Concurrency bound: with lifetimes of 20 s only 150 can be open.
    const slow = new FlowGenerator(engine, { vrf: 'main', rate: 1000, concurrency: 150, lifetimeMs: { min: 20_000, max: 20_000 }, seed: 3 });
    const s2 = await slow.run(2000, 100);
    expect(s2.opened).to.equal(150);
    expect(s2.open).to.equal(150);
    // Everything ages out once traffic stops.
    clock.advance(30_000);
    await gen.closeAll();
    await slow.closeAll();
    clock.advance(10_000);
    await engine.flush();
    const left: string[] = [];
    await engine.dump('main', (b) => { left.push(...b.map((e) => `${e.orig.proto}:${e.state}:${e.timeout}`)); });
    expect(left).to.deep.equal([]);
  });

  it('refuses nonsense options with a clear error', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 1 });
    expect(() => new FlowGenerator(engine as SoftEngine, { vrf: 'main', rate: 0, concurrency: 1 })).to.throw(/rate must be > 0/);
    expect(() => new FlowGenerator(engine as SoftEngine, { vrf: 'main', rate: 1, concurrency: 0 })).to.throw(/concurrency/);
    expect(() => new FlowGenerator(engine as SoftEngine, { vrf: 'main', rate: 1, concurrency: 1, clients: 'nope' })).to.throw(/IPv4 prefix/);
  });
});
