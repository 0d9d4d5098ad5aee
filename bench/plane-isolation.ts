// Issue 8's figure for planes that cannot starve each other: during a large firewall edit + commit
// on ha1 of a synced pair of two `tandem start` processes (soft engine, sync connected, flows
// generated on ha1 all along), how many sync connections went down on either node, and how long
// another session's small get-config on ha1 waited (p50/p99/max). Run with the dataplane in the plane
// worker (the default) and in the agent's main thread (`--plane in-process`, the composition of
// before), side by side in the same run.
// `node dist/bench/plane-isolation.js [rules] [planes, e.g. in-process,worker] [cli.js of another build]`
// or through bench/run.ts as 'plane-isolation' (100,000 rules, both planes).
import os from 'node:os';
import { runPairUnderEdit, type PairUnderEditFigures } from '../test/plane/pair-under-edit.js';

export async function run(rules = 100_000, planes: ('worker' | 'in-process')[] = ['in-process', 'worker'], cli?: string): Promise<Record<string, unknown>> {
  const runs: (PairUnderEditFigures & { loadavgBefore: string; loadavgAfter: string })[] = [];
  for (const plane of planes) {
    const loadavgBefore = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    const f = await runPairUnderEdit({ rules, plane, cli });
    runs.push({ ...f, loadavgBefore, loadavgAfter: os.loadavg().map((x) => x.toFixed(2)).join(' ') });
    process.stderr.write(`plane-isolation ${plane}: ${JSON.stringify(f)}\n`);
  }
  return { rules, cpus: os.cpus().length, runs };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rules = Number(process.argv[2] ?? 100_000);
  const planes = (process.argv[3] ?? 'in-process,worker').split(',') as ('worker' | 'in-process')[];
  run(rules, planes, process.argv[4]).then((r) => process.stdout.write(`${JSON.stringify(r)}\n`), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
