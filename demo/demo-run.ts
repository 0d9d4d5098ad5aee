// The demo scenario (see demo.ts), kept importable so a test can run it.
import { createServer } from 'node:net';
import type { ConntrackEntry } from '../fastpath/engine.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';
import { TCP_ACK, Verdict } from '../fastpath/soft/vrf-dataplane.js';
import { FlowGenerator } from '../fastpath/traffic/flow-generator.js';
import { createSubsystems, type SyncParts } from '../ha/ha-parts.js';
import type { ConfigJson } from '../core/subsystem.js';

type Json = Record<string, unknown>;

export interface DemoOptions {
  /** New flows per second on ha1 and for how long (ms). */
  rate?: number;
  trafficMs?: number;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A node's whole configuration, as the commit transaction hands it over (defaults spelled out). */
export function demoConfig(self: string, peer: string, port: number, state: 'master' | 'backup'): ConfigJson {
  return {
    'tandem-system:system': { 'fast-path': { engine: 'soft', limits: { 'cg-nat': { 'nb-event-threads': 2 }, conntrack: { max: 1048576 } } } },
    'tandem-ha:ha': { group: [{ name: 'ha-group1', state }] },
    'tandem-network-profile:network-profile': [{
      name: 'mirrored', type: 'tcp-fast-path', 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': true },
    }],
    'tandem-vrf:vrf': [{
      name: 'main',
      'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true },
      'tandem-virtual-service:virtual-service': [{
        name: 'web', vip: '192.0.2.1', port: 80, protocol: 'tcp', 'network-profile': 'mirrored', persistence: 'none',
        'pool-member': [{ address: '198.51.100.10', port: 8080, weight: 1 }, { address: '198.51.100.11', port: 8080, weight: 1 }],
      }],
      'tandem-conntrack:network-stack': {
        'fast-path': {
          conntrack: {
            timeouts: {
              tcp: { 'syn-sent': 120, 'syn-recv': 60, established: 432000, 'fin-wait': 120, 'close-wait': 60, 'last-ack': 30, 'time-wait': 120, close: 10, undefined: 10 },
              udp: 120,
              icmp: 30,
            },
            'ha-delays': { tcp: { synchronization: 0 }, udp: { synchronization: 0 }, icmp: { synchronization: 0 } },
          },
        },
      },
      'tandem-ha-fp-conntrack:ha-fp-conntrack': {
        enabled: true,
        peer: [{ name: 'peer1', source: self, address: peer, port }],
        'listen-ha-group': 'ha-group1',
        'shared-secret': 'demo-shared-secret-change-me',
      },
    }],
  };
}

interface DemoNode {
  name: string;
  engine: SoftEngine;
  parts: SyncParts;
  notifications: Json[];
}

async function startNode(name: string, config: ConfigJson): Promise<DemoNode> {
  const engine = await SoftEngine.create({ workers: 2 });
  const parts = createSubsystems(engine, { nodeId: name, backoffMinMs: 50, backoffMaxMs: 500 });
  const notifications: Json[] = [];
  parts.attachNotify((n) => notifications.push(n));
  await commit({ name, engine, parts, notifications }, {}, config);
  return { name, engine, parts, notifications };
}

/** What the commit transaction does with the engine and the sync/ha subsystems for this config. */
async function commit(node: DemoNode, oldConfig: ConfigJson, newConfig: ConfigJson): Promise<void> {
  const vrf = (newConfig['tandem-vrf:vrf'] as Json[])[0] as Json;
  const profiles = newConfig['tandem-network-profile:network-profile'] as Json[];
  await node.engine.applyVrf('main', { name: 'main', json: vrf, networkProfiles: profiles });
  const ctx = { id: 1, oldConfig, newConfig };
  for (const s of node.parts.subsystems) {
    const errors = await s.prepare(ctx);
    if (errors.length) throw new Error(`${s.name}: ${errors.map((e) => e.message).join('; ')}`);
  }
  for (const s of node.parts.subsystems) await s.apply(ctx);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function entries(engine: SoftEngine): Promise<ConntrackEntry[]> {
  const out: ConntrackEntry[] = [];
  await engine.dump('main', (b) => {
    out.push(...b);
  });
  return out;
}

export async function runDemo(print: (line: string) => void, opts: DemoOptions = {}): Promise<Record<string, number>> {
  const port = await freePort();
  const rate = opts.rate ?? 20000;
  const trafficMs = opts.trafficMs ?? 3000;
  print(`tandem demo: ha1 (127.0.0.1, master) and ha2 (127.0.0.2, backup), soft engine, 2 workers, sync port ${port}`);
  const c1 = demoConfig('127.0.0.1', '127.0.0.2', port, 'master');
  const c2 = demoConfig('127.0.0.2', '127.0.0.1', port, 'backup');
  const ha1 = await startNode('ha1', c1);
  const ha2 = await startNode('ha2', c2);
  try {
    await until(() => ha1.parts.service.ready() && ha2.parts.service.ready(), 'sync connections', 10000);
    print('[1/5] sync connections up: npf_event0 and npf_event1 in each direction, authenticated');

    const gen = new FlowGenerator(ha1.engine, {
      vrf: 'main', rate, concurrency: rate * 10, lifetimeMs: { min: 60000, max: 120000 }, packetsPerSecond: 0.2, mix: { tcp: 8, udp: 2 },
      servers: [{ address: '192.0.2.1', port: 80 }, { address: '192.0.2.2', port: 443 }, { address: '192.0.2.3', port: 53 }],
    });
    print(`[2/5] traffic on ha1: ${rate} new flows/s (80% TCP, 20% UDP) for ${trafficMs / 1000} s, part of them to virtual service web (mirrored)`);
    const t0 = Date.now();
    let nextReport = t0 + 500;
    for (let i = 0; i < 10000 && Date.now() - t0 < trafficMs; i++) {
      await gen.step();
      await sleep(20);
      if (Date.now() >= nextReport) {
        nextReport += 500;
        const v = ha1.parts.service.vrfs.get('main');
        print(`      ${((Date.now() - t0) / 1000).toFixed(1)} s: ha1 conntracks ${ha1.engine.counters('main').conntracks}, synced ${v?.syncedCount()}, ha2 holds ${ha2.engine.counters('main').conntracks}`);
      }
    }
    await ha1.engine.flush();
    const v1 = ha1.parts.service.vrfs.get('main');
    await until(() => (v1?.pendingCount() ?? 1) === 0 && ha2.engine.counters('main').conntracks === v1?.syncedCount(), 'ha2 to catch up', 30000);
    const synced = v1?.syncedCount() ?? 0;
    let wire = 0;
    for (const c of v1?.clientStats() ?? []) wire += c.stats.bytesOut;
    let mirrorActive = 0;
    let mirrorStandby = -1;
    for (let i = 0; i < 250 && mirrorActive !== mirrorStandby; i++) { // the workers' counters settle (bounded: 5 s)
      if (i > 0) await sleep(20);
      mirrorActive = (await ha1.engine.virtualServiceStats('main')).get('web')?.mirrorConnListOnActive ?? 0;
      mirrorStandby = (await ha2.engine.virtualServiceStats('main')).get('web')?.mirroredConnectionsOnStandby ?? 0;
    }
    print(`[3/5] ha2 holds all ${synced} synchronised conntracks (ha1 has ${ha1.engine.counters('main').conntracks}; not-yet-established ones are not synchronised)`);

    const rpc = ha1.parts.rpcProviders[0];
    const reply = await rpc?.invoke({ vrf: 'main' });
    print(`      ha-fp-conntrack-synchronization vrf main -> "${String(reply?.['message'])}"`);
    await until(() => ha1.notifications.some((n) => 'tandem-ha-fp-conntrack:manual-synchronization-complete' in n), 'manual synchronization', 30000);
    const manual = ha1.notifications.find((n) => 'tandem-ha-fp-conntrack:manual-synchronization-complete' in n)?.['tandem-ha-fp-conntrack:manual-synchronization-complete'] as Json;
    print(`      manual synchronization complete: ${String(manual['count'])} conntracks in ${String(manual['duration'])} ms`);

    const tf = performance.now();
    await commit(ha1, c1, demoConfig('127.0.0.1', '127.0.0.2', port, 'backup'));
    await commit(ha2, c2, demoConfig('127.0.0.2', '127.0.0.1', port, 'master'));
    const failoverMs = performance.now() - tf;
    print(`[4/5] planned failover (ha-group1 state edited on both nodes) in ${failoverMs.toFixed(1)} ms: ha1 ${ha1.engine.role('main')}, ha2 ${ha2.engine.role('main')}`);
    const v2 = ha2.parts.service.vrfs.get('main');
    await v2?.resyncIdle();
    const held = (await entries(ha2.engine)).filter((e) => e.orig.proto === 'tcp' && e.state === 'established');
    const verdicts = await ha2.engine.inject('main', held.map((e) => ({ flow: e.orig, flags: TCP_ACK })));
    const forwarded = verdicts.filter((v) => v === Verdict.Forward).length;
    await until(() => ha1.engine.counters('main').synced >= held.length, 'ha1 to hold the conntracks as backup', 30000);
    const blocked = (await ha1.engine.inject('main', held.slice(0, 1000).map((e) => ({ flow: e.orig, flags: TCP_ACK })))).filter((v) => v === Verdict.DropBackup).length;
    print(`      ha2 forwards ${forwarded} of ${held.length} established TCP connections it never saw the handshake of; ha1 (backup) blocks ${blocked} of 1000 sampled`);

    const vs1 = (await ha1.engine.virtualServiceStats('main')).get('web');
    const vs2 = (await ha2.engine.virtualServiceStats('main')).get('web');
    const resync = v2?.lastFullResync;
    print('[5/5] summary');
    print(`      conntracks synchronised ha1 -> ha2: ${synced} (${(wire / Math.max(1, synced)).toFixed(1)} bytes each on the wire before the manual synchronisation, framing and handshakes included)`);
    print(`      virtual service web before the failover: mirror-conn-list-on-active ${mirrorActive} on ha1, mirrored-connections-on-standby ${mirrorStandby} on ha2 (${mirrorActive === mirrorStandby ? 'match' : 'MISMATCH'})`);
    print(`      and after it: ha2 mirror-conn-list-on-active ${vs2?.mirrorConnListOnActive ?? 0}, ha1 mirrored-connections-on-standby ${vs1?.mirroredConnectionsOnStandby ?? 0}`);
    print(`      full resync ha2 -> ha1 after the failover: ${resync?.count ?? 0} conntracks in ${resync?.duration ?? 0} ms`);
    print(`      failover: ${failoverMs.toFixed(1)} ms; ${forwarded}/${held.length} connections kept`);
    return { synced, forwarded, held: held.length, mirrorActive, mirrorStandby, resyncCount: resync?.count ?? 0, resyncMs: resync?.duration ?? 0, failoverMs };
  } finally {
    for (const n of [ha1, ha2]) {
      await n.parts.close();
      await n.engine.close();
    }
  }
}
