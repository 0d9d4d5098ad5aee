// The sync and ha commit subsystems' own checks (what libyang cannot express), and what a commit
// does to a running service: precise errors, then apply.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import { HaSubsystem } from '../../ha/ha-subsystem.js';
import { HaService } from '../../ha/ha-service.js';
import { SyncService } from '../../sync/sync-service.js';
import { SyncSubsystem } from '../../sync/sync-subsystem.js';
import { MemoryEngine } from './memory-engine.js';
import { freePort, nodeConfig } from './two-nodes.js';

type Json = Record<string, unknown>;

describe('sync and ha commit subsystems', () => {
  let engine: MemoryEngine;
  let service: SyncService;
  let haService: HaService;
  let port: number;
  beforeEach(async () => {
    port = await freePort();
    const clock = new ManualClock();
    engine = new MemoryEngine(clock, 2);
    haService = new HaService(engine);
    service = new SyncService(engine, { clock, roles: haService });
  });
  afterEach(async () => {
    await service.close();
    await engine.close();
  });

  const base = (): Json => nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, vrfs: [{ name: 'main', port }] });
  const ha = (c: Json): Json => ((c['tandem-vrf:vrf'] as Json[])[0] as Json)['tandem-ha-fp-conntrack:ha-fp-conntrack'] as Json;

  it('accepts a valid configuration and applies it', async () => {
    const sub = new SyncSubsystem(service);
    const ctx = { id: 1, oldConfig: {}, newConfig: base() };
    expect(await sub.validate(ctx)).to.deep.equal([]);
    await new HaSubsystem(haService).apply(ctx);
    await sub.apply(ctx);
    expect(service.vrfs.get('main')?.role).to.equal('master');
    expect(engine.role('main')).to.equal('master');
  });

  it('refuses two peers with one address and a peer that is itself', async () => {
    const c = base();
    const peers = ha(c)['peer'] as Json[];
    peers.push({ ...(peers[0] as Json), name: 'peer2' });
    peers.push({ name: 'self', source: '127.0.0.1', address: '127.0.0.1', port });
    const errors = await new SyncSubsystem(service).validate({ id: 1, oldConfig: {}, newConfig: c });
    const messages = errors.map((e) => e.message);
    expect(messages.some((m) => /peers peer1 and peer2 have the same address 127.0.0.2/.test(m))).to.equal(true);
    expect(messages.some((m) => /peer self: source and address are both 127.0.0.1/.test(m))).to.equal(true);
    expect(errors.find((e) => /peer2/.test(e.message))?.path).to.equal("/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='peer2']/address");
  });

  it('refuses a bad HA state', async () => {
    const c = base();
    (c['tandem-ha:ha'] as { group: Json[] }).group = [{ name: 'g1', state: 'active' }];
    const errors = await new HaSubsystem(haService).validate({ id: 1, oldConfig: {}, newConfig: c });
    expect(errors[0]?.message).to.match(/bad state active/);
  });
});
