// The backup node of the sync benchmark, in its own process (as on a real pair): a soft engine and
// its sync, configured from TANDEM_SYNC_BENCH_CONFIG; answers the parent over IPC with its table
// size and memory.
process.env.TANDEM_LOG_LEVEL ??= 'warn';
const { SoftEngine } = await import('../fastpath/soft/soft-engine.js');
const { SyncService } = await import('../sync/sync-service.js');
const { HaService } = await import('../ha/ha-service.js');
const { setPlaintextFramesForBenchmark } = await import('../sync/frame-codec.js');
// The encryption-cost figure only: the parent runs plaintext too (see bench/sync.ts).
setPlaintextFramesForBenchmark(process.env.TANDEM_SYNC_BENCH_PLAINTEXT === '1');

type Json = Record<string, unknown>;
const config = JSON.parse(process.env.TANDEM_SYNC_BENCH_CONFIG ?? '{}') as Json;
const workers = Number(process.env.TANDEM_SYNC_BENCH_WORKERS ?? '2');
const engine = await SoftEngine.create({ workers });
for (const v of config['tandem-vrf:vrf'] as Json[]) await engine.applyVrf(String(v['name']), { name: String(v['name']), json: v });
async function startSync(): Promise<InstanceType<typeof SyncService>> {
  const ha = new HaService(engine);
  const s = new SyncService(engine, { roles: ha, nodeId: 'ha2', backoffMinMs: 20, backoffMaxMs: 200 });
  await ha.apply(config);
  await s.applySync(config);
  return s;
}
let service = await startSync();
const send = (m: unknown): void => {
  process.send?.(m);
};
process.on('message', (m: { cmd: string }) => {
  void (async () => {
    if (m.cmd === 'count') {
      send({ count: engine.counters('main').conntracks, ready: service.ready() });
    } else if (m.cmd === 'memory') {
      global.gc?.();
      const mem = await engine.memory();
      send({ tableBytes: mem.tableBytes, conntracks: mem.conntracks, rss: process.memoryUsage().rss });
    } else if (m.cmd === 'stop-sync') {
      // The sync goes away (as after a restart of the agent's sync); the engine keeps its table.
      await service.close();
      send({ stopped: true });
    } else if (m.cmd === 'start-sync') {
      service = await startSync();
      send({ started: true });
    } else if (m.cmd === 'stop') {
      await service.close();
      await engine.close();
      process.exit(0);
    }
  })();
});
global.gc?.();
send({ started: true, rss: process.memoryUsage().rss });
