// `npm run bench -- takeover` (root, keepalived, python3-ncclient): a takeover at scale through the
// real agents (lab/takeover-run.ts): TANDEM_BENCH_TAKEOVER_FLOWS (default 50,000) NATed TCP flows
// through ha1, synchronised to ha2; ha1 killed (links cut, agent SIGKILLed); per flow the time of
// its first answer after the kill. Figures: share answering within 1 s of the takeover (goal 100 %),
// first data after the kill (goal <= 0.3 s), resets (0), where the late flows' time went, the
// anchor (the same wave through the live master before the kill); then the control run without
// sync (~0 survive).
//
// The host's backlog: every packet of the lab crosses veths, which queue it on the host's per-CPU
// input backlog (net.core.netdev_max_backlog, default 1,000): the kill wave's retransmissions,
// fired by one host's timer wheel in batches of thousands, overflow it on the way to the routers
// (a limit of the lab, where a real appliance has NIC rings). Each round therefore runs twice,
// side by side: with the backlog raised for the run (TANDEM_BENCH_TAKEOVER_BACKLOG, default
// 65,536; restored after) and with the host's own setting. TANDEM_BENCH_TAKEOVER_BACKLOG=host runs
// only the host's setting; TANDEM_BENCH_TAKEOVER_SIDE_BY_SIDE=0 only the raised one.
//
// TANDEM_BENCH_TAKEOVER_ROUNDS (default 1) rounds; TANDEM_BENCH_TAKEOVER_CONTROL=0 skips the
// control run; TANDEM_BENCH_TAKEOVER_ADVERT_CS the VRRP advert-interval (default 5, the YANG
// default); TANDEM_BENCH_TAKEOVER_CLIENT=node runs the node.js test clients instead of the C ones
// (lab/tcp-load.c; no per-flow evidence then); TANDEM_BENCH_TAKEOVER_AGENT_NICE=N (an experiment)
// runs ha2's agent threads at nice N from just before the kill. The load average is part of every figure (the
// machine may be shared).
//
// The lab (fourth pass, docs/linux-engine.md § Takeover): the lan and wan switches are the client's and
// the server's own bridges (TANDEM_BENCH_TAKEOVER_LAB=switch: the older switch namespace, br_netfilter
// on there); the client and echo-server processes run at nice -5 (TANDEM_BENCH_TAKEOVER_CLIENT_NICE,
// 'none' leaves them): they stand for other hosts, and on a shared machine the other jobs otherwise
// take their CPU; keepalived runs real-time and ha2's VRRP thread at nice -10, above them (at -10
// they delayed ha2's guard removal by ~30 ms: 1,175-3,604 guard drops instead of 1). Answers are the kernel's arrival times of the echoes (SO_TIMESTAMPNS in lab/tcp-load.c).
import { readFileSync } from 'node:fs';
import { isRoot } from '../lab/namespace-fixture.js';
import { takeoverRun, type TakeoverResult } from '../lab/takeover-run.js';

function progress(line: string): void {
  process.stderr.write(`takeover: ${line}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, nftables, keepalived)' };
  const flows = Number(process.env.TANDEM_BENCH_TAKEOVER_FLOWS ?? 50_000);
  const rounds = Number(process.env.TANDEM_BENCH_TAKEOVER_ROUNDS ?? 1);
  if (!Number.isInteger(flows) || flows < 1 || flows > 200_000) throw new Error('TANDEM_BENCH_TAKEOVER_FLOWS: 1..200000');
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) throw new Error('TANDEM_BENCH_TAKEOVER_ROUNDS: 1..10');
  const advertIntervalCs = Number(process.env.TANDEM_BENCH_TAKEOVER_ADVERT_CS ?? 5);
  if (!Number.isInteger(advertIntervalCs) || advertIntervalCs < 1 || advertIntervalCs > 4095) throw new Error('TANDEM_BENCH_TAKEOVER_ADVERT_CS: 1..4095');
  const client = process.env.TANDEM_BENCH_TAKEOVER_CLIENT === 'node' ? 'node' : 'c';
  const backlogEnv = process.env.TANDEM_BENCH_TAKEOVER_BACKLOG ?? '65536';
  const raised = backlogEnv === 'host' ? undefined : Number(backlogEnv);
  if (raised !== undefined && (!Number.isInteger(raised) || raised < 1000 || raised > 1_000_000)) throw new Error('TANDEM_BENCH_TAKEOVER_BACKLOG: host or 1000..1000000');
  const hostBacklog = Number(readFileSync('/proc/sys/net/core/netdev_max_backlog', 'utf8').trim());
  // Which backlogs each round runs: the raised one, then the host's own (undefined: left as it is).
  const variants: (number | undefined)[] = raised === undefined ? [undefined]
    : process.env.TANDEM_BENCH_TAKEOVER_SIDE_BY_SIDE === '0' || raised === hostBacklog ? [raised] : [raised, undefined];
  // An experiment (lab/takeover-run.ts agentNice): ha2's agent threads at this nice value before the kill.
  const agentNice = process.env.TANDEM_BENCH_TAKEOVER_AGENT_NICE === undefined ? undefined : Number(process.env.TANDEM_BENCH_TAKEOVER_AGENT_NICE);
  if (agentNice !== undefined && (!Number.isInteger(agentNice) || agentNice < -20 || agentNice > 19)) throw new Error('TANDEM_BENCH_TAKEOVER_AGENT_NICE: -20..19');
  // The lab's switches (lab/lab-topology.ts): bridged (default) or the older switch namespace, with br_netfilter on there as the host has it.
  const edges = process.env.TANDEM_BENCH_TAKEOVER_LAB === 'switch' ? 'switch' as const : 'bridged' as const;
  const bridgeNetfilter = edges === 'switch';
  // The client and echo-server processes stand for other hosts: nice value (TANDEM_BENCH_TAKEOVER_CLIENT_NICE, 'none' leaves it).
  const niceEnv = process.env.TANDEM_BENCH_TAKEOVER_CLIENT_NICE ?? '-5';
  const clientNice = niceEnv === 'none' ? undefined : Number(niceEnv);
  if (clientNice !== undefined && (!Number.isInteger(clientNice) || clientNice < -20 || clientNice > 19)) throw new Error('TANDEM_BENCH_TAKEOVER_CLIENT_NICE: none or -20..19');
  const lab = { edges, bridgeNetfilter, clientNice };
  // Which backup guard (TANDEM_BENCH_TAKEOVER_GUARD): `kernel` (keepalived lifts it, the default),
  // `agent` (keepalived.conf without its master rule: only the agent's removal lifts it, as before
  // the fifth pass), or `both`, alternated within each round, agent first.
  const guardEnv = process.env.TANDEM_BENCH_TAKEOVER_GUARD ?? 'kernel';
  if (!['kernel', 'agent', 'both'].includes(guardEnv)) throw new Error('TANDEM_BENCH_TAKEOVER_GUARD: kernel, agent or both');
  const guards = guardEnv === 'both' ? ['agent', 'kernel'] : [guardEnv];
  const savedGuard = process.env.TANDEM_TEST_KERNEL_GUARD;
  const synced: (TakeoverResult & { guard: string })[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const backlog of variants) {
        for (const guard of guards) {
          process.env.TANDEM_TEST_KERNEL_GUARD = guard === 'agent' ? '0' : '1'; // inherited by the lab's agents
          progress(`${flows} flows with sync, ${guard} guard, round ${round}/${rounds}, netdev_max_backlog ${backlog ?? `${hostBacklog} (the host's)`}; load ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
          synced.push({ guard, ...await takeoverRun({ sync: true, connections: flows, advertIntervalCs, client, hostBacklog: backlog, agentNice, ...lab, log: progress }) });
        }
      }
    }
  } finally {
    if (savedGuard === undefined) delete process.env.TANDEM_TEST_KERNEL_GUARD;
    else process.env.TANDEM_TEST_KERNEL_GUARD = savedGuard;
  }
  let control: TakeoverResult | undefined;
  if (process.env.TANDEM_BENCH_TAKEOVER_CONTROL !== '0') {
    progress(`${flows} flows without sync (control), netdev_max_backlog ${variants[0] ?? hostBacklog}`);
    control = await takeoverRun({ sync: false, connections: flows, advertIntervalCs, client, hostBacklog: variants[0], ...lab, log: progress });
  }
  return { flows, hostBacklog, synced, control };
}
