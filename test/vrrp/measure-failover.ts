// Measures VRRP takeover (root): time from the master's keepalived dying (SIGKILL: silence; SIGTERM:
// priority-0 advert) to the backup's HA group being master, read through its notify FIFO.
// Usage: node dist/test/vrrp/measure-failover.js [advert-interval-cs=100] [rounds=3]
// (a benchmark, not a test; the lead may move it under bench/).
import { HaGroups } from '../../ha/ha-groups.js';
import { readVrrpConfigs, type VrfVrrpConfig } from '../../ha/vrrp/keepalived-config.js';
import { VrrpController } from '../../ha/vrrp/vrrp-controller.js';
import { isRoot, ROOT_SKIP_REASON, VrrpNamespacePair } from './vrrp-namespaces.js';

interface Node {
  vrf: string;
  groups: HaGroups;
  controller: VrrpController;
}

async function main(): Promise<void> {
  if (!isRoot()) throw new Error(ROOT_SKIP_REASON);
  const advert = Number(process.argv[2] ?? 100);
  const rounds = Number(process.argv[3] ?? 3);
  if (!Number.isInteger(advert) || advert < 1 || advert > 4095) throw new Error('advert-interval: 1..4095 centiseconds');
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) throw new Error('rounds: 1..50');
  const pair = new VrrpNamespacePair();
  const vip = `${pair.subnet}.100`;
  const cfg = (vrf: string, priority: number): VrfVrrpConfig[] =>
    readVrrpConfigs({
      'tandem-vrf:vrf': [{
        name: vrf, vrrp: { enabled: true },
        interface: { vrrp: [{ name: 'gw', 'link-interface': pair.link, vrid: 42, priority, 'virtual-address': [vip], 'advert-interval': advert, preempt: true, 'ha-group': 'g' }] },
      }],
    });
  const node = (vrf: string): Node => {
    const groups = new HaGroups();
    groups.apply([{ name: 'g' }]);
    // No restart during a round: the killed side is reconfigured explicitly afterwards.
    return { vrf, groups, controller: new VrrpController(groups, { process: { backoffMinMs: 60_000, backoffMaxMs: 60_000 } }) };
  };
  const waitUntil = async (cond: () => boolean, ms = 30_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const results: Record<'sigkill' | 'sigterm', number[]> = { sigkill: [], sigterm: [] };
  let a: Node | undefined;
  let b: Node | undefined;
  try {
    pair.setup();
    a = node(pair.a);
    b = node(pair.b);
    let [master, backup] = [a, b];
    await a.controller.apply(cfg(pair.a, 150));
    await b.controller.apply(cfg(pair.b, 100));
    await waitUntil(() => master.groups.state('g') === 'master' && backup.controller.instanceState(backup.vrf, 'gw') === 'BACKUP');
    for (let i = 0; i < rounds * 2; i++) {
      const how = i % 2 === 0 ? 'sigkill' : 'sigterm';
      await new Promise((r) => setTimeout(r, 1000 + Math.random() * advert * 10));
      const ka = master.controller.keepalived(master.vrf)!;
      const child = await ka.vrrpPid();
      const t0 = performance.now();
      if (how === 'sigkill') {
        if (child !== undefined) process.kill(child, 'SIGKILL');
        process.kill(ka.pid!, 'SIGKILL');
      } else {
        process.kill(ka.pid!, 'SIGTERM');
      }
      await waitUntil(() => backup.groups.state('g') === 'master');
      results[how].push(Math.round(performance.now() - t0));
      // The old master comes back with the lower priority: the roles swap for the next round.
      await master.controller.apply([]);
      await master.controller.apply(cfg(master.vrf, 100));
      await backup.controller.apply(cfg(backup.vrf, 150));
      await waitUntil(() => backup.groups.state('g') === 'master' && master.controller.instanceState(master.vrf, 'gw') === 'BACKUP');
      [master, backup] = [backup, master];
    }
  } finally {
    await a?.controller.close();
    await b?.controller.close();
    pair.cleanup();
  }
  const median = (x: number[]): number => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)] ?? NaN;
  process.stdout.write(`${JSON.stringify({ advertIntervalCs: advert, sigkillMs: results.sigkill, sigkillMedianMs: median(results.sigkill), sigtermMs: results.sigterm, sigtermMedianMs: median(results.sigterm) })}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 1;
});
