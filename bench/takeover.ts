// `npm run bench -- takeover` (root, keepalived, python3-ncclient): a takeover at scale through the
// real agents (lab/takeover-run.ts): TANDEM_BENCH_TAKEOVER_FLOWS (default 50,000) NATed TCP flows
// through ha1, synchronised to ha2; ha1 killed (links cut, agent SIGKILLed); per flow the time of
// its first answer after the kill. Figures: share answering within 1 s of the takeover (goal 100 %),
// first data after the kill (goal <= 0.3 s), resets (0); then the control run without sync (~0
// survive). TANDEM_BENCH_TAKEOVER_ROUNDS (default 1) sync runs; TANDEM_BENCH_TAKEOVER_CONTROL=0
// skips the control run; TANDEM_BENCH_TAKEOVER_ADVERT_CS the VRRP advert-interval (default 5, the YANG default);
// TANDEM_BENCH_TAKEOVER_CLIENT=node runs the node.js test clients instead of the C ones (lab/tcp-load.c);
// TANDEM_BENCH_TAKEOVER_BACKLOG=N sets the host's netdev_max_backlog for the run (restored after). The load average is part of every figure (the machine may be shared).
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
  const hostBacklog = process.env.TANDEM_BENCH_TAKEOVER_BACKLOG === undefined ? undefined : Number(process.env.TANDEM_BENCH_TAKEOVER_BACKLOG);
  if (hostBacklog !== undefined && (!Number.isInteger(hostBacklog) || hostBacklog < 1000 || hostBacklog > 1_000_000)) throw new Error('TANDEM_BENCH_TAKEOVER_BACKLOG: 1000..1000000');
  const synced: TakeoverResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    progress(`${flows} flows with sync, round ${round}/${rounds}`);
    synced.push(await takeoverRun({ sync: true, connections: flows, advertIntervalCs, client, hostBacklog, log: progress }));
  }
  let control: TakeoverResult | undefined;
  if (process.env.TANDEM_BENCH_TAKEOVER_CONTROL !== '0') {
    progress(`${flows} flows without sync (control)`);
    control = await takeoverRun({ sync: false, connections: flows, advertIntervalCs, client, hostBacklog, log: progress });
  }
  return { flows, synced, control };
}
