// The dataplane's share of a single-rule commit (issue 8), in-process and without NETCONF: the
// fastpath subsystem on a real soft engine (2 worker threads), a VRF of N firewall rules, then
// commits that each change one rule's action, as the operations layer hands them over (the new
// JSON shares every unchanged rule with the old, the change names the rule). p50 of validate,
// prepare and apply, and the engine's own count of what it sent to its workers.
// `node dist/bench/commit-fastpath.js [sizes, e.g. 10,10000] [iterations]`.
import { performance } from 'node:perf_hooks';
import type { CommitContext, ConfigJson } from '../core/subsystem.js';
import { createFastpathParts } from '../fastpath/fastpath-parts.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';

type Json = Record<string, unknown>;

function p50(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return Number((s[Math.floor(s.length / 2)] ?? 0).toFixed(3));
}

const rule = (i: number, action: string): Json => ({ name: `r${i}`, action, protocol: 'tcp', 'destination-port': { start: 1 + (i % 65000) } });
const config = (rules: Json[]): ConfigJson => ({
  'tandem-vrf:vrf': [{ name: 'main', 'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, rule: rules } }],
});

export async function commitFastpath(rules: number, iterations: number): Promise<Record<string, unknown>> {
  const engine = await SoftEngine.create();
  try {
    const fastpath = createFastpathParts(engine).subsystems[0]!;
    let list = Array.from({ length: rules }, (_, i) => rule(i, 'accept'));
    let current = config(list);
    let id = 1;
    const phases = ['validate', 'prepare', 'apply'] as const;
    const run = async (ctx: CommitContext, times?: Record<string, number[]>): Promise<void> => {
      for (const m of phases) {
        const started = performance.now();
        const errors = await fastpath[m](ctx);
        times?.[m]!.push(performance.now() - started);
        if (Array.isArray(errors) && errors.length) throw new Error(`${m}: ${JSON.stringify(errors)}`);
      }
    };
    await run({ id: id++, oldConfig: {}, newConfig: current });
    const before = engine.configMessageStats();
    const times: Record<string, number[]> = { validate: [], prepare: [], apply: [] };
    for (let k = 0; k < iterations; k++) {
      const i = (k * 7919) % rules;
      const next = list.slice();
      next[i] = rule(i, k % 2 === 0 ? 'drop' : 'accept');
      const nextConfig = config(next);
      const path = `/tandem-vrf:vrf[name='main']/tandem-firewall:firewall/rule[name='r${i}']/action`;
      await run({
        id: id++, oldConfig: current, newConfig: nextConfig,
        changes: [{ operation: 'modify', path, schemaPath: '/tandem-vrf:vrf/tandem-firewall:firewall/rule/action' }],
      }, times);
      list = next;
      current = nextConfig;
    }
    const after = engine.configMessageStats();
    return {
      rules, iterations,
      p50Ms: Object.fromEntries(phases.map((m) => [m, p50(times[m]!)])),
      wholeVrfConfigsSent: after.vrfConfigs - before.vrfConfigs,
      rulesSentPerCommit: (after.rulesSent - before.rulesSent) / iterations,
    };
  } finally {
    await engine.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = (process.argv[2] ?? '10,10000').split(',').map(Number);
  const iterations = Number(process.argv[3] ?? 300);
  (async () => {
    const out = [];
    for (const n of sizes) out.push(await commitFastpath(n, iterations));
    return out;
  })().then((r) => process.stdout.write(`${JSON.stringify(r)}\n`), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
