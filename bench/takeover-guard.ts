// The guard window, counted (issue 11 item 1, fifth pass): the lab's two real agents, N NATed
// connections synced to ha2, ha1 killed; ha2's agent is SIGSTOPped just before the kill and resumed
// D ms after the harness saw ha2 holding both gateways — an agent that is late to hear keepalived,
// as under load, made repeatable. With
// the `agent` guard (keepalived.conf without its master rule: TANDEM_TEST_KERNEL_GUARD=0) only the
// agent lifts the guard, so what reaches ha2 before the agent resumes is dropped (ha2's
// backup_drops) and costs its flow an RTO; with the `kernel` guard keepalived lifts it in its own
// switch. Alternated round by round in one run; the figures are counts, not times, so they do not
// depend on the machine's load (the load is reported with each run).
//   TANDEM_BENCH_GUARD_FLOWS (default 2000), TANDEM_BENCH_GUARD_FREEZE_MS (default 300),
//   TANDEM_BENCH_GUARD_ROUNDS (default 2).
import { readFileSync } from 'node:fs';
import { agentFailoverRun } from '../lab/agent-failover-run.js';
import { isRoot } from '../lab/namespace-fixture.js';

function progress(line: string): void {
  process.stderr.write(`takeover-guard: ${line}\n`);
}

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name}: ${min}..${max}`);
  return v;
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, nftables, keepalived)' };
  const flows = intEnv('TANDEM_BENCH_GUARD_FLOWS', 2000, 1, 20_000);
  const freezeMs = intEnv('TANDEM_BENCH_GUARD_FREEZE_MS', 300, 0, 10_000);
  const rounds = intEnv('TANDEM_BENCH_GUARD_ROUNDS', 2, 1, 10);
  const saved = process.env.TANDEM_TEST_KERNEL_GUARD;
  const runs: Record<string, unknown>[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const guard of ['agent', 'kernel']) {
        process.env.TANDEM_TEST_KERNEL_GUARD = guard === 'agent' ? '0' : '1'; // inherited by the lab's agents
        const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
        progress(`round ${round}/${rounds}, ${guard} guard, ${flows} flows, ha2's agent stopped until ${freezeMs} ms after the takeover; load ${loadBefore}`);
        const r = await agentFailoverRun({ sync: true, connections: flows, freezeHa2Agent: true, freezeHa2AgentMs: freezeMs, log: progress });
        const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
        runs.push({ round, guard, load: `${loadBefore} -> ${loadAfter}`, answered: r.after, resets: r.resets, guardDrops: r.ha2BackupDrops,
          firstAnswerMs: r.outageMs, allAnsweredMs: r.allAnsweredMs, takeoverMs: r.takeoverMs, syncedInKernel: r.syncedInKernel });
        progress(JSON.stringify(runs[runs.length - 1]));
      }
    }
  } finally {
    if (saved === undefined) delete process.env.TANDEM_TEST_KERNEL_GUARD;
    else process.env.TANDEM_TEST_KERNEL_GUARD = saved;
  }
  return { flows, freezeMs, rounds, runs };
}
