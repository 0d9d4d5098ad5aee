// Part of `npm run bench -- linux-failover` (root): the agent's sync between two linux engines, end
// to end from ha1's kernel to ha2's kernel. ha1 (master) and ha2 (backup) each have a LinuxEngine
// on a namespace of their own, HaService and SyncService as in the agent (default tuning: 2 sync
// connections, backoff 100 ms - 5 s), the sync connections over loopback (127.0.0.1 <-> 127.0.0.2).
// A burst of n SNAT-bound conntracks is created in ha1's kernel (raw ctnetlink, not through the
// engine): ha1's engine sees their events, its sync sends them, ha2's engine writes them. Measured:
//  - burst latency: from the end of the burst in ha1's kernel to all n in ha2's kernel;
//  - loss: conntracks missing from ha2's kernel once it settles, per run (goal 0);
//  - resync after the sync link returns: ha2's sync is disabled (ha1's connections fail) and
//    enabled again; the time until ha2 has received the full resync of the n conntracks;
//  - memory: the process's RSS (both agents' sync and engines) idle and with n synced, per conntrack.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ConntrackWrite } from '../fastpath/linux/ctnetlink-codec.js';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import { HaService } from '../ha/ha-service.js';
import { SyncService } from '../sync/sync-service.js';
import { NamespaceFixture } from '../lab/namespace-fixture.js';
import { labVrfConfig } from '../lab/lab-topology.js';
import { freePort, nodeConfig } from '../test/sync/two-nodes.js';
import { SyncStageClock, type StageTimes } from './sync-stage-clock.js';
import { burstInThread } from './burst-writer-thread.js';

type Json = Record<string, unknown>;

/** n established TCP conntracks of distinct subscribers, SNATed to a pool; `salt` makes each run's tuples new. */
export function burstWrites(n: number, salt = 0): ConntrackWrite[] {
  return Array.from({ length: n }, (_, i) => ({
    orig: { proto: 'tcp' as const, src: `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: `198.51.100.${10 + (salt % 200)}`, sport: 1024 + (i % 50000), dport: 443 },
    reply: { proto: 'tcp' as const, src: `198.51.100.${10 + (salt % 200)}`, dst: `192.0.2.${i % 16}`, sport: 443, dport: 1024 + Math.floor(i / 16) % 64000 },
    state: 'established' as const,
    timeout: 7200,
  }));
}

/**
 * The conntrack count of a namespace, read every 10 ms by a helper process inside it (started
 * once, read asynchronously): polling with `conntrack -C` (spawnSync) blocked the event loop the
 * two agents share here for most of the time and made the sync look far slower than it is.
 */
class NamespaceCount {
  latest = -1;
  private readonly child: ChildProcess;

  constructor(namespace: string) {
    this.child = spawn('ip', ['netns', 'exec', namespace, 'sh', '-c',
      'while :; do cat /proc/sys/net/netfilter/nf_conntrack_count; sleep 0.01; done'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let rest = '';
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      const lines = (rest + d).split('\n');
      rest = lines.pop() ?? '';
      const last = lines.pop();
      if (last !== undefined && last !== '') this.latest = Number(last);
    });
  }

  /** A reading taken after now. */
  async fresh(): Promise<number> {
    this.latest = -1;
    while (this.latest < 0) await new Promise((r) => setTimeout(r, 5));
    return this.latest;
  }

  stop(): void {
    this.child.kill();
  }
}

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

export interface SyncPairFigures {
  conntracks: number;
  /** Per run: ms from the end of the burst in ha1's kernel to all of it in ha2's kernel (-1: never). */
  burstMs: number[];
  /**
   * Per run, ms from the end of the burst in ha1's kernel (negative: before it) until each stage
   * first moved and reached n: ha1-events (established events from ha1's engine), ha1-sent (records
   * written to ha1's sync sockets), ha2-written (records ha2's engine took), ha1-acked (records
   * ha2 acknowledged to ha1), ha2-kernel (ha2's conntrack count, read every ~10 ms).
   */
  burstStages: Record<string, StageTimes>[];
  /** The same for the resync, from the sync link's return; ha1-connections: all of ha1's sync connections up. */
  resyncStages: Record<string, StageTimes>;
  /** Per run: conntracks missing from ha2's kernel once settled. */
  missing: number[];
  /** ha2's receive-error after the runs. */
  receiveError: number;
  /** ms from the sync link's return to the full resync received and written by ha2 (-1: not within 30 s). */
  resyncMs: number;
  resyncReceived: number;
  rssIdleBytes: number;
  rssSyncedBytes: number;
  rssBytesPerSyncedConntrackBothNodes: number;
  heapBytesPerSyncedConntrackBothNodes: number;
}

export async function syncPairRun(n: number, runs: number, log: (line: string) => void): Promise<SyncPairFigures> {
  const fx = new NamespaceFixture('sp');
  const nsA = fx.add('ha1');
  const nsB = fx.add('ha2');
  const ha1 = new LinuxEngine({ namespaceOf: () => nsA });
  const ha2 = new LinuxEngine({ namespaceOf: () => nsB });
  const services: SyncService[] = [];
  const count = (ns: string): number => Number(fx.exec(ns, 'conntrack', ['-C']).trim());
  const ha2Count = new NamespaceCount(nsB);
  try {
    const port = await freePort();
    const vrfs = (enabled = true) => [{ name: 'main', port, enabled }];
    const config1 = nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, vrfs: vrfs() });
    const config2 = (enabled: boolean): Json => nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, vrfs: vrfs(enabled) });
    const nodes: [LinuxEngine, Json, string][] = [[ha1, config1, 'ha1'], [ha2, config2(true), 'ha2']];
    const has: HaService[] = [];
    for (const [engine, config, name] of nodes) {
      await engine.prepareVrf(labVrfConfig());
      await engine.applyVrf('main', labVrfConfig());
      const ha = new HaService(engine);
      has.push(ha);
      const service = new SyncService(engine, { roles: ha, nodeId: name });
      services.push(service);
      await ha.apply(config);
      await service.applySync(config);
    }
    const [s1, s2] = services as [SyncService, SyncService];
    let ha1Established = 0;
    ha1.onEvent((ev) => {
      if (ev.kind === 'established') ha1Established++;
    });
    const clients1 = () => s1.vrfs.get('main')?.peers.flatMap((p) => p.clients) ?? [];
    const sent1 = (): number => clients1().reduce((a, c) => a + c.stats.transmit, 0);
    const acked1 = (): number => clients1().reduce((a, c) => a + c.acks.ackedTotal, 0);
    const until = async (cond: () => boolean, ms: number, step = 10): Promise<boolean> => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (cond()) return true;
        await new Promise((r) => setTimeout(r, step));
      }
      return cond();
    };
    if (!(await until(() => s1.ready() && s2.ready(), 20_000, 50))) throw new Error('sync connections not established');
    log(`sync pair up (ha1 ${ha1.role('main')}, ha2 ${ha2.role('main')})`);
    gc();
    const rssIdleBytes = process.memoryUsage().rss;
    const heapIdle = process.memoryUsage().heapUsed;
    let rssSyncedBytes = 0;
    let heapSynced = 0;
    const burstMs: number[] = [];
    const missing: number[] = [];
    const burstStages: Record<string, StageTimes>[] = [];
    for (let run = 0; run < runs; run++) {
      const stages = new SyncStageClock({
        'ha1-events': () => ha1Established, 'ha1-sent': sent1, 'ha2-written': () => s2.vrfs.get('main')?.receive ?? 0,
        'ha1-acked': acked1, 'ha2-kernel': () => Math.max(0, ha2Count.latest),
      }, n);
      stages.start();
      // From a thread of its own (as traffic would, the kernel creates them while ha1 reads events);
      // not kept here: the benchmark's copy of the burst must not count as the agents' memory.
      const burst = await burstInThread(nsA, n, run);
      const loaded = Date.now() - (performance.now() - burst.endedAt);
      stages.rebase(burst.endedAt);
      let inHa2 = await ha2Count.fresh();
      const complete = await until(() => (inHa2 = ha2Count.latest) >= n, 20_000 + n / 5, 5);
      const ms = complete ? Date.now() - loaded : -1;
      burstStages.push(stages.stop());
      log(`run ${run + 1}/${runs} stages (ms after the burst ended, first..complete): ${SyncStageClock.format(burstStages[run] as Record<string, StageTimes>)}`);
      // Settled: the count no longer changes for 1 s.
      for (let last = -1; last !== inHa2;) {
        last = inHa2;
        await new Promise((r) => setTimeout(r, 1000));
        inHa2 = await ha2Count.fresh();
      }
      burstMs.push(ms);
      missing.push(Math.max(0, n - inHa2));
      log(`run ${run + 1}/${runs}: ${n} created in ha1's kernel in ${Math.round(burst.endedAt - burst.startedAt)} ms (another thread); ha2's kernel complete ${ms} ms after, ${n - inHa2} missing`);
      if (run === 0) {
        gc();
        rssSyncedBytes = process.memoryUsage().rss;
        heapSynced = process.memoryUsage().heapUsed;
      }
      if (run < runs - 1) {
        fx.exec(nsA, 'conntrack', ['-F']);
        if (!(await until(() => ha2Count.latest === 0, 30_000, 50))) log(`ha2 still holds ${count(nsB)} after ha1's flush`);
      }
    }
    const receiveError = s2.vrfs.get('main')?.receiveError ?? -1;
    // The sync link goes and returns: ha2's sync off (ha1's connections fail and retry), then on.
    await s2.applySync(config2(false));
    await until(() => !s1.ready(), 10_000, 20);
    await new Promise((r) => setTimeout(r, 2000)); // a while down: the backoff of a doubling policy would have grown
    const before = s2.vrfs.get('main');
    const sentBase = sent1();
    const ackedBase = acked1();
    const beforeReceive = before?.receive ?? 0;
    let base = beforeReceive;
    const resyncClock = new SyncStageClock({
      'ha1-connections': { read: () => clients1().filter((c) => c.status === 'established').length, target: clients1().length },
      'ha1-sent': () => sent1() - sentBase,
      'ha2-written': () => (s2.vrfs.get('main')?.receive ?? 0) - base,
      'ha1-acked': () => acked1() - ackedBase,
    }, n, false);
    const returned = Date.now();
    resyncClock.start();
    await s2.applySync(config2(true));
    const vrf = s2.vrfs.get('main');
    base = vrf === before ? beforeReceive : 0;
    const resynced = await until(() => (s2.vrfs.get('main')?.receive ?? 0) - base >= n, 30_000, 5);
    const resyncMs = resynced ? Date.now() - returned : -1;
    const resyncReceived = (s2.vrfs.get('main')?.receive ?? 0) - base;
    await until(() => acked1() - ackedBase >= n, 5_000, 5);
    const resyncStages = resyncClock.stop();
    log(`resync stages (ms after the link returned, first..complete): ${SyncStageClock.format(resyncStages)}`);
    log(`resync after the link returned: ${resyncReceived} received by ha2 in ${resyncMs} ms; ha2's kernel holds ${count(nsB)}`);
    return {
      conntracks: n, burstMs, burstStages, resyncStages, missing, receiveError, resyncMs, resyncReceived,
      rssIdleBytes, rssSyncedBytes,
      rssBytesPerSyncedConntrackBothNodes: Math.round((rssSyncedBytes - rssIdleBytes) / n),
      heapBytesPerSyncedConntrackBothNodes: Math.round((heapSynced - heapIdle) / n),
    };
  } finally {
    ha2Count.stop();
    for (const s of services) await s.close().catch(() => undefined);
    await ha1.close();
    await ha2.close();
    for (const ns of fx.namespaces) {
      try {
        fx.exec(ns, 'conntrack', ['-F']);
      } catch {
        // nothing to flush
      }
    }
    await fx.cleanup();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').trim();
}
