// `npm run bench -- sync-burst` (root): only part 4 of linux-failover (bench/linux-sync-pair.ts),
// the burst of n conntracks from ha1's kernel to ha2's kernel through the agents' sync, with its
// per-stage clock, the loss per run and the resync after the link returns. Quicker to repeat than
// the whole linux-failover benchmark when working on the event reader (docs/ha-sync.md § Event reading).
// Environment: TANDEM_BENCH_CONNTRACKS (default 100000), TANDEM_BENCH_SYNC_PAIR_RUNS (default 3).
import { readFileSync } from 'node:fs';
import { isRoot } from '../lab/namespace-fixture.js';
import { sizeConntrackTable } from './ctnetlink-ceiling.js';
import { syncPairRun } from './linux-sync-pair.js';

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, conntracks)' };
  const n = Number(process.env.TANDEM_BENCH_CONNTRACKS ?? 100_000);
  const runs = Number(process.env.TANDEM_BENCH_SYNC_PAIR_RUNS ?? 3);
  const restore = sizeConntrackTable(2 * n);
  try {
    const figures = await syncPairRun(n, runs, (line) => process.stderr.write(`bench sync-burst: ${line}\n`));
    return { ...figures, loadavg: readFileSync('/proc/loadavg', 'utf8').trim() };
  } finally {
    restore();
  }
}
