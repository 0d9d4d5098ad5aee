// `npm run bench -- resync-delta` (root): the resync after the sync link returns, delta path and
// full path side by side on the same pair, table and load (issue #11 item 4, docs/ha-sync.md
// § Full resync). Two linux engines in namespaces of their own with the agent's HA and sync
// services (as bench/linux-sync-pair.ts), the sync link through TCP relays on loopback that the
// benchmark cuts and restores (test/helpers/tcp-link-proxy.ts), so both nodes keep their state.
// n SNAT-bound conntracks are loaded into ha1 and synced. Then, per run:
//  - delta: the link is cut; on ha1 `changed` conntracks change (a quarter each: a new NAT binding,
//    a new TCP state, ended, new); after `outage` ms the link returns; measured: the time until
//    ha2 received every change (records and deletes), the process's CPU over it (both agents,
//    every thread), and ha2's table compared with ha1's (reply tuple and state of every conntrack);
//  - full: the same, but ha2's sync restarts while the link is down (a new table epoch: the master
//    must send everything); measured: the time until ha2 received the n conntracks of the table.
// Environment: TANDEM_BENCH_CONNTRACKS (default 100000), TANDEM_BENCH_RESYNC_CHANGED (default
// 1000), TANDEM_BENCH_RESYNC_RUNS (default 3), TANDEM_BENCH_RESYNC_OUTAGE_MS (default 2000).
import { readFileSync } from 'node:fs';
import type { ConntrackWrite, KernelConntrack } from '../fastpath/linux/ctnetlink-codec.js';
import { ConntrackNetlink } from '../fastpath/linux/conntrack-netlink.js';
import type { FlowTuple } from '../fastpath/engine.js';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import { HaService } from '../ha/ha-service.js';
import { SyncService } from '../sync/sync-service.js';
import type { VrfSync } from '../sync/vrf-sync.js';
import { NamespaceFixture, isRoot } from '../lab/namespace-fixture.js';
import { labVrfConfig } from '../lab/lab-topology.js';
import { freePort, nodeConfig } from '../test/sync/two-nodes.js';
import { TcpLinkProxy } from '../test/helpers/tcp-link-proxy.js';
import { sizeConntrackTable } from './ctnetlink-ceiling.js';
import { burstInThread } from './burst-writer-thread.js';
import { burstWrites, loadavg } from './linux-sync-pair.js';

type Json = Record<string, unknown>;

const keyOf = (t: FlowTuple): string => `${t.proto} ${t.src}:${t.sport}>${t.dst}:${t.dport}`;

async function table(ns: string): Promise<Map<string, string>> {
  const nl = new ConntrackNetlink({ namespace: ns });
  const out = new Map<string, string>();
  try {
    await nl.dump((cts: KernelConntrack[]) => {
      for (const ct of cts) out.set(keyOf(ct.orig), `${keyOf(ct.reply)} ${ct.state}`);
    });
  } finally {
    nl.close();
  }
  return out;
}

function differing(a: Map<string, string>, b: Map<string, string>): number {
  let n = 0;
  for (const [k, v] of a) if (b.get(k) !== v) n++;
  for (const k of b.keys()) if (!a.has(k)) n++;
  return n;
}

async function until(cond: () => boolean, ms: number, step = 5): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, step));
  }
  return cond();
}

interface PathFigure {
  run: number;
  path: 'delta' | 'full';
  /** ms from the link's return to ha2 having received what the resync carries (-1: not within 60 s). */
  ms: number;
  cpuMs: number;
  /** Records and deletes ha2 received from the link's return until then. */
  received: number;
  /** Conntracks whose reply tuple or state differ between the kernels once settled (goal 0). */
  differing: number;
  deltaResyncs: number;
  load: string;
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, conntracks)' };
  const n = Number(process.env.TANDEM_BENCH_CONNTRACKS ?? 100_000);
  const changed = 4 * Math.ceil(Number(process.env.TANDEM_BENCH_RESYNC_CHANGED ?? 1000) / 4);
  const runs = Number(process.env.TANDEM_BENCH_RESYNC_RUNS ?? 3);
  const outageMs = Number(process.env.TANDEM_BENCH_RESYNC_OUTAGE_MS ?? 2000);
  const log = (line: string): void => void process.stderr.write(`bench resync-delta: ${line}\n`);
  const restoreTable = sizeConntrackTable(2 * n);
  const fx = new NamespaceFixture('rx');
  const nsA = fx.add('ha1');
  const nsB = fx.add('ha2');
  const ha1 = new LinuxEngine({ namespaceOf: () => nsA });
  const ha2 = new LinuxEngine({ namespaceOf: () => nsB });
  const services: SyncService[] = [];
  let proxies: TcpLinkProxy[] = [];
  let writer: ConntrackNetlink | undefined;
  try {
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
    if (!(await until(() => s1.ready() && s2.ready(), 20_000, 50))) throw new Error('sync connections not established');
    const vs1 = (): VrfSync => s1.vrfs.get('main') as VrfSync;
    const clients1 = () => vs1().peers.flatMap((p) => p.clients);
    const received2 = (): number => s2.vrfs.get('main')?.receive ?? 0;
    await burstInThread(nsA, n, 0);
    if (!(await until(() => vs1().syncedCount() >= n && vs1().inFlightCount() === 0, 120_000, 50))) throw new Error(`${n} not synced`);
    await vs1().resyncIdle();
    log(`${n} conntracks loaded into ha1 and synced; load ${loadavg()}`);
    writer = new ConntrackNetlink({ namespace: nsA });
    const w = writer;
    // Every run changes conntracks of its own: indices [base, base + changed) and new ones beyond n.
    const all = burstWrites(n + 2 * runs * changed, 0);
    const at = (i: number): ConntrackWrite => all[i] as ConntrackWrite;
    let slice = 0;
    const change = async (): Promise<number> => {
      const q = changed / 4;
      const base = slice * 3 * q;
      const fresh = n + slice * q;
      slice++;
      const rebound = Array.from({ length: q }, (_, k) => at(base + k));
      await w.delete(rebound.map((c) => c.orig));
      const rb = await w.create(rebound.map((c) => ({ ...c, reply: { ...c.reply, dst: c.reply.dst.replace('192.0.2.', '192.0.3.') } })));
      const up = await w.update(Array.from({ length: q }, (_, k) => ({ ...at(base + q + k), state: 'close-wait' as const, timeout: 600 })));
      await w.delete(Array.from({ length: q }, (_, k) => at(base + 2 * q + k).orig));
      const cr = await w.create(Array.from({ length: q }, (_, k) => at(fresh + k)));
      const failures = rb.failures.length + up.failures.length + cr.failures.length;
      if (failures > 0) throw new Error(`${failures} changes refused by ha1's kernel`);
      return q; // the rebound ones travel as a delete and a record
    };
    const cutLink = async (): Promise<void> => {
      for (const p of proxies) await p.cut();
      if (!(await until(() => clients1().every((c) => c.status !== 'established'), 10_000, 10))) throw new Error('connections still up');
    };
    const figures: PathFigure[] = [];
    for (let r = 0; r < runs; r++) {
      for (const path of ['delta', 'full'] as const) {
        await cutLink();
        const down = Date.now();
        const reboundDeletes = await change();
        if (path === 'full') {
          // ha2's sync restarts: a new table epoch, the master must send its whole table.
          await s2.applySync(config2(false));
          await s2.applySync(config2(true));
        } else {
          await until(() => clients1().reduce((t, c) => t + c.delta.size, 0) >= changed, 30_000, 10);
        }
        const rest = outageMs - (Date.now() - down);
        if (rest > 0) await new Promise((res) => setTimeout(res, rest));
        const deltasBefore = vs1().deltaResyncs;
        const base = received2();
        const expected = path === 'delta' ? changed + reboundDeletes : n;
        const cpuBefore = process.cpuUsage();
        const returned = Date.now();
        for (const p of proxies) await p.restore();
        const done = await until(() => received2() - base >= expected, 60_000, 2);
        const ms = done ? Date.now() - returned : -1;
        const cpu = process.cpuUsage(cpuBefore);
        const received = received2() - base;
        await vs1().resyncIdle();
        await until(() => vs1().inFlightCount() === 0, 10_000, 20);
        await new Promise((res) => setTimeout(res, 500));
        const diff = differing(await table(nsA), await table(nsB));
        const f: PathFigure = {
          run: r + 1, path, ms, cpuMs: Math.round((cpu.user + cpu.system) / 1000), received, differing: diff,
          deltaResyncs: vs1().deltaResyncs - deltasBefore, load: loadavg(),
        };
        figures.push(f);
        log(`run ${f.run} ${path}: ${received} received by ha2 ${ms} ms after the link returned (CPU ${f.cpuMs} ms, delta resyncs ${f.deltaResyncs}), ${diff} differing; load ${f.load}`);
      }
    }
    return { conntracks: n, changed, outageMs, figures, loadavg: readFileSync('/proc/loadavg', 'utf8').trim() };
  } finally {
    writer?.close();
    for (const p of proxies) await p.close();
    for (const s of services) await s.close().catch(() => undefined);
    await ha1.close();
    await ha2.close();
    fx.flushConntracks();
    await fx.cleanup();
    restoreTable();
  }
}
