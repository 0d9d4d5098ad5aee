// Two sync stacks (engine + HaService + SyncService following it) on loopback, ha1 on 127.0.0.1 and ha2 on 127.0.0.2,
// configured with the RFC 7951 JSON the commit transaction would hand over, sharing one manual
// clock for conntrack time (network timers stay real: sockets need real time anyway).
import { createServer } from 'node:net';
import { ManualClock } from '../../fastpath/clock.js';
import type { DataplaneEngine, FlowTuple } from '../../fastpath/engine.js';
import { SyncService, type ServiceNotification } from '../../sync/sync-service.js';
import { HaService } from '../../ha/ha-service.js';
import type { HaGroupChange } from '../../ha/ha-groups.js';
import { MemoryEngine } from './memory-engine.js';

type Json = Record<string, unknown>;

export const SECRET = 'a-shared-secret-of-the-pair';

export interface VrfOpts {
  name: string;
  port: number;
  group?: string;
  secret?: string;
  delays?: { tcp?: number; udp?: number; icmp?: number };
  grace?: { tcp?: number; udp?: number; icmp?: number };
  tcpUndefined?: number;
  tcpEstablished?: number;
  firewall?: Json;
  virtualServices?: Array<{ name: string; profile: string }>;
  enabled?: boolean;
}

export interface NodeOpts {
  source: string;
  address: string;
  states: Record<string, 'master' | 'backup'>;
  vrfs: VrfOpts[];
  workers?: number;
  profiles?: Array<{ name: string; type: string; mirror: boolean }>;
}

/** A full configuration as printed with defaults (values of the YANG defaults spelled out). */
export function nodeConfig(o: NodeOpts): Json {
  const delay = (v: VrfOpts, p: 'tcp' | 'udp' | 'icmp'): Json => ({
    synchronization: v.delays?.[p] ?? 0,
    ...(v.grace?.[p] === undefined ? {} : { 'undefined-grace-period': v.grace[p] }),
  });
  return {
    'tandem-system:system': { 'fast-path': { engine: 'soft', limits: { 'cg-nat': { 'nb-event-threads': o.workers ?? 2 }, conntrack: { max: 1048576 } } } },
    'tandem-ha:ha': { group: Object.entries(o.states).map(([name, state]) => ({ name, state })) },
    'tandem-network-profile:network-profile': (o.profiles ?? []).map((p) => ({
      name: p.name, type: p.type, 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': p.mirror },
    })),
    'tandem-vrf:vrf': o.vrfs.map((v) => ({
      name: v.name,
      ...(v.firewall ? { 'tandem-firewall:firewall': v.firewall } : {}),
      'tandem-virtual-service:virtual-service': (v.virtualServices ?? []).map((s) => ({ name: s.name, 'network-profile': s.profile })),
      'tandem-conntrack:network-stack': {
        'fast-path': {
          conntrack: {
            timeouts: {
              tcp: {
                'syn-sent': 120, 'syn-recv': 60, established: v.tcpEstablished ?? 432000, 'fin-wait': 120, 'close-wait': 60,
                'last-ack': 30, 'time-wait': 120, close: 10, undefined: v.tcpUndefined ?? 10,
              },
              udp: 120,
              icmp: 30,
            },
            'ha-delays': { tcp: delay(v, 'tcp'), udp: delay(v, 'udp'), icmp: delay(v, 'icmp') },
          },
        },
      },
      'tandem-ha-fp-conntrack:ha-fp-conntrack': {
        enabled: v.enabled ?? true,
        peer: [{ name: 'peer1', source: o.source, address: o.address, port: v.port }],
        'listen-ha-group': v.group ?? 'g1',
        ...(v.secret === '' ? {} : { 'shared-secret': v.secret ?? SECRET }),
      },
    })),
  };
}

/** A TCP port free on loopback right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Poll `cond` (real time, bounded) until it holds; throws with `what` when it does not in time. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100000; i++) {
    if (cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

export interface SyncNode<E extends DataplaneEngine = DataplaneEngine> {
  name: string;
  engine: E;
  ha: HaService;
  service: SyncService;
  config: Json;
  notifications: NodeNotification[];
}

/** Sync events and HA group changes, as one node saw them. */
export type NodeNotification = ServiceNotification | ({ kind: 'ha-group-state-change' } & HaGroupChange);

export async function startNode<E extends DataplaneEngine>(name: string, engine: E, clock: ManualClock, config: Json, queueLimit?: number): Promise<SyncNode<E>> {
  const ha = new HaService(engine);
  const service = new SyncService(engine, { roles: ha, clock, nodeId: name, backoffMinMs: 20, backoffMaxMs: 200, keepaliveMs: 500, ...(queueLimit ? { queueLimit } : {}) });
  const notifications: NodeNotification[] = [];
  service.onNotification((n) => notifications.push(n));
  ha.onGroupChange((c) => notifications.push({ kind: 'ha-group-state-change', ...c }));
  for (const v of (config['tandem-vrf:vrf'] as Json[])) {
    await engine.applyVrf(String(v['name']), { name: String(v['name']), json: v });
  }
  await ha.apply(config);
  await service.applySync(config);
  return { name, engine, ha, service, config, notifications };
}

/** Reconfigure a node (what a NETCONF commit does to the ha and sync subsystems). */
export async function reconfigure(node: SyncNode, config: Json): Promise<void> {
  node.config = config;
  await node.ha.apply(config);
  await node.service.applySync(config);
}

export interface PairOpts {
  workers?: number;
  vrfs?: (port: number) => VrfOpts[];
  profiles?: NodeOpts['profiles'];
  queueLimit?: number;
  ha2Secret?: string;
}

export class Pair {
  readonly clock = new ManualClock(1_000_000);
  ha1!: SyncNode<MemoryEngine>;
  ha2!: SyncNode<MemoryEngine>;
  port = 0;
  opts: PairOpts = {};

  ha1Config(states: Record<string, 'master' | 'backup'> = { g1: 'master' }): Json {
    return nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states, vrfs: this.vrfs(), workers: this.opts.workers, profiles: this.opts.profiles });
  }

  ha2Config(states: Record<string, 'master' | 'backup'> = { g1: 'backup' }): Json {
    const vrfs = this.vrfs().map((v) => (this.opts.ha2Secret !== undefined ? { ...v, secret: this.opts.ha2Secret } : v));
    return nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states, vrfs, workers: this.opts.workers, profiles: this.opts.profiles });
  }

  private vrfs(): VrfOpts[] {
    return this.opts.vrfs ? this.opts.vrfs(this.port) : [{ name: 'main', port: this.port }];
  }

  async start(opts: PairOpts = {}, waitUp = true): Promise<this> {
    this.opts = opts;
    this.port = await freePort();
    const w = opts.workers ?? 2;
    this.ha1 = await startNode('ha1', new MemoryEngine(this.clock, w), this.clock, this.ha1Config(), opts.queueLimit);
    this.ha2 = await startNode('ha2', new MemoryEngine(this.clock, w), this.clock, this.ha2Config(), opts.queueLimit);
    if (waitUp) await this.waitUp();
    return this;
  }

  async waitUp(): Promise<void> {
    await waitFor(() => this.ha1.service.ready() && this.ha2.service.ready(), 'every sync connection established', 20000);
    // The resyncs that follow the connections (empty here) are sent before a test starts counting.
    for (const n of [this.ha1, this.ha2]) for (const v of n.service.vrfs.values()) await v.resyncIdle();
    await waitFor(() => [this.ha1, this.ha2].every((n) => [...n.service.vrfs.values()].every((v) => v.pendingCount() === 0)), 'initial resyncs flushed');
  }

  async close(): Promise<void> {
    for (const n of [this.ha1, this.ha2]) {
      if (!n) continue;
      await n.service.close();
      await n.engine.close();
    }
  }
}

let nextHost = 1;
/** A distinct TCP flow (client 10.x.y.z -> server 192.0.2.1:80), different source per call. */
export function flow(proto: 'tcp' | 'udp' | 'icmp' = 'tcp', dport = 80): FlowTuple {
  const n = nextHost++;
  const src = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
  return { proto, src, dst: '192.0.2.1', sport: 1024 + (n % 60000), dport: proto === 'icmp' ? 0 : dport };
}
