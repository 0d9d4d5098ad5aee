// SPEC rules 1-11, each its own describe, on two sync stacks over real TCP on loopback with a
// manual conntrack clock.
import { expect } from 'chai';
import { ownerWorker } from '../../fastpath/tuple-hash.js';
import type { FlowTuple } from '../../fastpath/engine.js';
import { flow, Pair, waitFor } from './two-nodes.js';

function clientsOf(p: Pair, node: 'ha1' | 'ha2', vrf = 'main') {
  return (p[node].service.vrfs.get(vrf) as NonNullable<ReturnType<Pair['ha1']['service']['vrfs']['get']>>).clientStats();
}

describe('SPEC rule 1: conntracks go to every peer over nb-event-threads connections, each always on the same one', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('opens one connection per worker and sends each conntrack on its owner worker connection', async () => {
    p = await new Pair().start({ workers: 3 });
    expect(clientsOf(p, 'ha1').map((c) => c.client)).to.deep.equal(['npf_event0', 'npf_event1', 'npf_event2']);
    const flows: FlowTuple[] = [];
    for (let i = 0; i < 300; i++) {
      const f = flow();
      flows.push(f);
      p.ha1.engine.open('main', f);
    }
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 300, 'all 300 conntracks on ha2');
    const perWorker = [0, 0, 0];
    for (const f of flows) perWorker[ownerWorker(f, 3)]++;
    expect(clientsOf(p, 'ha1').map((c) => c.stats.transmit)).to.deep.equal(perWorker);
    expect(perWorker.every((n) => n > 0)).to.equal(true);
    // A later update of one conntrack travels on the same connection.
    const f0 = flows[0] as FlowTuple;
    p.ha1.engine.setState('main', f0, 'fin-wait', 120);
    const w = ownerWorker(f0, 3);
    await waitFor(() => p.ha2.engine.get('main', f0)?.state === 'fin-wait', 'the update on ha2');
    const after = clientsOf(p, 'ha1').map((c) => c.stats.transmit);
    expect(after).to.deep.equal(perWorker.map((n, i) => (i === w ? n + 1 : n)));
    for (const f of flows) expect(p.ha2.engine.get('main', f)?.synced).to.equal(true);
  });
});

describe('SPEC rule 2: a sync connection that comes back triggers a complete resynchronisation', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('resends every conntrack after the peer was down', async () => {
    p = await new Pair().start();
    const before = [flow(), flow(), flow()];
    for (const f of before) p.ha1.engine.open('main', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 3, 'first conntracks synced');
    // ha2's sync stops (its engine keeps its table); ha1 keeps working meanwhile.
    await p.ha2.service.close();
    await waitFor(() => clientsOf(p, 'ha1').every((c) => c.status !== 'established'), 'ha1 sees the connections down');
    const during: FlowTuple[] = [];
    for (let i = 0; i < 50; i++) {
      const f = flow();
      during.push(f);
      p.ha1.engine.open('main', f);
    }
    p.ha1.engine.destroy('main', before[0] as FlowTuple);
    expect(p.ha2.engine.counters('main').conntracks).to.equal(3);
    // ha2 comes back: a new SyncService on the same engine, same configuration.
    const { startNode } = await import('./two-nodes.js');
    p.ha2 = await startNode('ha2', p.ha2.engine, p.clock, p.ha2Config());
    await p.waitUp();
    await waitFor(() => during.every((f) => p.ha2.engine.get('main', f)), 'every conntrack made while down reached ha2');
    const vs = p.ha1.service.vrfs.get('main');
    await vs?.resyncIdle();
    expect(vs?.lastFullResync?.count).to.equal(52);
    // The conntrack destroyed while apart is removed from ha2 at the end of the resync.
    await waitFor(() => p.ha2.engine.get('main', before[0] as FlowTuple) === undefined, 'the stale conntrack purged from ha2');
    expect(p.ha2.engine.counters('main').conntracks).to.equal(52);
    expect(p.ha1.notifications.some((n) => n.kind === 'full-resync-complete')).to.equal(true);
    expect(p.ha1.notifications.filter((n) => n.kind === 'connection-down').length).to.equal(2);
  });
});

describe('SPEC rule 3: sent when established with its session timeout; leaving established sets the TCP undefined timeout', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('carries the session timeout, then the configured undefined timeout', async () => {
    p = await new Pair().start({ vrfs: (port) => [{ name: 'main', port, tcpUndefined: 20 }] });
    const f = flow();
    p.ha1.engine.open('main', f, { establish: false });
    await new Promise((r) => setTimeout(r, 50));
    expect(p.ha2.engine.get('main', f)).to.equal(undefined);
    p.ha1.engine.establish('main', f);
    await waitFor(() => p.ha2.engine.get('main', f) !== undefined, 'established conntrack on ha2');
    expect(p.ha2.engine.get('main', f)?.timeout).to.equal(300);
    expect(p.ha2.engine.get('main', f)?.state).to.equal('established');
    p.ha1.engine.setState('main', f, 'fin-wait', 120);
    await waitFor(() => p.ha2.engine.get('main', f)?.state === 'fin-wait', 'the update on ha2');
    expect(p.ha2.engine.get('main', f)?.timeout).to.equal(20);
    p.ha1.engine.destroy('main', f);
    await waitFor(() => p.ha2.engine.get('main', f) === undefined, 'the delete on ha2');
  });
});

describe('SPEC rule 6: ha-delays synchronization N sends only conntracks established for N s', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('sends TCP after N s without traffic while established, UDP only on traffic after N s', async () => {
    // One worker: one connection, so a later sentinel proves what was not sent before it.
    p = await new Pair().start({ workers: 1, vrfs: (port) => [{ name: 'main', port, delays: { tcp: 5, udp: 5 } }] });
    const vs = p.ha1.service.vrfs.get('main');
    const tcpKept = flow('tcp');
    const tcpClosed = flow('tcp');
    const udpLate = flow('udp');
    const udpEarly = flow('udp');
    for (const f of [tcpKept, tcpClosed, udpLate, udpEarly]) p.ha1.engine.open('main', f);
    expect(vs?.pendingCount()).to.equal(4);
    p.clock.advance(2000);
    p.ha1.engine.setState('main', tcpClosed, 'fin-wait', 120); // leaves established before the delay
    p.ha1.engine.packet('main', udpEarly); // traffic before the delay does not count
    p.clock.advance(3000); // t = 5 s: the TCP timer fires
    const s1 = flow('icmp'); // no delay for ICMP: a sentinel on the same connection
    p.ha1.engine.open('main', s1);
    await waitFor(() => p.ha2.engine.get('main', s1) !== undefined, 'sentinel 1');
    expect(p.ha2.engine.get('main', tcpKept)?.state).to.equal('established');
    expect(p.ha2.engine.get('main', tcpClosed)).to.equal(undefined);
    expect(p.ha2.engine.get('main', udpLate)).to.equal(undefined);
    expect(p.ha2.engine.get('main', udpEarly)).to.equal(undefined);
    p.clock.advance(1000);
    p.ha1.engine.packet('main', udpLate); // traffic after the delay: sent
    const s2 = flow('icmp');
    p.ha1.engine.open('main', s2);
    await waitFor(() => p.ha2.engine.get('main', s2) !== undefined, 'sentinel 2');
    expect(p.ha2.engine.get('main', udpLate)?.state).to.equal('established');
    expect(p.ha2.engine.get('main', udpEarly)).to.equal(undefined);
    expect(vs?.pendingCount()).to.equal(1); // udpEarly still waits for traffic
  });
});

describe('SPEC rule 7: ALG-related and not-yet-established conntracks are never synchronised', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('keeps them out of live sync, full resync and manual synchronisation', async () => {
    p = await new Pair().start({ workers: 1 });
    const alg = flow('tcp', 20);
    const half = flow('tcp');
    p.ha1.engine.open('main', alg, { alg: true });
    p.ha1.engine.open('main', half, { establish: false });
    const vs = p.ha1.service.vrfs.get('main');
    await vs?.manualSync();
    const s = flow();
    p.ha1.engine.open('main', s);
    await waitFor(() => p.ha2.engine.get('main', s) !== undefined, 'sentinel');
    expect(p.ha2.engine.get('main', alg)).to.equal(undefined);
    expect(p.ha2.engine.get('main', half)).to.equal(undefined);
    expect(p.ha2.engine.counters('main').conntracks).to.equal(1);
  });
});

describe('SPEC rule 8: manual synchronisation refreshes activity times and forces out unsynchronised conntracks', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('sends pending conntracks with the master activity time', async () => {
    p = await new Pair().start({ workers: 2, vrfs: (port) => [{ name: 'main', port, delays: { tcp: 60 } }] });
    const t0 = p.clock.now();
    const a = flow();
    const b = flow();
    p.ha1.engine.open('main', a);
    p.ha1.engine.open('main', b);
    p.clock.advance(10_000);
    p.ha1.engine.packet('main', a);
    p.clock.advance(5_000);
    const vs = p.ha1.service.vrfs.get('main');
    expect(vs?.pendingCount()).to.equal(2);
    const result = await p.ha1.service.manualSync('main');
    expect(result.count).to.equal(2);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 2, 'both conntracks on ha2');
    const ea = p.ha2.engine.get('main', a);
    const eb = p.ha2.engine.get('main', b);
    expect(ea?.activitySynced).to.equal(true);
    expect(ea?.lastActivity).to.equal(t0 + 10_000);
    expect(eb?.lastActivity).to.equal(t0);
    expect(vs?.pendingCount()).to.equal(0);
    expect(vs?.syncedCount()).to.equal(2);
    expect(p.ha1.notifications.some((n) => n.kind === 'manual-synchronization-complete' && n.count === 2)).to.equal(true);
    // After the planned failover, the synchronised activity time decides the expiry (rule 5 + 8).
    await (await import('./two-nodes.js')).reconfigure(p.ha2, p.ha2Config({ g1: 'master' }));
    expect(p.ha2.engine.deadline('main', a)).to.equal(t0 + 10_000 + 300_000);
  });

  it('is refused on a backup with a clear error', async () => {
    p = await new Pair().start();
    let err: Error | undefined;
    try {
      await p.ha2.service.manualSync('main');
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/not master/);
  });
});

describe('SPEC rule 9: VRFs are isolated', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('sends each VRF only to its own peers and tables', async () => {
    const port2 = await (await import('./two-nodes.js')).freePort();
    p = await new Pair().start({
      vrfs: (port) => [{ name: 'main', port }, { name: 'blue', port: port2, group: 'g2', secret: 'another-secret-for-blue' }],
    });
    // g2 does not exist in the default states: give it one on both nodes.
    const { reconfigure } = await import('./two-nodes.js');
    await reconfigure(p.ha1, p.ha1Config({ g1: 'master', g2: 'master' }));
    await reconfigure(p.ha2, p.ha2Config({ g1: 'backup', g2: 'backup' }));
    await p.waitUp();
    await p.ha1.service.vrfs.get('blue')?.resyncIdle(); // blue just became master: its (empty) resync
    const inMain = [flow(), flow(), flow()];
    const inBlue = [flow(), flow()];
    for (const f of inMain) p.ha1.engine.open('main', f);
    for (const f of inBlue) p.ha1.engine.open('blue', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 3 && p.ha2.engine.counters('blue').conntracks === 2, 'both VRFs synced');
    for (const f of inMain) expect(p.ha2.engine.get('blue', f)).to.equal(undefined);
    for (const f of inBlue) expect(p.ha2.engine.get('main', f)).to.equal(undefined);
    expect(p.ha2.service.vrfs.get('main')?.receive).to.equal(3);
    expect(p.ha2.service.vrfs.get('blue')?.receive).to.equal(2);
  });
});

describe('SPEC rule 10: connection mirroring follows the network profile of the virtual service', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('mirrors only tcp-fast-path + connection-mirror services, destroys included', async () => {
    p = await new Pair().start({
      workers: 2,
      profiles: [{ name: 'mirror-on', type: 'tcp-fast-path', mirror: true }, { name: 'mirror-off', type: 'tcp-fast-path', mirror: false }],
      vrfs: (port) => [{ name: 'main', port, virtualServices: [{ name: 'web', profile: 'mirror-on' }, { name: 'api', profile: 'mirror-off' }] }],
    });
    const web = Array.from({ length: 5 }, () => flow('tcp', 443));
    const api = Array.from({ length: 3 }, () => flow('tcp', 8080));
    const plain = [flow(), flow()];
    for (const f of web) p.ha1.engine.open('main', f, { virtualService: 'web' });
    for (const f of api) p.ha1.engine.open('main', f, { virtualService: 'api' });
    for (const f of plain) p.ha1.engine.open('main', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 7, 'mirrored and plain conntracks on ha2');
    for (const f of api) expect(p.ha2.engine.get('main', f)).to.equal(undefined);
    // The counters a user reads are the engines' only (through NETCONF: test/ha/mirror-state.test.ts).
    for (const f of web) expect(p.ha2.engine.get('main', f)?.virtualService).to.equal('web');
    p.ha1.engine.destroy('main', web[0] as FlowTuple);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 6, 'a destroy of a mirrored conntrack reaches ha2');
    expect(p.ha2.engine.get('main', web[0] as FlowTuple)).to.equal(undefined);
  });
});

describe('SPEC rule 11: HA group state comes from configuration and every subscriber follows it', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('moves dataplane and sync of the VRF with a planned failover', async () => {
    p = await new Pair().start();
    expect(p.ha1.engine.role('main')).to.equal('master');
    expect(p.ha2.engine.role('main')).to.equal('backup');
    const before = [flow(), flow()];
    for (const f of before) p.ha1.engine.open('main', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 2, 'synced to ha2');
    const { reconfigure } = await import('./two-nodes.js');
    await reconfigure(p.ha1, p.ha1Config({ g1: 'backup' }));
    await reconfigure(p.ha2, p.ha2Config({ g1: 'master' }));
    expect(p.ha1.engine.role('main')).to.equal('backup');
    expect(p.ha2.engine.role('main')).to.equal('master');
    expect(p.ha1.ha.groups.list()[0]).to.include({ state: 'backup', controller: 'static', transitions: 1 });
    expect(p.ha1.notifications.some((n) => n.kind === 'ha-group-state-change' && n.newState === 'backup' && n.oldState === 'master')).to.equal(true);
    // The new master syncs its conntracks to the new backup; the backup sends nothing.
    const onHa2 = flow();
    p.ha2.engine.open('main', onHa2);
    const onHa1 = flow();
    p.ha1.engine.open('main', onHa1);
    await waitFor(() => p.ha1.engine.get('main', onHa2) !== undefined, 'new master conntrack on ha1');
    await p.ha2.service.vrfs.get('main')?.resyncIdle();
    expect(p.ha2.engine.get('main', onHa1)).to.equal(undefined);
    expect(p.ha1.engine.get('main', before[0] as FlowTuple)?.synced).to.equal(true);
  });

  it('keeps a group with no controller backup', async () => {
    p = await new Pair().start();
    const { reconfigure } = await import('./two-nodes.js');
    const cfg = p.ha1Config();
    (cfg['tandem-ha:ha'] as { group: Array<Record<string, unknown>> }).group = [{ name: 'g1' }];
    await reconfigure(p.ha1, cfg);
    expect(p.ha1.engine.role('main')).to.equal('backup');
    expect(p.ha1.ha.groups.list()[0]).to.include({ controller: 'none', state: 'backup' });
  });
});

describe('SPEC rule 1 (pool size): changing nb-event-threads reconnects one connection per worker and resyncs', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('moves from 2 to 3 connections without losing a conntrack', async () => {
    p = await new Pair().start({ workers: 2 });
    const fs = Array.from({ length: 60 }, () => flow());
    for (const f of fs) p.ha1.engine.open('main', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 60, 'synced with 2 workers');
    const { reconfigure } = await import('./two-nodes.js');
    p.opts.workers = 3;
    await reconfigure(p.ha1, p.ha1Config());
    await reconfigure(p.ha2, p.ha2Config());
    await p.waitUp();
    expect(clientsOf(p, 'ha1').map((c) => c.client)).to.deep.equal(['npf_event0', 'npf_event1', 'npf_event2']);
    await p.ha1.service.vrfs.get('main')?.resyncIdle();
    expect(p.ha1.service.vrfs.get('main')?.lastFullResync?.count).to.equal(60);
    const later = flow();
    p.ha1.engine.open('main', later);
    await waitFor(() => p.ha2.engine.get('main', later) !== undefined, 'a new conntrack on the new connections');
    expect(p.ha2.engine.counters('main').conntracks).to.equal(61);
  });

  it('reports disabled connections and refuses peers when enabled is false', async () => {
    p = await new Pair().start({ vrfs: (port) => [{ name: 'main', port, enabled: false }] }, false);
    expect(clientsOf(p, 'ha1').every((c) => c.status === 'disabled')).to.equal(true);
    const f = flow();
    p.ha1.engine.open('main', f);
    await new Promise((r) => setTimeout(r, 50));
    expect(p.ha2.engine.get('main', f)).to.equal(undefined);
  });
});
