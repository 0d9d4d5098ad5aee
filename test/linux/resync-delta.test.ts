// Delta resync between two linux engines (each in a network namespace of its own, the agent's HA
// and sync services over loopback, the sync link through a TCP relay the test cuts and restores,
// so both nodes keep all their state): after a short outage the master sends only what changed
// while the link was down (a new NAT binding, a new TCP state, conntracks ended, conntracks new)
// and the backup keeps the rest (docs/ha-sync.md § Full resync). The full path is still taken
// when the backup's table epoch changed (its sync restarted) or the master lost kernel events.
import { expect } from 'chai';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { LinuxEngine } from '../../fastpath/linux/linux-engine.js';
import { HaService } from '../../ha/ha-service.js';
import { SyncService } from '../../sync/sync-service.js';
import type { VrfSync } from '../../sync/vrf-sync.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { labVrfConfig } from '../../lab/lab-topology.js';
import { freePort, nodeConfig } from '../sync/two-nodes.js';
import { kernelTable, keyOf, snatWrite, tableDifferences, until } from './resync-tables.js';
import { TcpLinkProxy } from '../helpers/tcp-link-proxy.js';

type Json = Record<string, unknown>;

const N = 300;
const CHANGED = 20;

describe('linux: delta resync after a short outage of the sync link (issue 11 item 4)', function () {
  this.timeout(180_000);
  const fx = new NamespaceFixture('rd');
  let services: SyncService[] = [];
  let engines: LinuxEngine[] = [];
  let proxies: TcpLinkProxy[] = [];
  let writer: ConntrackNetlink | undefined;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
  });

  afterEach(async () => {
    writer?.close();
    writer = undefined;
    for (const p of proxies) await p.close();
    for (const s of services) await s.close().catch(() => undefined);
    for (const e of engines) await e.close().catch(() => undefined);
    services = [];
    engines = [];
    proxies = [];
    await fx.cleanup();
  });

  /**
   * Two nodes whose sync connections go through relays: ha1 (127.0.0.1) reaches ha2 at 127.0.0.3,
   * relayed from 127.0.0.4 (ha2's peer address) to ha2's 127.0.0.2; ha2 reaches ha1 at 127.0.0.4,
   * relayed from 127.0.0.3 (ha1's peer address) to ha1's 127.0.0.1.
   */
  async function pair(tag: string, ha1Options: { eventBufferBytes?: number } = {}) {
    const nsA = fx.add(`${tag}1`);
    const nsB = fx.add(`${tag}2`);
    const ha1 = new LinuxEngine({ namespaceOf: () => nsA, ...ha1Options });
    const ha2 = new LinuxEngine({ namespaceOf: () => nsB });
    engines.push(ha1, ha2);
    const port = await freePort();
    proxies = [new TcpLinkProxy('127.0.0.3', port, '127.0.0.2', port, '127.0.0.4'), new TcpLinkProxy('127.0.0.4', port, '127.0.0.1', port, '127.0.0.3')];
    for (const p of proxies) await p.restore();
    const vrfs = (enabled: boolean) => [{ name: 'main', port, enabled }];
    const config1 = nodeConfig({ source: '127.0.0.1', address: '127.0.0.3', states: { g1: 'master' }, vrfs: vrfs(true) });
    const config2 = (enabled: boolean): Json => nodeConfig({ source: '127.0.0.2', address: '127.0.0.4', states: { g1: 'backup' }, vrfs: vrfs(enabled) });
    for (const [engine, config, name] of [[ha1, config1, 'ha1'], [ha2, config2(true), 'ha2']] as const) {
      await engine.prepareVrf(labVrfConfig());
      await engine.applyVrf('main', labVrfConfig());
      const ha = new HaService(engine);
      const service = new SyncService(engine, { roles: ha, nodeId: name });
      services.push(service);
      await ha.apply(config);
      await service.applySync(config);
    }
    const [s1, s2] = services as [SyncService, SyncService];
    await until(() => s1.ready() && s2.ready(), () => 'the sync connections through the relays', 30_000);
    writer = new ConntrackNetlink({ namespace: nsA });
    const w = writer;
    const vs1 = (): VrfSync => s1.vrfs.get('main') as VrfSync;
    const clients1 = () => vs1().peers.flatMap((p) => p.clients);
    let a = new Map<string, string>();
    let b = new Map<string, string>();
    const converged = async (count: number, what: string): Promise<Map<string, string>> => {
      // The last time ha1 held `count` and ha2 differed: what differed then (the tables can change
      // before the timeout, e.g. conntracks that expire, and hide it).
      let lastDiffering = 'never';
      await until(async () => {
        [a, b] = [await kernelTable(nsA), await kernelTable(nsB)];
        const diff = tableDifferences(a, b);
        if (a.size === count && diff.length > 0) lastDiffering = `ha2 ${b.size}, ${diff.length} differ: ${diff.slice(0, 3).join('; ')}`;
        return a.size === count && diff.length === 0;
      }, () => `${what}: ha2's kernel to equal ha1's ${count} (ha1 holds ${a.size}, ha2 ${b.size}; ${tableDifferences(a, b).length} differ: `
        + `${tableDifferences(a, b).slice(0, 3).join('; ')}; when ha1 last held ${count}: ${lastDiffering})`, 60_000);
      return b;
    };
    const cut = async (): Promise<void> => {
      for (const p of proxies) await p.cut();
      await until(() => clients1().every((c) => c.status !== 'established'), () => 'all of ha1\'s sync connections to go down', 30_000);
    };
    const restore = async (): Promise<void> => {
      for (const p of proxies) await p.restore();
    };
    /** While the link is down, on ha1: new NAT bindings, new states, ended, new (base: first index). */
    const change = async (base: number): Promise<{ rebound: number[]; restated: number[]; ended: number[]; fresh: number[] }> => {
      const rebound = Array.from({ length: CHANGED }, (_, k) => base + k);
      const restated = Array.from({ length: CHANGED }, (_, k) => base + CHANGED + k);
      const ended = Array.from({ length: CHANGED }, (_, k) => base + 2 * CHANGED + k);
      const fresh = Array.from({ length: CHANGED }, (_, k) => 1000 + base + k);
      await w.delete(rebound.map((i) => snatWrite(i).orig));
      expect((await w.create(rebound.map((i) => snatWrite(i, 40000 + i)))).failures).to.deep.equal([]);
      expect((await w.update(restated.map((i) => ({ ...snatWrite(i), state: 'close-wait' as const, timeout: 60 })))).failures).to.deep.equal([]);
      await w.delete(ended.map((i) => snatWrite(i).orig));
      expect((await w.create(fresh.map((i) => snatWrite(i)))).failures).to.deep.equal([]);
      return { rebound, restated, ended, fresh };
    };
    const checkChanged = (b: Map<string, string>, c: Awaited<ReturnType<typeof change>>): void => {
      for (const i of c.rebound) expect(b.get(keyOf(snatWrite(i).orig)), 'new NAT binding').to.equal(`${keyOf(snatWrite(i, 40000 + i).reply)} established`);
      for (const i of c.restated) expect(b.get(keyOf(snatWrite(i).orig)), 'new state').to.match(/ close-wait$/);
      for (const i of c.ended) expect(b.has(keyOf(snatWrite(i).orig)), 'ended').to.equal(false);
      for (const i of c.fresh) expect(b.has(keyOf(snatWrite(i).orig)), 'new').to.equal(true);
    };
    return { ha1, ha2, s1, s2, vs1, clients1, config2, w, converged, cut, restore, change, checkChanged };
  }

  it('after an outage, only what changed is sent, and the backup ends equal to the master', async () => {
    const p = await pair('d');
    expect((await p.w.create(Array.from({ length: N }, (_, i) => snatWrite(i)))).failures).to.deep.equal([]);
    await p.converged(N, 'the first sync');
    await p.vs1().resyncIdle();
    const deltasBefore = p.vs1().deltaResyncs;
    const fullBefore = p.vs1().lastFullResync?.time;
    const unchangedBefore = (await p.ha2.counterDetail('main')).resyncUnchanged;
    const receivedBefore = p.s2.vrfs.get('main')?.receive ?? 0;

    await p.cut();
    const c = await p.change(0);
    // ha1 read the events of all of it (80 conntracks changed) before the link returns.
    await until(() => p.clients1().reduce((n, x) => n + x.delta.size, 0) === 4 * CHANGED,
      () => `ha1's delta records to hold the ${4 * CHANGED} changed conntracks (${p.clients1().map((x) => x.delta.size).join(', ')})`, 30_000);
    await p.restore();
    const b = await p.converged(N, 'the delta resync');
    p.checkChanged(b, c);
    await p.vs1().resyncIdle();
    expect(p.vs1().deltaResyncs - deltasBefore, 'one delta resync per connection').to.equal(p.clients1().length);
    expect(p.vs1().lastFullResync?.time, 'no full resync').to.equal(fullBefore);
    expect((await p.ha2.counterDetail('main')).resyncUnchanged, 'no full resync reached ha2').to.equal(unchangedBefore);
    // The delta carried the 80 changes (60 records, and 40 deletes: 20 ended, 20 rebound) and nothing else.
    expect((p.s2.vrfs.get('main')?.receive ?? 0) - receivedBefore).to.equal(3 * CHANGED + 2 * CHANGED);
    expect(p.s2.vrfs.get('main')?.receiveError ?? -1).to.equal(0);

    // A second outage: the delta record was armed again by the delta's acknowledgement.
    await p.cut();
    const c2 = await p.change(100);
    await until(() => p.clients1().reduce((n, x) => n + x.delta.size, 0) === 4 * CHANGED, () => 'the second outage\'s changes', 30_000);
    await p.restore();
    p.checkChanged(await p.converged(N, 'the second delta resync'), c2);
    await p.vs1().resyncIdle();
    expect(p.vs1().deltaResyncs - deltasBefore).to.equal(2 * p.clients1().length);
    expect(p.vs1().lastFullResync?.time, 'still no full resync').to.equal(fullBefore);
  });

  it('a backup whose sync restarted while apart (new table epoch) gets a full resync', async () => {
    const p = await pair('e');
    expect((await p.w.create(Array.from({ length: N }, (_, i) => snatWrite(i)))).failures).to.deep.equal([]);
    await p.converged(N, 'the first sync');
    await p.vs1().resyncIdle();
    const deltasBefore = p.vs1().deltaResyncs;
    const fullBefore = p.vs1().lastFullResync?.time;
    await p.cut();
    const c = await p.change(0);
    await until(() => p.clients1().reduce((n, x) => n + x.delta.size, 0) === 4 * CHANGED, () => 'ha1\'s delta records', 30_000);
    // ha2's sync restarts (as an agent restart would): it cannot vouch for what it held.
    await p.s2.applySync(p.config2(false));
    await p.s2.applySync(p.config2(true));
    await p.restore();
    p.checkChanged(await p.converged(N, 'the full resync'), c);
    await p.vs1().resyncIdle();
    expect(p.vs1().deltaResyncs, 'no delta resync').to.equal(deltasBefore);
    expect(p.vs1().lastFullResync?.time, 'a full resync ran').to.not.equal(fullBefore);
  });

  it('a master that lost kernel events while apart sends a full resync', async () => {
    // A 4 KiB event buffer: a burst of creates overruns it (the kernel drops events, counted).
    const p = await pair('f', { eventBufferBytes: 4096 });
    expect((await p.w.create(Array.from({ length: N }, (_, i) => snatWrite(i)))).failures).to.deep.equal([]);
    await p.converged(N, 'the first sync');
    await p.vs1().resyncIdle();
    const deltasBefore = p.vs1().deltaResyncs;
    const fullBefore = p.vs1().lastFullResync?.time;
    // Armed before the outage: without the loss, the next resync would be a delta.
    await until(() => p.clients1().every((x) => x.delta.armed), () => 'ha1\'s delta records to be armed', 30_000);
    let lastEventAt = Date.now();
    const unsubscribe = p.ha1.onEvent(() => {
      lastEventAt = Date.now();
    });
    const lostBefore = (await p.ha1.counterDetail('main')).eventsLost;
    await p.cut();
    const c = await p.change(0);
    const burst = Array.from({ length: 3000 }, (_, i) => snatWrite(2000 + i));
    for (let i = 0; i < burst.length; i += 1000) expect((await p.w.create(burst.slice(i, i + 1000))).failures).to.deep.equal([]);
    await until(async () => (await p.ha1.counterDetail('main')).eventsLost > lostBefore, () => 'ha1 to lose events in the 4 KiB buffer', 30_000);
    expect(p.clients1().every((x) => !x.delta.armed), 'every delta record disarmed by the loss').to.equal(true);
    // The burst's events still queued are read before the link returns (an event older than the
    // resync's dump, delivered after it, is the dump/event race of issue 11 item 2, not this test's):
    // no event for a second.
    await until(() => Date.now() - lastEventAt > 1000, () => 'ha1\'s event reader to go quiet', 60_000);
    await p.restore();
    const b = await p.converged(N + burst.length, 'the full resync after the loss');
    p.checkChanged(b, c);
    await p.vs1().resyncIdle();
    expect(p.vs1().deltaResyncs, 'no delta resync').to.equal(deltasBefore);
    expect(p.vs1().lastFullResync?.time, 'a full resync ran').to.not.equal(fullBefore);
    unsubscribe();
  });
});
