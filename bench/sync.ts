// Sync benchmark (`npm run bench -- sync`): conntracks per second from a dataplane event on ha1 to
// the entry in ha2's soft-engine table, for 10^5 and 10^6 conntracks with 1 and 2 workers; full
// resync time of 10^6 (from the lean source, and from a real soft engine on ha1: its dump
// included); bytes of memory per synchronised conntrack on the backup; sync bytes per conntrack on
// the wire. ha1's events come from a lean in-process source (so the figure is the sync path:
// queues, codec, TCP on loopback, decode, engine upsert); ha2 is the real soft engine with its
// sync in a child process, as on a real pair (its RSS gives the memory per conntrack). resyncRun
// and liveRun are exported to run one figure alone. encryptionCost runs the live figure with the
// sealed frames of the product (AES-256-GCM) and, for comparison only, with the benchmark-only
// plaintext frames (`node dist/bench/sync.js encryption [N] [rounds]` runs it alone).
import { HaService } from '../ha/ha-service.js';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RealClock } from '../fastpath/clock.js';
import type {
  ConntrackEntry, ConntrackEvent, DataplaneEngine, EngineCounters, FlowTuple, HaRole, VrfDataplaneConfig,
} from '../fastpath/engine.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';
import { ownerWorker } from '../fastpath/tuple-hash.js';
import { SyncService } from '../sync/sync-service.js';
import { setPlaintextFramesForBenchmark } from '../sync/frame-codec.js';
import { freePort, nodeConfig } from '../test/sync/two-nodes.js';

type Json = Record<string, unknown>;

/** ha1's dataplane reduced to what sync uses: an array of established conntracks and their events. */
class EventSource implements DataplaneEngine {
  readonly kind = 'soft' as const;
  entries: ConntrackEntry[] = [];
  private listeners = new Set<(ev: ConntrackEvent) => void>();
  constructor(readonly workers: number) {}
  async prepareVrf(_c: VrfDataplaneConfig): Promise<void> {}
  async applyVrf(_n: string, _c: VrfDataplaneConfig | undefined): Promise<void> {}
  async abortVrf(_n: string): Promise<void> {}
  async setWorkers(_n: number): Promise<void> {}
  async setRole(_v: string, _r: HaRole): Promise<void> {}
  role(_v: string): HaRole {
    return 'master';
  }
  onEvent(l: (ev: ConntrackEvent) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  async dump(_vrf: string, batch: (e: ConntrackEntry[]) => void | Promise<void>): Promise<void> {
    for (let i = 0; i < this.entries.length; i += 4096) await batch(this.entries.slice(i, i + 4096));
  }
  async upsert(e: ConntrackEntry[]): Promise<number> {
    return e.length;
  }
  async remove(_v: string, t: FlowTuple[]): Promise<number> {
    return t.length;
  }
  counters(_v: string): EngineCounters {
    return { conntracks: this.entries.length, synced: 0, created: 0, destroyed: 0, dropsTableFull: 0, dropsFirewall: 0, dropsBackup: 0, natAllocFailures: 0 };
  }
  async close(): Promise<void> {}
  emit(e: ConntrackEntry): void {
    const ev: ConntrackEvent = { kind: 'established', entry: e, worker: ownerWorker(e.orig, this.workers) };
    for (const l of this.listeners) l(ev);
  }
}

function makeEntries(n: number, now: number): ConntrackEntry[] {
  const out: ConntrackEntry[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const src = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const sport = 1024 + (i % 50000);
    out[i] = {
      vrf: 'main', orig: { proto: 'tcp', src, dst: '192.0.2.10', sport, dport: 80 },
      reply: { proto: 'tcp', src: '192.0.2.10', dst: src, sport: 80, dport: sport },
      state: 'established', timeout: 432000, alg: false, establishedAt: now, lastActivity: now,
    };
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(2);
  }
}

interface Stack {
  engine: DataplaneEngine;
  service: SyncService;
}

async function stack(name: string, engine: DataplaneEngine, config: Json): Promise<Stack> {
  const ha = new HaService(engine);
  const service = new SyncService(engine, { roles: ha, nodeId: name, clock: new RealClock(), backoffMinMs: 20, backoffMaxMs: 200 });
  for (const v of config['tandem-vrf:vrf'] as Json[]) await engine.applyVrf(String(v['name']), { name: String(v['name']), json: v });
  await ha.apply(config);
  await service.applySync(config);
  return { engine, service };
}

function configs(port: number, workers: number): [Json, Json] {
  const vrf = { name: 'main', port, firewall: { 'default-action': 'accept' } };
  return [
    nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, vrfs: [vrf], workers }),
    nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, vrfs: [vrf], workers }),
  ];
}

function wireBytes(s: SyncService): number {
  let n = 0;
  for (const c of s.vrfs.get('main')?.clientStats() ?? []) n += c.stats.bytesOut;
  return n;
}

/** ha2 in a child process; ask() sends a command and waits for the answer. */
class BackupProcess {
  private child: ChildProcess;
  private waiters: Array<(m: Json) => void> = [];
  startRss = 0;

  constructor(config: Json, workers: number, plaintext = false) {
    this.child = fork(fileURLToPath(new URL('./sync-backup-node.js', import.meta.url)), [], {
      env: {
        ...process.env, TANDEM_SYNC_BENCH_CONFIG: JSON.stringify(config), TANDEM_SYNC_BENCH_WORKERS: String(workers),
        TANDEM_SYNC_BENCH_PLAINTEXT: plaintext ? '1' : '0',
      },
      execArgv: ['--expose-gc', ...(process.env.TANDEM_SYNC_BENCH_CHILD_ARGS ?? '').split(' ').filter(Boolean)],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m) => this.waiters.shift()?.(m as Json));
  }

  next(): Promise<Json> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('bench: backup process did not answer')), 60000);
      this.waiters.push((m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
  }

  async started(): Promise<void> {
    this.startRss = Number((await this.next())['rss']);
  }

  async ask(cmd: string): Promise<Json> {
    const answer = this.next();
    this.child.send({ cmd });
    return answer;
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ cmd: 'stop' });
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(t);
  }
}

async function backupCount(b: BackupProcess): Promise<number> {
  return Number((await b.ask('count'))['count']);
}

async function untilAsync(cond: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(2);
  }
}

async function backupMemory(b: BackupProcess, n: number): Promise<Record<string, number>> {
  const m = await b.ask('memory');
  return {
    backupTableBytesPerConntrack: Number((Number(m['tableBytes']) / n).toFixed(1)),
    backupProcessBytesPerConntrack: Math.round((Number(m['rss']) - b.startRss) / n),
  };
}

/** Live sync: N established events on ha1, paced only by the bounded queues; time to the last entry on ha2. */
export async function liveRun(n: number, workers: number, encryption = true): Promise<Record<string, number>> {
  // Both sides must agree, or the handshake's keys differ: ha1 here, ha2 through its environment.
  setPlaintextFramesForBenchmark(!encryption);
  const port = await freePort();
  const [c1, c2] = configs(port, workers);
  const src = new EventSource(workers);
  const ha1 = await stack('ha1', src, c1);
  const backup = new BackupProcess(c2, workers, !encryption);
  try {
    await backup.started();
    await until(() => ha1.service.ready(), 'connections', 10000);
    await ha1.service.vrfs.get('main')?.resyncIdle();
    const entries = makeEntries(n, Date.now());
    src.entries = entries; // the table a resync would read, should a connection drop
    let resyncs = 0;
    ha1.service.onNotification((m) => {
      if (m.kind === 'full-resync-complete') resyncs++;
    });
    const vs = ha1.service.vrfs.get('main');
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      src.emit(entries[i] as ConntrackEntry);
      // The dataplane never waits for sync; the benchmark source paces itself below the queue limit.
      if ((i & 4095) === 4095) while ((vs?.pendingCount() ?? 0) > 32768) await new Promise((r) => setImmediate(r));
    }
    await untilAsync(async () => (await backupCount(backup)) >= n, `${n} conntracks on ha2`, 300000);
    const seconds = (performance.now() - t0) / 1000;
    const lost = (vs?.clientStats() ?? []).reduce((s, c) => s + c.stats.transmitError, 0);
    return {
      conntracks: n,
      workers,
      seconds: Number(seconds.toFixed(3)),
      conntracksPerSecond: Math.round(n / seconds),
      wireBytesPerConntrack: Number((wireBytes(ha1.service) / n).toFixed(1)),
      ...(await backupMemory(backup, n)),
      lostMessages: lost,
      resyncsDuringRun: resyncs,
    };
  } finally {
    await ha1.service.close();
    await backup.stop();
    setPlaintextFramesForBenchmark(false);
  }
}

/**
 * The live rate with encryption on and off, alternating (on, off, on, off, ...) so that a change
 * of machine load hits both alike; the median of each and the drop in percent.
 */
export async function encryptionCost(n: number, workers: number, rounds: number): Promise<Record<string, unknown>> {
  const on: number[] = [];
  const off: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const encryption of [true, false]) {
      process.stderr.write(`bench sync: live ${n} conntracks, ${workers} worker(s), encryption ${encryption ? 'on' : 'off'}, round ${r + 1}/${rounds}\n`);
      const figures = await liveRun(n, workers, encryption);
      (encryption ? on : off).push(figures['conntracksPerSecond'] as number);
    }
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : Math.round(((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2);
  };
  const mOn = median(on);
  const mOff = median(off);
  return {
    conntracks: n, workers, rounds,
    encryptedPerSecond: on, plaintextPerSecond: off,
    medianEncryptedPerSecond: mOn, medianPlaintextPerSecond: mOff,
    dropPercent: Number((100 * (1 - mOn / mOff)).toFixed(1)),
  };
}

/**
 * Full resync: ha1 already holds N conntracks; ha2 comes up; time until ha2 holds all of them.
 * `source` 'lean': ha1's table is the lean event source (the sync path alone); 'soft': ha1 is a
 * real soft engine too, so its dump (worker tables -> entries) is part of the figure.
 */
export async function resyncRun(n: number, workers: number, source: 'lean' | 'soft' = 'lean'): Promise<Record<string, number | string>> {
  const port = await freePort();
  const [c1, c2] = configs(port, workers);
  let ha1: Stack;
  let src: EventSource | undefined;
  if (source === 'soft') {
    const engine = await SoftEngine.create({ workers });
    ha1 = await stack('ha1', engine, c1);
    const entries = makeEntries(n, Date.now());
    for (let i = 0; i < n; i += 50_000) await engine.upsert(entries.slice(i, i + 50_000));
  } else {
    src = new EventSource(workers);
    src.entries = makeEntries(n, Date.now());
    ha1 = await stack('ha1', src, c1);
  }
  const backup = new BackupProcess(c2, workers);
  try {
    await backup.started();
    await until(() => ha1.service.ready(), 'connections', 10000);
    const t0 = performance.now();
    await untilAsync(async () => (await backupCount(backup)) >= n, `${n} conntracks resynced`, 300000);
    const seconds = (performance.now() - t0) / 1000;
    await ha1.service.vrfs.get('main')?.resyncIdle();
    const memory = await backupMemory(backup, n);
    const wire = wireBytes(ha1.service);
    // Reconnect (lean source only): ha2's sync goes away while 1 % of the conntracks end on ha1,
    // then comes back to a table full of synced entries: the resync must also find and remove
    // the stale ones (rule 2), so ha2 records what it receives and checks its table at the end.
    let reconnect: Record<string, number> = {};
    if (src) {
      await backup.ask('stop-sync');
      await until(() => !ha1.service.ready(), 'ha1 to see the backup go', 10000);
      const ended = Math.floor(n / 100);
      src.entries = src.entries.slice(ended);
      await backup.ask('start-sync');
      await until(() => ha1.service.ready(), 'connections back', 10000);
      const t1 = performance.now();
      await untilAsync(async () => (await backupCount(backup)) === n - ended, `${n - ended} conntracks after the reconnect resync`, 300000);
      const s2 = (performance.now() - t1) / 1000;
      reconnect = { reconnectResyncSeconds: Number(s2.toFixed(3)), reconnectEntriesPerSecond: Math.round((n - ended) / s2), reconnectStaleRemoved: ended };
    }
    return {
      source,
      conntracks: n,
      workers,
      seconds: Number(seconds.toFixed(3)),
      entriesPerSecond: Math.round(n / seconds),
      senderResyncMs: ha1.service.vrfs.get('main')?.lastFullResync?.duration ?? -1,
      wireBytesPerConntrack: Number((wire / n).toFixed(1)),
      ...memory,
      ...reconnect,
    };
  } finally {
    await ha1.service.close();
    await ha1.engine.close();
    await backup.stop();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const sizes = (process.env.TANDEM_BENCH_SYNC_SIZES ?? '100000,1000000').split(',').map(Number);
  const live: Record<string, unknown>[] = [];
  for (const n of sizes) {
    for (const w of [1, 2]) {
      process.stderr.write(`bench sync: live ${n} conntracks, ${w} worker(s)\n`);
      live.push(await liveRun(n, w));
    }
  }
  const big = sizes[sizes.length - 1] as number;
  process.stderr.write(`bench sync: full resync of ${big} conntracks\n`);
  const resync = await resyncRun(big, 2);
  process.stderr.write(`bench sync: full resync of ${big} conntracks from a soft engine\n`);
  const resyncFromSoftEngine = await resyncRun(big, 2, 'soft');
  const encryption = await encryptionCost(big, 2, 3);
  return { live, resync, resyncFromSoftEngine, encryption };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [what, size, rounds] = process.argv.slice(2);
  const work = what === 'encryption' ? encryptionCost(Number(size ?? 1_000_000), 2, Number(rounds ?? 3)) : run();
  work.then((r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`), (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
}
