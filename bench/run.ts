// `npm run bench`: runs every benchmark module (each exports `run()`), prints their figures as JSON
// lines and writes them to bench-results.json. `npm run bench -- NAME...` runs only the named ones.
import { writeFileSync } from 'node:fs';
import { argv } from 'node:process';

interface BenchModule {
  run(): Promise<Record<string, unknown>>;
}

// Order: cheap and self-contained first.
const benchmarks = [
  'yang-validate',
  'netconf-commit',
  'netconf',
  'rpc-cost',
  'commit-probes',
  'ssh-guess-rate',
  'netconf-slow-subscribers',
  'nacm',
  'fastpath',
  'sync',
  'anti-entropy',
  'traffic-agent',
  'plane-isolation',
  'ctnetlink-ceiling',
  'conntrack-event-decode',
  'linux-failover',
  'sync-burst',
  'resync-delta',
  'linux-state-read',
  'nft-rule-edit',
  'ct-memory',
  'takeover',
  'takeover-anchor',
  'takeover-guard',
  'role-switch',
  'memory',
] as const;

async function main(): Promise<void> {
  const wanted = argv.slice(2);
  const selected = wanted.length > 0 ? benchmarks.filter((b) => wanted.includes(b)) : [...benchmarks];
  const results: Record<string, unknown> = { date: new Date().toISOString(), node: process.version };
  for (const name of selected) {
    let mod: BenchModule;
    try {
      mod = (await import(`./${name}.js`)) as BenchModule;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
        process.stdout.write(`${JSON.stringify({ bench: name, skipped: 'not built in this version' })}\n`);
        continue;
      }
      throw err;
    }
    process.stderr.write(`bench ${name}: running\n`);
    const figures = await mod.run();
    results[name] = figures;
    process.stdout.write(`${JSON.stringify({ bench: name, ...figures })}\n`);
  }
  writeFileSync('bench-results.json', `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
