// Full resync between two linux engines (each in a network namespace of its own, the agent's HA and
// sync services over loopback) after the sync link was down: the backup does not write again the
// conntracks it holds exactly as the resync carries them, and everything that changed on the master
// meanwhile reaches its kernel: a new NAT binding (same original tuple, another reply tuple), a new
// TCP state, conntracks created, conntracks destroyed (removed at the resync's end).
import { expect } from 'chai';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { LinuxEngine } from '../../fastpath/linux/linux-engine.js';
import { HaService } from '../../ha/ha-service.js';
import { SyncService } from '../../sync/sync-service.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { labVrfConfig } from '../../lab/lab-topology.js';
import { freePort, nodeConfig } from '../sync/two-nodes.js';
import { kernelTable, keyOf, snatWrite, tableDifferences, until } from './resync-tables.js';

type Json = Record<string, unknown>;

const N = 300;
const CHANGED = 20;

describe('linux: a full resync writes into the backup\'s kernel only what changed (issue 11)', function () {
  this.timeout(180_000);
  const fx = new NamespaceFixture('ru');
  const services: SyncService[] = [];
  const engines: LinuxEngine[] = [];
  let writer: ConntrackNetlink | undefined;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
  });

  after(async () => {
    writer?.close();
    for (const s of services) await s.close().catch(() => undefined);
    for (const e of engines) await e.close().catch(() => undefined);
    await fx.cleanup();
  });

  it('NAT bindings and states changed while the link was down reach the backup; unchanged ones are left alone', async () => {
    const nsA = fx.add('ha1');
    const nsB = fx.add('ha2');
    const ha1 = new LinuxEngine({ namespaceOf: () => nsA });
    const ha2 = new LinuxEngine({ namespaceOf: () => nsB });
    engines.push(ha1, ha2);
    const port = await freePort();
    const vrfs = (enabled: boolean) => [{ name: 'main', port, enabled }];
    const config1 = nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, vrfs: vrfs(true) });
    const config2 = (enabled: boolean): Json => nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, vrfs: vrfs(enabled) });
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
    await until(() => s1.ready() && s2.ready(), () => 'the sync connections', 30_000);

    writer = new ConntrackNetlink({ namespace: nsA });
    const created = await writer.create(Array.from({ length: N }, (_, i) => snatWrite(i)));
    expect(created.failures).to.deep.equal([]);
    let a = new Map<string, string>();
    let b = new Map<string, string>();
    await until(async () => {
      [a, b] = [await kernelTable(nsA), await kernelTable(nsB)];
      return a.size === N && tableDifferences(a, b).length === 0;
    }, () => `ha2 to hold ha1's ${N} conntracks (${tableDifferences(a, b).length} differ)`, 60_000);

    // The link goes down (ha2's sync off: ha1's connections fail).
    await s2.applySync(config2(false));
    // Every connection down (not just one): nothing of the changes below may go out live.
    const clients1 = () => s1.vrfs.get('main')?.peers.flatMap((p) => p.clients) ?? [];
    await until(() => clients1().every((c) => c.status !== 'established'), () => 'all of ha1\'s sync connections to go down', 30_000);
    // Meanwhile on ha1: new NAT bindings (a conntrack cannot be re-bound: ended and created again
    // with the same original tuple), state changes, conntracks ended, conntracks new.
    const rebound = Array.from({ length: CHANGED }, (_, k) => k);
    const restated = Array.from({ length: CHANGED }, (_, k) => CHANGED + k);
    const ended = Array.from({ length: CHANGED }, (_, k) => 2 * CHANGED + k);
    const fresh = Array.from({ length: CHANGED }, (_, k) => N + k);
    await writer.delete(rebound.map((i) => snatWrite(i).orig));
    expect((await writer.create(rebound.map((i) => snatWrite(i, 40000 + i)))).failures).to.deep.equal([]);
    expect((await writer.update(restated.map((i) => ({ ...snatWrite(i), state: 'close-wait' as const, timeout: 60 })))).failures).to.deep.equal([]);
    await writer.delete(ended.map((i) => snatWrite(i).orig));
    expect((await writer.create(fresh.map((i) => snatWrite(i)))).failures).to.deep.equal([]);
    a = await kernelTable(nsA);
    expect(a.size).to.equal(N);
    expect(tableDifferences(a, await kernelTable(nsB)).length, 'ha2 differs while the link is down').to.equal(4 * CHANGED);

    const unchangedBefore = (await ha2.counterDetail('main')).resyncUnchanged;
    await s2.applySync(config2(true));
    await until(async () => {
      [a, b] = [await kernelTable(nsA), await kernelTable(nsB)];
      return tableDifferences(a, b).length === 0;
    }, () => `ha2's kernel to equal ha1's after the resync: ${tableDifferences(a, b).slice(0, 5).join('; ')}`, 60_000);
    for (const i of rebound) expect(b.get(keyOf(snatWrite(i).orig))).to.equal(`${keyOf(snatWrite(i, 40000 + i).reply)} established`);
    for (const i of restated) expect(b.get(keyOf(snatWrite(i).orig))).to.match(/ close-wait$/);
    for (const i of ended) expect(b.has(keyOf(snatWrite(i).orig))).to.equal(false);
    // The unchanged ones (N - 3 x CHANGED) were left as they were (live messages are not queued
    // while a connection is down: the changes came by the resync only, and were written).
    await until(async () => (await ha2.counterDetail('main')).resyncUnchanged > unchangedBefore, () => 'a resync to reach ha2', 30_000);
    const unchanged = (await ha2.counterDetail('main')).resyncUnchanged - unchangedBefore;
    expect(unchanged).to.be.at.least(N - 3 * CHANGED);
    expect(s2.vrfs.get('main')?.receiveError ?? -1).to.equal(0);
  });
});
