// Anti-entropy benchmark (`npm run bench -- anti-entropy`): the cost of one round between two
// soft engines (2 workers, 64 ranges per worker) holding the same 10^5 synced conntracks, on
// loopback with the product's sealed frames: a clean round (every range equal), and a round after
// 100 conntracks were deleted behind sync's back on the backup (the repair included). Figures: time
// from the round's start until every connection answered (and repaired), the master's and the
// backup's digest of the table alone, bytes the master sent (frames + AEAD, from its clients'
// counters) and bytes the backup answered (computed from the reply sizes), and, as a load-independent
// anchor measured side by side, the round time as a share of a manual synchronisation of the same table.
import { ManualClock } from '../fastpath/clock.js';
import type { ConntrackEntry } from '../fastpath/engine.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';
import { STATE_INDEX } from '../sync/conntrack-key.js';
import { HEADER_BYTES, TAG_BYTES } from '../sync/protocol.js';
import { digestTable } from '../sync/anti-entropy/table-walk.js';
import type { VrfSync } from '../sync/vrf-sync.js';
import { HaService } from '../ha/ha-service.js';
import type { DataplaneEngine } from '../fastpath/engine.js';
import { SyncService } from '../sync/sync-service.js';
import { freePort, nodeConfig, waitFor } from '../test/sync/two-nodes.js';

interface SyncNode {
  service: SyncService;
}

/** A node as the product runs it (default keepalive and queue: the test harness's 0.5 s keepalive trips under load). */
async function startNode(name: string, engine: DataplaneEngine, clock: ManualClock, config: Record<string, unknown>, preload?: () => Promise<void>): Promise<SyncNode> {
  for (const v of (config['tandem-vrf:vrf'] as Array<Record<string, unknown>>)) await engine.applyVrf(String(v['name']), { name: String(v['name']), json: v });
  await preload?.();
  const ha = new HaService(engine);
  const service = new SyncService(engine, { roles: ha, clock, nodeId: name, backoffMinMs: 20, backoffMaxMs: 200, antiEntropyRanges: RANGES });
  await ha.apply(config);
  await service.applySync(config);
  return { service };
}

const N = Number(process.env['AE_CONNTRACKS'] ?? 100_000);
const WORKERS = 2;
const RANGES = Number(process.env['AE_RANGES'] ?? 64);

function entries(n: number, now: number): ConntrackEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const src = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const sport = 1024 + (i % 50000);
    return {
      vrf: 'main', orig: { proto: 'tcp', src, dst: '192.0.2.10', sport, dport: 443 },
      reply: { proto: 'tcp', src: '192.0.2.10', dst: `100.64.${(i >> 8) & 255}.${i & 255}`, sport: 443, dport: 2000 + (i >> 16) },
      state: 'established', timeout: 432000, alg: false, establishedAt: now, lastActivity: now, synced: true,
    };
  });
}

function vrfOf(n: SyncNode): VrfSync {
  return n.service.vrfs.get('main') as VrfSync;
}

function bytesOut(v: VrfSync): number {
  return v.clientStats().reduce((s, c) => s + c.stats.bytesOut, 0);
}

/** One round on ha1; resolves when every connection's exchange ended (compared ranges reported back, repairs acknowledged). */
async function round(ha1: SyncNode, ha2: SyncNode, expectRepair: boolean): Promise<{ ms: number; bytesOut: number; replyBytes: number; differing: number }> {
  const v1 = vrfOf(ha1);
  const s1 = v1.antiEntropyStats;
  const compared = s1.rangesCompared;
  const repairedRanges = s1.repaired.ranges;
  const before = bytesOut(v1);
  const differingBefore = s1.rangesDiffering;
  const t0 = performance.now();
  const sent = await v1.antiEntropyRound();
  if (sent !== WORKERS) throw new Error(`round went to ${sent} connections, expected ${WORKERS}`);
  await waitFor(() => s1.rangesCompared >= compared + WORKERS * RANGES, 'every range compared', 120_000);
  const differing = s1.rangesDiffering - differingBefore;
  if (expectRepair) await waitFor(() => s1.repaired.ranges >= repairedRanges + differing, 'repairs acknowledged', 120_000);
  const ms = performance.now() - t0;
  void ha2;
  // Backup -> master: one differing-ranges reply per connection (11 + 2 per range), one repair result per repaired connection (25).
  const frame = (payload: number): number => HEADER_BYTES + payload + TAG_BYTES;
  const repairedConnections = expectRepair ? WORKERS : 0;
  const replyBytes = WORKERS * frame(11) + differing * 2 + repairedConnections * frame(25);
  return { ms: Math.round(ms), bytesOut: bytesOut(v1) - before, replyBytes, differing };
}

export async function run(): Promise<Record<string, unknown>> {
  const clock = new ManualClock(1_000_000);
  const port = await freePort();
  const vrfs = [{ name: 'main', port }];
  const e1 = await SoftEngine.create({ clock, workers: WORKERS });
  const e2 = await SoftEngine.create({ clock, workers: WORKERS });
  // ha1's table: entries it holds as synced from a former master; the resync at connection up marks and sends them all.
  const all = entries(N, clock.now());
  const ha1 = await startNode('ha1', e1, clock, nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, vrfs, workers: WORKERS }), async () => {
    for (let i = 0; i < all.length; i += 4096) await e1.upsert(all.slice(i, i + 4096));
  });
  const ha2 = await startNode('ha2', e2, clock, nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, vrfs, workers: WORKERS }));
  try {
    await waitFor(() => ha1.service.ready() && ha2.service.ready(), 'sync up', 30_000);
    await waitFor(() => e2.counters('main').synced === N, `${N} synced on ha2`, 120_000);
    await vrfOf(ha1).resyncIdle();

    const filter = { entry: (e: ConntrackEntry) => (e.synced ? STATE_INDEX.get(e.state) as number : -1), packed: (b: { synced(i: number): boolean; stateIndex(i: number): number }, i: number) => (b.synced(i) ? b.stateIndex(i) : -1) };
    let t = performance.now();
    await digestTable(e2, 'main', WORKERS, RANGES, filter);
    const backupDigestMs = Math.round(performance.now() - t);
    t = performance.now();
    await digestTable(e1, 'main', WORKERS, RANGES, {
      entry: (e) => vrfOfSender(ha1).mirroredState(e.orig),
      packed: (b, i) => vrfOfSender(ha1).mirroredStateIPv4(b.protoIndex(i), b.ipv4(i, 0), b.ipv4(i, 1), b.port(i, 0), b.port(i, 1)),
    });
    const masterDigestMs = Math.round(performance.now() - t);

    const load0 = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const clean = await round(ha1, ha2, false);
    if (clean.differing !== 0) throw new Error(`clean round found ${clean.differing} differing ranges`);

    // 100 conntracks deleted behind sync's back on the backup, spread over the table.
    const victims = Array.from({ length: 100 }, (_, k) => (all[Math.floor((k * N) / 100)] as ConntrackEntry).orig);
    if (await e2.remove('main', victims) !== 100) throw new Error('could not delete the victims on ha2');
    const repaired = await round(ha1, ha2, true);
    if (e2.counters('main').synced !== N) throw new Error(`after the repair ha2 holds ${e2.counters('main').synced} synced, expected ${N}`);

    // Anchor: a manual synchronisation of the same table (every conntrack sent), side by side.
    const received = vrfOf(ha2).receive;
    t = performance.now();
    await vrfOf(ha1).manualSync();
    await waitFor(() => vrfOf(ha2).receive >= received + N, 'manual synchronisation received', 120_000);
    const manualMs = Math.round(performance.now() - t);
    const load1 = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    return {
      conntracks: N, workers: WORKERS, rangesPerWorker: RANGES,
      cleanRoundMs: clean.ms, cleanRoundBytesMasterToBackup: clean.bytesOut, cleanRoundBytesBackupToMaster: clean.replyBytes,
      repairRoundMs: repaired.ms, repairRoundDifferingRanges: repaired.differing, repairRoundBytesMasterToBackup: repaired.bytesOut,
      repairRoundBytesBackupToMaster: repaired.replyBytes, repairedConntracks: vrfOf(ha1).antiEntropyStats.repaired.added,
      masterDigestMs, backupDigestMs, manualSyncMs: manualMs,
      cleanRoundShareOfManualSync: Number((clean.ms / manualMs).toFixed(3)),
      loadavgBefore: load0, loadavgAfter: load1,
    };
  } finally {
    await ha1.service.close();
    await ha2.service.close();
    await e1.close();
    await e2.close();
  }
}

function vrfOfSender(n: SyncNode): { mirroredState(o: ConntrackEntry['orig']): number; mirroredStateIPv4(p: number, s: number, d: number, sp: number, dp: number): number } {
  return (vrfOf(n) as unknown as { sender: { mirroredState(o: ConntrackEntry['orig']): number; mirroredStateIPv4(p: number, s: number, d: number, sp: number, dp: number): number } }).sender;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then((r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  }, (err: unknown) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
