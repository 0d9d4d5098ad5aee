// `npm run bench -- linux-failover` (root): the linux engine's figures.
//  1. conntracks per second into a backup's kernel table (10^5, with NAT bindings), written by the
//     engine as sync delivers them (2 sync connections, frames of 1,000 packed IPv4 records handed
//     to engine.upsertIPv4Records as the receiver does; TANDEM_BENCH_WRITER_PATH=objects: the
//     decoded entries to engine.upsert instead; up to 8 frames in flight per connection as the
//     receiver has them, TANDEM_BENCH_FRAMES_IN_FLIGHT; the engine's writer threads), and the agent's own
//     memory per conntrack; TANDEM_BENCH_CONNTRACKS=1000000 measures 10^6 (the table sized for
//     it, conntrackd left out above 200,000);
//  2. the same 10^5 through conntrackd 1.4 (FTFW over UDP on a sync link between two namespaces,
//     configured here): the commit of its external cache into the backup's kernel, and the ratio;
//     and the kernel's own ceiling for the same entries (bench/ctnetlink-ceiling.ts: a minimal raw
//     ctnetlink writer in C), so tandem's share of the ceiling is measured in the same run;
//  3. a failover of TANDEM_BENCH_CONNECTIONS (default 50,000) long-lived TCP connections through
//     CG-NAT on the lab topology: the share that survives and the time from the master's death to
//     every connection answering again.
//  4. the agent's sync end to end between two linux engines (bench/linux-sync-pair.ts): burst
//     latency ha1 kernel -> ha2 kernel, conntracks missing in ha2's kernel per run (10 runs of n),
//     resync time after the sync link returns, RSS per synced conntrack.
// Environment: TANDEM_BENCH_CONNTRACKS (default 100000), TANDEM_BENCH_CONNECTIONS (default 50000),
// TANDEM_BENCH_SYNC_PAIR_RUNS (default 10; 0 skips part 4);
// TANDEM_BENCH_AGENTS=1: the failover runs through the real agents (`tandem start --engine linux`
// in ha1 and ha2, configured over NETCONF, their own ha-fp-conntrack sync and VRRP) instead of the
// engines driven in this process; TANDEM_BENCH_FAILOVER_ONLY=1 skips parts 1 and 2,
// TANDEM_BENCH_KERNEL_WRITES_ONLY=1 skips part 3.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ConntrackEntry } from '../fastpath/engine.js';
import { ConntrackNetlink } from '../fastpath/linux/conntrack-netlink.js';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import { NamespaceFixture, isRoot } from '../lab/namespace-fixture.js';
import { agentFailoverRun } from '../lab/agent-failover-run.js';
import { failoverRun } from '../lab/failover-run.js';
import { labVrfConfig } from '../lab/lab-topology.js';
import { buildCeilingProbe, ceiling, execInNamespace, sizeConntrackTable, TRACKING_RULESET, type CeilingRun } from './ctnetlink-ceiling.js';
import { syncPairRun } from './linux-sync-pair.js';
import { decodeEntries, encodeRecords, recordSize, type SyncRecord } from '../sync/conntrack-codec.js';

function progress(line: string): void {
  process.stderr.write(`bench linux-failover: ${line}\n`);
}

/**
 * n established TCP conntracks of distinct subscribers, SNATed to a pool (distinct reply tuples),
 * numbered from `first` (distinct up to 1,024,000: 16 pool addresses x 64,000 ports).
 */
function syntheticEntries(n: number, first = 0): ConntrackEntry[] {
  return Array.from({ length: n }, (_, k) => first + k).map((i) => ({
    vrf: 'main',
    orig: { proto: 'tcp' as const, src: `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: '198.51.100.10', sport: 1024 + (i % 50000), dport: 443 },
    reply: { proto: 'tcp' as const, src: '198.51.100.10', dst: `192.0.2.${i % 16}`, sport: 443, dport: 1024 + Math.floor(i / 16) % 64000 },
    state: 'established' as const,
    timeout: 7200,
    alg: false,
    establishedAt: 1,
    lastActivity: 1,
  }));
}

/** nf_conntrack_max / hashsize (global to the host), as text. */
function tableSize(): string {
  const read = (f: string): string => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  return `max ${read('/proc/sys/net/netfilter/nf_conntrack_max')} buckets ${read('/sys/module/nf_conntrack/parameters/hashsize')}`;
}

/** Size of the kernel's nf_conntrack slab object (the conntrack itself; its extensions come on top). */
function conntrackSlabObjectSize(): number {
  try {
    const line = readFileSync('/proc/slabinfo', 'utf8').split('\n').find((l) => l.startsWith('nf_conntrack '));
    return Number(line?.split(/\s+/)[3] ?? -1);
  } catch {
    return -1;
  }
}

/**
 * Flushes the namespaces' conntracks before removing them, and lets the kernel settle: the
 * conntrack hash table is shared by all namespaces, and the asynchronous cleanup of a deleted
 * namespace's 10^5 entries would otherwise run during the next round's measurement.
 */
async function settleAndCleanup(fx: NamespaceFixture, n = 100_000): Promise<void> {
  for (const ns of fx.namespaces) {
    try {
      execInNamespace(ns, n, 'conntrack', ['-F']);
    } catch {
      // nothing to flush
    }
  }
  await fx.cleanup();
  await new Promise((r) => setTimeout(r, 2000));
}


/**
 * The CT_NEW payloads sync delivers for the synthetic population, frames of FRAME records: a
 * receiver hands plain IPv4 ones to the engine as they came (upsertIPv4Records, after the count).
 * Built a frame at a time, so 10^6 conntracks take 34 MB here, not a million objects.
 */
function syntheticFrames(n: number): Buffer[] {
  const frames: Buffer[] = [];
  for (let i = 0; i < n; i += FRAME) {
    const recs: SyncRecord[] = syntheticEntries(Math.min(FRAME, n - i), i).map((entry) => ({ entry, withActivity: false, timeout: entry.timeout }));
    frames.push(encodeRecords(recs, recs.map(recordSize), 1));
  }
  return frames;
}

/** Records per sync frame (sync-sender's batches of a burst). */
const FRAME = 1000;
/**
 * Engine writes a sync connection has in progress at once: MAX_INFLIGHT of
 * sync/inbound-connection.ts (8); TANDEM_BENCH_FRAMES_IN_FLIGHT=1 gives the method of stop 8 (one
 * frame at a time per connection, the writer threads idle between frames).
 */
const FRAMES_IN_FLIGHT = Math.max(1, Number(process.env.TANDEM_BENCH_FRAMES_IN_FLIGHT ?? 8));
/** The engine's writer threads (TANDEM_BENCH_WRITER_THREADS; unset: the engine's default). */
const WRITER_THREADS = process.env.TANDEM_BENCH_WRITER_THREADS ? Number(process.env.TANDEM_BENCH_WRITER_THREADS) : undefined;

/**
 * Which receiver path part 1 measures: `packed` (default; what sync-receiver.ts calls for frames of
 * plain IPv4 records, engine.upsertIPv4Records) or `objects` (entries decoded from the frames, engine.upsert).
 */
const WRITER_PATH = process.env.TANDEM_BENCH_WRITER_PATH === 'objects' ? 'objects' : 'packed';

async function tandemIntoBackup(n: number): Promise<Record<string, number | string>> {
  const fx = new NamespaceFixture('bw');
  const engine = new LinuxEngine({ namespaceOf: () => fx.namespaces[0], writerThreads: WRITER_THREADS });
  try {
    fx.add('ha2');
    await engine.prepareVrf(labVrfConfig());
    await engine.applyVrf('main', labVrfConfig());
    await engine.setRole('main', 'backup');
    const frames = syntheticFrames(n);
    // The table's size is global to the host: another job on it may change it during the run.
    const tableBefore = tableSize();
    // The object path gets what the receiver's decoder makes of the same frames (decoded beforehand: not part of the writes).
    const decoded = WRITER_PATH === 'objects' ? frames.map((f) => decodeEntries(f, 'main', Date.now())) : [];
    const rssBefore = process.memoryUsage().rss;
    const cpuBefore = process.cpuUsage();
    const started = process.hrtime.bigint();
    // As sync delivers them: one stream per sync connection (nb-event-threads, 2 by default), each
    // handing the engine frames of 1,000 conntracks with up to FRAMES_IN_FLIGHT writes at once, as
    // the receiving connection does (sync/inbound-connection.ts, MAX_INFLIGHT).
    const STREAMS = 2;
    const counts = await Promise.all(Array.from({ length: STREAMS }, async (_, stream) => {
      let w = 0;
      // A write that fails while an older one is awaited is kept, not left unhandled (it would end the process).
      let failure: Error | undefined;
      const inFlight: Promise<number>[] = [];
      for (let f = stream; f < frames.length && !failure; f += STREAMS) {
        inFlight.push((WRITER_PATH === 'objects'
          ? engine.upsert(decoded[f] as ConntrackEntry[])
          : engine.upsertIPv4Records('main', (frames[f] as Buffer).subarray(2))).catch((err: Error) => {
          failure ??= err;
          return 0;
        }));
        if (inFlight.length >= FRAMES_IN_FLIGHT) w += await (inFlight.shift() as Promise<number>);
      }
      for (const p of inFlight) w += await p;
      if (failure) throw new Error(`tandem's writes of ${n} failed: ${failure.message}`, { cause: failure });
      return w;
    }));
    const written = counts.reduce((a, b) => a + b, 0);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpuBefore);
    const inKernel = Number(fx.exec(fx.namespaces[0], 'conntrack', ['-C']).trim());
    const rssAfter = process.memoryUsage().rss;
    progress(`tandem wrote ${written} conntracks into the backup's kernel in ${seconds.toFixed(2)} s`);
    return {
      path: WRITER_PATH,
      framesInFlightPerStream: FRAMES_IN_FLIGHT,
      writerThreads: WRITER_THREADS ?? 'engine default',
      conntracks: n,
      written,
      inKernel,
      seconds: Number(seconds.toFixed(3)),
      perSecond: Math.round(written / seconds),
      // All threads of this process (encoding, writer threads, the kernel's work in their sends):
      // compared with the probe's CPU time, a measure that depends far less on the machine's load.
      cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
      // The agent keeps no state per synced conntrack on a backup (the kernel table holds them):
      // this is its resident-memory growth over the writes, transient buffers included.
      agentRssGrowthBytesPerConntrack: Math.max(0, Math.round((rssAfter - rssBefore) / n)),
      table: tableBefore === tableSize() ? tableBefore : `changed during the run: ${tableBefore} -> ${tableSize()}`,
      kernelBytesPerConntrack: conntrackSlabObjectSize(),
    };
  } finally {
    await engine.close();
    await settleAndCleanup(fx, n);
  }
}

function conntrackdConfig(dir: string, side: 'a' | 'b', me: string, peer: string): string {
  const file = path.join(dir, `${side}.conf`);
  writeFileSync(file, `Sync {
  Mode FTFW {
  }
  UDP {
    IPv4_address ${me}
    IPv4_Destination_Address ${peer}
    Port 3780
    Interface sync
    SndSocketBuffer 24985600
    RcvSocketBuffer 24985600
    Checksum on
  }
}
General {
  HashSize 65536
  HashLimit 4194304
  LogFile ${path.join(dir, `${side}.log`)}
  Syslog off
  LockFile ${path.join(dir, `${side}.lock`)}
  UNIX {
    Path ${path.join(dir, `${side}.ctl`)}
  }
  NetlinkBufferSize 2097152
  NetlinkBufferSizeMaxGrowth 134217728
}
`);
  return file;
}

function externalCount(fx: NamespaceFixture, ns: string, conf: string): number {
  const stats = fx.exec(ns, 'conntrackd', ['-C', conf, '-s']);
  const external = stats.slice(stats.indexOf('cache external'));
  return Number(/current active connections:\s+(\d+)/.exec(external)?.[1] ?? 0);
}

async function conntrackdCommit(n: number): Promise<Record<string, number | string>> {
  const fx = new NamespaceFixture('bc');
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-conntrackd-'));
  const running: [string, string][] = [];
  try {
    const a = fx.add('ha1');
    const b = fx.add('ha2');
    fx.link(a, 'sync', '10.150.0.1/30', b, 'sync', '10.150.0.2/30');
    for (const ns of [a, b]) fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
    const confA = conntrackdConfig(dir, 'a', '10.150.0.1', '10.150.0.2');
    const confB = conntrackdConfig(dir, 'b', '10.150.0.2', '10.150.0.1');
    for (const [ns, conf] of [[a, confA], [b, confB]] as const) {
      fx.exec(ns, 'conntrackd', ['-C', conf, '-d']);
      running.push([ns, conf]);
    }
    // The master's table fills; conntrackd on ha1 sends every new conntrack to ha2's external cache.
    const nl = new ConntrackNetlink({ namespace: a });
    const entries = syntheticEntries(n);
    await nl.create(entries.map((e) => ({ orig: e.orig, reply: e.reply, state: e.state, timeout: e.timeout })));
    nl.close();
    const deadline = Date.now() + 60_000 + n / 10;
    let cached = 0;
    while (Date.now() < deadline && (cached = externalCount(fx, b, confB)) < n) await new Promise((r) => setTimeout(r, 250));
    if (cached < n) {
      // Events were lost (netlink overrun): conntrackd's own repair is a resync and a bulk send.
      progress(`conntrackd external cache has ${cached} of ${n}: resync (-R) and bulk send (-B)`);
      fx.exec(a, 'conntrackd', ['-C', confA, '-R']);
      fx.exec(a, 'conntrackd', ['-C', confA, '-B']);
      const again = Date.now() + 60_000;
      while (Date.now() < again && (cached = externalCount(fx, b, confB)) < n) await new Promise((r) => setTimeout(r, 250));
    }
    const started = process.hrtime.bigint();
    fx.exec(b, 'conntrackd', ['-C', confB, '-c']); // returns when the commit is done
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const inKernel = Number(fx.exec(b, 'conntrack', ['-C']).trim());
    const logged = /commit has taken ([\d.]+) seconds/.exec(readFileSync(path.join(dir, 'b.log'), 'utf8'))?.[1];
    progress(`conntrackd committed ${inKernel} conntracks into the backup's kernel in ${seconds.toFixed(2)} s`);
    return {
      conntracks: n,
      externalCache: cached,
      inKernel,
      seconds: Number(seconds.toFixed(3)),
      loggedSeconds: logged ?? 'not logged',
      perSecond: Math.round(Math.min(inKernel, n) / seconds),
    };
  } finally {
    for (const [ns, conf] of running) {
      try {
        fx.exec(ns, 'conntrackd', ['-C', conf, '-k']);
      } catch {
        // already gone
      }
    }
    await settleAndCleanup(fx, n);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, nftables, conntracks)' };
  try {
    execFileSync('conntrackd', ['-v'], { stdio: 'ignore' });
  } catch {
    return { skipped: 'conntrackd not installed (apt-get install conntrackd)' };
  }
  const n = Number(process.env.TANDEM_BENCH_CONNTRACKS ?? 100_000);
  const connections = Number(process.env.TANDEM_BENCH_CONNECTIONS ?? 50_000);
  const failover = () => failoverPart(connections);
  if (process.env.TANDEM_BENCH_FAILOVER_ONLY === '1') return { failover: await failover() };
  // The machine may be shared: alternate the two, three times each, and compare the medians.
  const tandemRuns: Record<string, number | string>[] = [];
  const conntrackdRuns: Record<string, number | string>[] = [];
  const ceilingRuns: CeilingRun[] = [];
  let probe: ReturnType<typeof buildCeilingProbe> | undefined;
  try {
    probe = buildCeilingProbe();
  } catch (err) {
    progress(`no C compiler, the ceiling is not measured: ${String(err)}`);
  }
  const restoreTable = sizeConntrackTable(n);
  try {
    for (let round = 1; round <= 3; round++) {
      progress(`kernel writes of ${n} conntracks, round ${round}/3: tandem`);
      tandemRuns.push(await tandemIntoBackup(n));
      if (probe) {
        progress(`kernel writes of ${n} conntracks, round ${round}/3: the ceiling (raw ctnetlink in C)`);
        ceilingRuns.push(await ceiling(probe.binary, n));
      }
      if (n <= 200_000) {
        progress(`kernel writes of ${n} conntracks, round ${round}/3: conntrackd (FTFW)`);
        conntrackdRuns.push(await conntrackdCommit(n));
      }
    }
  } finally {
    restoreTable();
    probe?.dispose();
  }
  const median = <T extends Record<string, unknown>>(runs: T[]): T =>
    [...runs].sort((a, b) => Number(a.perSecond) - Number(b.perSecond))[Math.floor(runs.length / 2)];
  const tandemMedian = median(tandemRuns);
  const tandem = { ...tandemMedian, runs: tandemRuns.map((r) => r.perSecond) };
  const figures: Record<string, unknown> = { tandem, loadavg: readFileSync('/proc/loadavg', 'utf8').trim() };
  if (conntrackdRuns.length > 0) {
    const conntrackdMedian = median(conntrackdRuns);
    figures.conntrackd = { ...conntrackdMedian, runs: conntrackdRuns.map((r) => r.perSecond) };
    figures.ratioToConntrackd = Number((Number(tandemMedian.perSecond) / Number(conntrackdMedian.perSecond)).toFixed(2));
  }
  if (ceilingRuns.length > 0) {
    const ceilingMedian = median(ceilingRuns as unknown as Record<string, unknown>[]);
    figures.ceiling = { ...ceilingMedian, runs: ceilingRuns.map((r) => r.perSecond) };
    // Each round's tandem run against the ceiling run right after it (the load changes between rounds).
    const shares = ceilingRuns.map((c, i) => Number((Number(tandemRuns[i]?.perSecond) / c.perSecond).toFixed(2)));
    const cpuShares = ceilingRuns.map((c, i) => Number((c.cpuSeconds / Number(tandemRuns[i]?.cpuSeconds)).toFixed(2)));
    const mid = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    figures.shareOfCeiling = mid(shares);
    figures.shareOfCeilingRuns = shares;
    // The probe's CPU time over tandem's for the same writes (1.0: tandem spends no more than the kernel's own work).
    figures.cpuShareOfCeiling = mid(cpuShares);
    figures.cpuShareOfCeilingRuns = cpuShares;
  }
  const pairRuns = Number(process.env.TANDEM_BENCH_SYNC_PAIR_RUNS ?? 10);
  let syncPair: Record<string, unknown> | undefined;
  if (pairRuns > 0) {
    progress(`sync pair: ${pairRuns} bursts of ${n} conntracks from ha1's kernel to ha2's, then a resync after the link returns`);
    const restore = sizeConntrackTable(2 * n);
    try {
      syncPair = { ...(await syncPairRun(n, pairRuns, progress)), loadavg: readFileSync('/proc/loadavg', 'utf8').trim() };
    } finally {
      restore();
    }
  }
  if (process.env.TANDEM_BENCH_KERNEL_WRITES_ONLY === '1') return { kernelWrites: figures, ...(syncPair ? { syncPair } : {}) };
  return {
    kernelWrites: figures,
    ...(syncPair ? { syncPair } : {}),
    failover: await failover(),
  };
}

/** Part 3: in this process (the engines, sync stood in for), or through the real agents. */
async function failoverPart(connections: number): Promise<Record<string, unknown>> {
  if (process.env.TANDEM_BENCH_AGENTS === '1') {
    progress(`failover of ${connections} connections through the real agents (NETCONF-configured, their sync and VRRP)`);
    const r = await agentFailoverRun({ sync: true, connections, log: progress });
    return {
      through: 'agents',
      connections,
      survived: r.after,
      share: Number((r.after / connections).toFixed(4)),
      resets: r.resets,
      syncedBeforeKill: r.syncedInKernel,
      msFromOpenToSyncedOnBackup: r.syncMs,
      msFromDeathToTrafficFlowing: r.outageMs,
      msFromDeathToAllAnswering: r.allAnsweredMs,
      msFromDeathToGatewayOnBackup: r.takeoverMs,
      msOfOnePingRoundBefore: r.pingRoundMs,
    };
  }
  progress(`failover of ${connections} connections`);
  const failover = await failoverRun(true, connections, progress);
  return {
    through: 'engines in the benchmark process',
    connections,
    survived: failover.after,
    share: Number((failover.after / connections).toFixed(4)),
    resets: failover.resets,
    syncedBeforeKill: failover.synced,
    msFromDeathToTrafficFlowing: failover.outageMs,
    msFromDeathToAllAnswering: failover.allAnsweredMs,
    msFromDeathToMaster: failover.takeoverMs,
    msOfOnePingRoundBefore: failover.pingRoundMs,
  };
}
