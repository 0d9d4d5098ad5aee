// One failover of the linux engine on a fresh lab topology, with the agent's sync replaced by its
// simplest form (every established conntrack of ha1's engine upserted into ha2's engine). The
// gateway addresses are VRRP's: keepalived in both routers through ha/vrrp's VrrpController
// (VRRPv3, 100 ms adverts, ha1 priority 200, ha2 100); ha2's lan instance controls HA group g1,
// whose state drives its engine's role.
// Used by the lab failover test, `npm run lab` and the benchmark.
import type { ConntrackEntry } from '../fastpath/engine.js';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import type { HaRole } from '../fastpath/engine.js';
import { VrrpController } from '../ha/vrrp/vrrp-controller.js';
import type { VrfVrrpConfig } from '../ha/vrrp/keepalived-config.js';
import { LabConnections } from './lab-connections.js';
import { LAB, LabTopology, labVrfConfig } from './lab-topology.js';

/** The routers' VRRP: the lan and wan gateway addresses, 100 ms adverts; lan controls HA group g1. */
function vrrpConfig(priority: number, routerId: string): VrfVrrpConfig {
  const instance = (name: string, vrid: number, address: string, haGroup?: string) => ({
    name, linkInterface: name, vrid, priority, virtualAddresses: [address], advertIntervalCs: 10, preempt: true, haGroup,
  });
  return {
    vrf: 'main', enabled: true, routerId,
    instances: [instance('lan', LAB.vrid.lan, LAB.lanGateway, 'g1'), instance('wan', LAB.vrid.wan, LAB.wanGateway)],
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface FailoverResult {
  before: number;
  after: number;
  resets: number;
  synced: number;
  /** From the kill of ha1 to the first answer of data sent at the kill (-1: none answered). */
  outageMs: number;
  /** From the kill to the last connection's answer (-1: none answered). */
  allAnsweredMs: number;
  /** From the kill to ha2's engine being master (VRRP's election, then the engine's switch). */
  takeoverMs: number;
  /** One ping round over all connections before the kill (the time to answer them all at all). */
  pingRoundMs: number;
}

export async function failoverRun(withSync: boolean, connections: number, log: (line: string) => void = () => undefined): Promise<FailoverResult> {
  const lab = new LabTopology('fo');
  const engines: LinuxEngine[] = [];
  const opened: LabConnections[] = [];
  const vrrp: VrrpController[] = [];
  try {
    lab.build();
    log(`topology up (namespaces ${lab.prefix}-*)`);
    const ha1 = new LinuxEngine({ namespaceOf: () => lab.ns.ha1 });
    const ha2 = new LinuxEngine({ namespaceOf: () => lab.ns.ha2 });
    engines.push(ha1, ha2);
    for (const engine of [ha1, ha2]) {
      await engine.prepareVrf(labVrfConfig());
      await engine.applyVrf('main', labVrfConfig());
    }
    await ha2.setRole('main', 'backup');
    // VRRP (ha/vrrp: keepalived in each router's namespace): ha1 wins the election; on ha2 the
    // lan instance controls HA group g1, whose state drives the engine's role (rule 11).
    let ha2Role: Promise<void> = Promise.resolve();
    let ha2MasterAt = 0;
    const ha1Vrrp = new VrrpController({ setVrrpState: () => undefined }, { netnsOf: () => lab.ns.ha1 });
    const ha2Vrrp = new VrrpController({
      setVrrpState: (_group: string, state: HaRole | undefined) => {
        const role = state ?? 'backup';
        ha2Role = ha2Role.then(() => ha2.setRole('main', role)).then(() => {
          ha2MasterAt = role === 'master' ? Date.now() : 0;
        });
      },
    }, { netnsOf: () => lab.ns.ha2 });
    vrrp.push(ha1Vrrp, ha2Vrrp);
    await ha1Vrrp.apply([vrrpConfig(200, LAB.routers.ha1.sync)]);
    await ha2Vrrp.apply([vrrpConfig(100, LAB.routers.ha2.sync)]);
    await until(() => ['lan', 'wan'].every((i) => ha1Vrrp.instanceState('main', i) === 'MASTER' && ha2Vrrp.instanceState('main', i) === 'BACKUP'),
      'ha1 to be VRRP master and ha2 backup on both sides', 15_000);
    await ha2Role;
    log('VRRP: ha1 is master and holds the gateway addresses, ha2 is backup');

    // The stand-in for sync: established conntracks go to the backup in batches.
    const pending: ConntrackEntry[] = [];
    let flushing = Promise.resolve();
    if (withSync) {
      ha1.onEvent((ev) => {
        if (ev.kind !== 'established' && ev.kind !== 'update') return;
        pending.push(ev.entry);
        flushing = flushing.then(() => (pending.length ? ha2.upsert(pending.splice(0)) : 0)).then(() => undefined);
      });
    }

    log(`opening ${connections} connections client -> ha1 -> server`);
    const conns = await LabConnections.open(lab, connections);
    opened.push(conns);
    const ping = (timeoutMs: number) => conns.ping(timeoutMs);
    const pingStarted = Date.now();
    const before = (await ping(10_000 + connections)).ok;
    const pingRoundMs = Date.now() - pingStarted;
    if (withSync) {
      await until(() => ha2.counters('main').synced >= connections, `${connections} synced conntracks on ha2`, 20_000 + connections);
      await flushing;
    }
    const synced = ha2.counters('main').synced;
    log(`${before} connections carry data; ${synced} conntracks on ha2; killing ha1`);

    // ha1 dies: links down, agent gone. Every connection sends at once (TCP retransmits until a
    // router forwards again); ha2 takes the gateway addresses and becomes master.
    const killedAt = Date.now();
    lab.cutDataLinks('ha1');
    await ha1.close();
    // TCP retransmits within a few seconds: the control run needs no long wait to show its losses.
    const afterPing = ping(withSync ? 15_000 + connections : 5_000);
    await until(() => ha2MasterAt >= killedAt, 'ha2 to become VRRP master and its engine master', 15_000);
    await ha2Role;
    const takeoverMs = ha2MasterAt - killedAt;
    const after = await afterPing;
    const outageMs = after.firstMs < 0 ? -1 : after.sentAt - killedAt + after.firstMs;
    const allMs = after.lastMs < 0 ? -1 : after.sentAt - killedAt + after.lastMs;
    log(`after the failover ${after.ok} of ${connections} connections answered: first ${outageMs} ms, all ${allMs} ms after the kill`);
    return { before, after: after.ok, resets: after.reset, synced, outageMs, allAnsweredMs: allMs, takeoverMs, pingRoundMs };
  } finally {
    for (const conns of opened) conns.close();
    for (const controller of vrrp) await controller.close();
    for (const engine of engines) await engine.close();
    await lab.teardown();
  }
}

