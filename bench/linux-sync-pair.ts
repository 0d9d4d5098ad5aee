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
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ConntrackWrite } from '../fastpath/linux/ctnetlink-codec.js';
import { ConntrackNetlink } from '../fastpath/linux/conntrack-netlink.js';
import { ConntrackEventStream } from '../fastpath/linux/conntrack-events.js';
import type { ConntrackEntry, FlowTuple } from '../fastpath/engine.js';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import { HaService } from '../ha/ha-service.js';
import { SyncService } from '../sync/sync-service.js';
import { NamespaceFixture } from '../lab/namespace-fixture.js';
import { labVrfConfig } from '../lab/lab-topology.js';
import { freePort, nodeConfig } from '../test/sync/two-nodes.js';
import { SyncStageClock, type StageTimes } from './sync-stage-clock.js';
import { burstInThread } from './burst-writer-thread.js';

type Json = Record<string, unknown>;
const execFileAsync = promisify(execFile);

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
    // The loop ends when its reader is gone (cat fails on the closed pipe), also if this process dies.
    this.child = spawn('ip', ['netns', 'exec', namespace, 'sh', '-c',
      'while cat /proc/sys/net/netfilter/nf_conntrack_count; do sleep 0.01; done'], { stdio: ['ignore', 'pipe', 'ignore'] });
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

const keyOf = (t: FlowTuple): string => `${t.src}:${t.sport}>${t.dst}:${t.dport}`;

/**
 * Where each conntrack of a run was last seen on its way (TANDEM_BENCH_SYNC_PAIR_TRACE=1): ha1's
 * engine event, ha2's engine upsert/remove calls and their outcome, ha2's kernel events (a reader
 * of our own in ha2's namespace, with the netlink port that caused each). Only for diagnosis: it
 * costs memory and event-loop time of the process the two agents share.
 */
class Trace {
  readonly seen = new Map<string, string[]>();
  private readonly ha2Events: ConntrackEventStream;
  lostHa2Events = 0;

  constructor(ha1: LinuxEngine, ha2: LinuxEngine, nsB: string) {
    ha1.onEvent((ev) => this.note(ev.entry.orig, `ha1-event:${ev.kind}`));
    const upsert = ha2.upsert.bind(ha2);
    ha2.upsert = async (entries: ConntrackEntry[]): Promise<number> => {
      for (const e of entries) this.note(e.orig, `ha2-upsert(${entries.length})`);
      const written = await upsert(entries);
      if (written < entries.length) for (const e of entries) this.note(e.orig, `ha2-upsert-short(${written}/${entries.length})`);
      return written;
    };
    const remove = ha2.remove.bind(ha2);
    ha2.remove = async (vrf: string, tuples: FlowTuple[]): Promise<number> => {
      for (const t of tuples) this.note(t, `ha2-remove(${tuples.length})`);
      return remove(vrf, tuples);
    };
    this.ha2Events = ConntrackEventStream.start((n) => this.note(n.conntrack.orig, `ha2-kernel:${n.kind}(port ${n.portId})`),
      (dropped) => { this.lostHa2Events += dropped; }, { namespace: nsB });
  }

  note(t: FlowTuple, what: string): void {
    const k = keyOf(t);
    const list = this.seen.get(k);
    if (list) list.push(what); else this.seen.set(k, [what]);
  }

  clear(): void {
    this.seen.clear();
  }

  close(): void {
    this.ha2Events.close();
  }
}

/** Original tuples of a namespace's table (conntrack -L through ctnetlink), with the kernel's id of each. */
async function tableKeys(ns: string): Promise<Map<string, number>> {
  const nl = new ConntrackNetlink({ namespace: ns });
  const keys = new Map<string, number>();
  try {
    await nl.dump((cts) => {
      for (const ct of cts) keys.set(keyOf(ct.orig), ct.id);
    });
  } finally {
    nl.close();
  }
  return keys;
}

/** CPU time of one thread of this process (ms on a CPU, from schedstat), -1 when unknown. */
function threadCpuMs(tid: number): number {
  if (tid <= 0) return -1;
  try {
    return Math.round(Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
  } catch {
    return -1;
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
  /** Per run, each stage's count when the burst ended (n minus it: what was still queued before that stage). */
  burstCountsAtEnd: Record<string, number>[];
  /** Per run, CPU ms from the burst's start until ha2 held all: the thread both agents share, ha1's event thread. */
  burstCpuMs: { main: number; events: number }[];
  /** The same for the resync, from the sync link's return; ha1-connections: all of ha1's sync connections up. */
  resyncStages: Record<string, StageTimes>;
  /** Per run: conntracks of ha1's kernel missing from ha2's kernel once settled (tables compared). */
  missing: number[];
  /** Per run: conntracks in ha2's kernel that ha1's does not hold (left from an earlier run). */
  extra: number[];
  /** Per run: 1 when ha1's sync never claimed all n synced (the comparison was made anyway). */
  unsettled: number[];
  /** ha2's receive-error after the runs. */
  receiveError: number;
  /** ha1's transmit-error (all connections) and conntrack events its engine lost, after the runs. */
  transmitError: number;
  eventsLost: number;
  /** ms from the sync link's return to the full resync received and written by ha2 (-1: not within 30 s). */
  resyncMs: number;
  resyncReceived: number;
  /** CPU time (ms, user + system, every thread of the process both agents share) from the link's return to all received. */
  resyncCpuMs: number;
  /** Resync records ha2's engine did not write again (its kernel held them as they were). */
  resyncUnchanged: number;
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
  let trace: Trace | undefined;
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
    // Internals read for the stage clock only (private fields: a benchmark may look inside).
    type Inside = { vrfs: Map<string, { events?: { events: number; threadKernelId?: number }; writers: { stats: { messages: number } } }> };
    const ha1EventTid = (): number => (ha1 as unknown as Inside).vrfs.get('main')?.events?.threadKernelId ?? 0;
    /** Events ha1's event thread handed to the engine's thread (delivered or queued there). */
    const ha1Read = (): number => (ha1 as unknown as Inside).vrfs.get('main')?.events?.events ?? 0;
    /** Records ha2's receiver handed to its engine (written or not yet). */
    const ha2Taken = (): number => {
      const receiver = (s2.vrfs.get('main') as unknown as { receiver?: { acceptedByOwner: Map<string, number> } } | undefined)?.receiver;
      let total = 0;
      for (const v of receiver?.acceptedByOwner.values() ?? []) total += v;
      return total;
    };
    /** Messages ha2's engine handed to its writer threads. */
    const ha2ToWriters = (): number => (ha2 as unknown as Inside).vrfs.get('main')?.writers.stats.messages ?? 0;
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
    if (process.env.TANDEM_BENCH_SYNC_PAIR_TRACE === '1') trace = new Trace(ha1, ha2, nsB);
    gc();
    const rssIdleBytes = process.memoryUsage().rss;
    const heapIdle = process.memoryUsage().heapUsed;
    let rssSyncedBytes = 0;
    let heapSynced = 0;
    const burstMs: number[] = [];
    const missing: number[] = [];
    const extra: number[] = [];
    const unsettled: number[] = [];
    const burstStages: Record<string, StageTimes>[] = [];
    const burstCountsAtEnd: Record<string, number>[] = [];
    const burstCpuMs: { main: number; events: number }[] = [];
    for (let run = 0; run < runs; run++) {
      trace?.clear();
      const stages = new SyncStageClock({
        'ha1-read': ha1Read, 'ha1-events': () => ha1Established, 'ha1-sent': sent1, 'ha2-taken': ha2Taken, 'ha2-to-writers': ha2ToWriters,
        'ha2-written': () => s2.vrfs.get('main')?.receive ?? 0,
        'ha1-acked': acked1, 'ha2-kernel': () => Math.max(0, ha2Count.latest),
      }, n);
      // CPU of the thread both agents share (this one) and of ha1's event thread, until ha2 holds all.
      const cpuAtStart = { main: threadCpuMs(process.pid), events: threadCpuMs(ha1EventTid()) };
      stages.start();
      // From a thread of its own (as traffic would, the kernel creates them while ha1 reads events);
      // not kept here: the benchmark's copy of the burst must not count as the agents' memory.
      const burst = await burstInThread(nsA, n, run);
      const loaded = Date.now() - (performance.now() - burst.endedAt);
      stages.rebase(burst.endedAt);
      let inHa2 = await ha2Count.fresh();
      const complete = await until(() => (inHa2 = ha2Count.latest) >= n, 20_000 + n / 5, 5);
      const ms = complete ? Date.now() - loaded : -1;
      const cpu = { main: threadCpuMs(process.pid) - cpuAtStart.main, events: threadCpuMs(ha1EventTid()) - cpuAtStart.events };
      burstCpuMs.push(cpu);
      log(`run ${run + 1}/${runs} CPU from the burst's start until ha2 held all: main thread (both agents) ${cpu.main} ms, ha1's event thread ${cpu.events} ms`);
      burstStages.push(stages.stop());
      const atEnd = stages.countsAt(burst.endedAt);
      burstCountsAtEnd.push(atEnd);
      log(`run ${run + 1}/${runs} counts when the burst ended (of ${n}): ${Object.entries(atEnd).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      log(`run ${run + 1}/${runs} stages (ms after the burst ended, first..complete): ${SyncStageClock.format(burstStages[run] as Record<string, StageTimes>)}`);
      // Settled: ha1's sync says all n are synced (acknowledged by ha2 as written, nothing pending
      // or in flight), then ha2's count no longer changes for 1 s. What is missing after that was
      // lost while the product says it is not; before it (a connection dropped, its resync on the
      // way), the run is "unsettled", not a loss.
      const vs1 = s1.vrfs.get('main');
      const claimed = (): boolean => vs1 !== undefined && vs1.syncedCount() >= n && vs1.pendingCount() === 0 && vs1.inFlightCount() === 0;
      const settledRun = await until(claimed, 120_000, 50);
      unsettled.push(settledRun ? 0 : 1);
      if (!settledRun) log(`run ${run + 1}: ha1's sync does not claim all ${n} synced after 120 s (synced ${vs1?.syncedCount()}, pending ${vs1?.pendingCount()}, in flight ${vs1?.inFlightCount()}, connections up ${s1.ready()}/${s2.ready()}): unsettled`);
      for (let last = -1; last !== inHa2;) {
        last = inHa2;
        await new Promise((r) => setTimeout(r, 1000));
        inHa2 = await ha2Count.fresh();
      }
      burstMs.push(ms);
      // Measured before the comparison below allocates its copies of both tables.
      if (run === 0) {
        gc();
        rssSyncedBytes = process.memoryUsage().rss;
        heapSynced = process.memoryUsage().heapUsed;
      }
      // The tables compared, not counted: a count would hide a missing conntrack behind one left over.
      const [inA, inB] = [await tableKeys(nsA), await tableKeys(nsB)];
      const gone = [...inA.keys()].filter((k) => !inB.has(k));
      missing.push(gone.length);
      extra.push([...inB.keys()].filter((k) => !inA.has(k)).length);
      if (inA.size !== n) log(`run ${run + 1}: ha1's kernel holds ${inA.size}, not ${n}`);
      if (gone.length > 0) {
        // Which ones, and where each was last seen.
        // The kernel's conntrack id is a 32-bit hash: which other conntracks of ha1 share each one's id.
        const byId = new Map<number, string[]>();
        for (const [k, id] of inA) byId.set(id, [...(byId.get(id) ?? []), k]);
        const shared = [...byId.values()].filter((ks) => ks.length > 1).length;
        log(`run ${run + 1}: ha1's kernel holds ${inA.size} (${shared} ids held by more than one conntrack), ha2's ${inB.size}; in ha1 not in ha2: ${gone.length}`);
        for (const k of gone.slice(0, 20)) {
          const id = inA.get(k) as number;
          const twins = (byId.get(id) ?? []).filter((o) => o !== k);
          log(`  missing ${k} (id ${id}${twins.length > 0 ? `, the id of ${twins.join(', ')} too` : ', an id of its own'}): ${trace ? (trace.seen.get(k) ?? ['never seen']).join(' > ') : '(TANDEM_BENCH_SYNC_PAIR_TRACE=1 tells where it was last seen)'}`);
        }
        if (trace) log(`  events lost by the trace's ha2 reader: ${trace.lostHa2Events}`);
      }
      log(`run ${run + 1}/${runs}: ${n} created in ha1's kernel in ${Math.round(burst.endedAt - burst.startedAt)} ms (another thread); ha2's kernel complete ${ms} ms after, ${gone.length} missing, ${extra[run]} extra${unsettled[run] ? ' (unsettled)' : ''}; load ${loadavg()}`);
      if (run < runs - 1) {
        // Not spawnSync: the two agents share this event loop, and a flush of 10^5 that blocks it
        // for seconds (under load) cut their sync connections (no keepalive), a benchmark artefact.
        await execFileAsync('ip', ['netns', 'exec', nsA, 'conntrack', '-F'], { timeout: 180_000 });
        if (!(await until(() => ha2Count.latest === 0, 30_000, 50))) log(`ha2 still holds ${count(nsB)} after ha1's flush`);
      }
    }
    const receiveError = s2.vrfs.get('main')?.receiveError ?? -1;
    const transmitError = (s1.vrfs.get('main')?.clientStats() ?? []).reduce((t, c) => t + c.stats.transmitError, 0);
    const eventsLost = (await ha1.counterDetail('main')).eventsLost;
    log(`ha2 receive-error ${receiveError}, ha1 transmit-error ${transmitError}, ha1 conntrack events lost ${eventsLost}`);
    // The sync link goes and returns: ha2's sync off (ha1's connections fail and retry), then on.
    await s2.applySync(config2(false));
    await until(() => !s1.ready(), 10_000, 20);
    await new Promise((r) => setTimeout(r, 2000)); // a while down: the backoff of a doubling policy would have grown
    const before = s2.vrfs.get('main');
    const sentBase = sent1();
    const ackedBase = acked1();
    const beforeReceive = before?.receive ?? 0;
    // What ha2 received since the link returned (its VRF's sync may be a new object after the re-enable).
    const receivedSince = (): number => {
      const v = s2.vrfs.get('main');
      return v === undefined ? 0 : v === before ? v.receive - beforeReceive : v.receive;
    };
    const resyncClock = new SyncStageClock({
      'ha1-connections': { read: () => clients1().filter((c) => c.status === 'established').length, target: clients1().length },
      'ha1-sent': () => sent1() - sentBase,
      'ha2-written': receivedSince,
      'ha1-acked': () => acked1() - ackedBase,
    }, n, false);
    const returned = Date.now();
    const profile = process.env.TANDEM_BENCH_RESYNC_PROFILE ? await startProfile() : undefined;
    const cpuBefore = process.cpuUsage();
    const unchangedBefore = (await ha2.counterDetail('main')).resyncUnchanged;
    resyncClock.start();
    // Watched while applySync runs: it may resolve after the resync has arrived (it did, 0.3 s late).
    const applying = s2.applySync(config2(true));
    const resynced = await until(() => receivedSince() >= n, 30_000, 5);
    await applying;
    const resyncMs = resynced ? Date.now() - returned : -1;
    const cpu = process.cpuUsage(cpuBefore);
    // CPU of the whole process (both agents, all threads) until ha2 received all: less load-bound than the wall clock.
    const resyncCpuMs = Math.round((cpu.user + cpu.system) / 1000);
    const resyncUnchanged = (await ha2.counterDetail('main')).resyncUnchanged - unchangedBefore;
    if (profile) await profile(process.env.TANDEM_BENCH_RESYNC_PROFILE as string);
    const resyncReceived = receivedSince();
    await until(() => acked1() - ackedBase >= n, 5_000, 5);
    const resyncStages = resyncClock.stop();
    log(`resync stages (ms after the link returned, first..complete): ${SyncStageClock.format(resyncStages)}`);
    log(`resync after the link returned: ${resyncReceived} received by ha2 in ${resyncMs} ms (CPU ${resyncCpuMs} ms, ${resyncUnchanged} left unchanged in ha2's kernel); ha2's kernel holds ${count(nsB)}; load ${loadavg()}`);
    return {
      conntracks: n, burstMs, burstStages, burstCountsAtEnd, burstCpuMs, resyncStages, missing, extra, unsettled, receiveError, transmitError, eventsLost, resyncMs, resyncReceived, resyncCpuMs, resyncUnchanged,
      rssIdleBytes, rssSyncedBytes,
      rssBytesPerSyncedConntrackBothNodes: Math.round((rssSyncedBytes - rssIdleBytes) / n),
      heapBytesPerSyncedConntrackBothNodes: Math.round((heapSynced - heapIdle) / n),
    };
  } finally {
    ha2Count.stop();
    trace?.close();
    for (const s of services) await s.close().catch(() => undefined);
    await ha1.close();
    await ha2.close();
    fx.flushConntracks();
    await fx.cleanup();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * A CPU profile of this thread (both agents' event loop, not the writer threads) from now until
 * the returned function writes it (TANDEM_BENCH_RESYNC_PROFILE=file.cpuprofile: the resync only).
 */
async function startProfile(): Promise<(file: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  return async (file) => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

export function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').trim();
}
