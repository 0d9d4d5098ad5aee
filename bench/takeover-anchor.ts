// `npm run bench -- takeover-anchor` (root, keepalived, python3-ncclient): the takeover benchmark's
// anchor alone, i.e. what the LAB needs to carry one wave of N round trips through the live master
// (the same two real agents, VRRP, drop-invalid firewall, CG-NAT, sync on; no kill), for the lab
// variants side by side in one run, so they are compared at the same load:
//   bridged     the default lab: the lan switch is the client's own bridge, the wan switch the
//               server's (lab/lab-topology.ts), br_netfilter off in them;
//   switch      both bridges in a switch namespace of their own (two more veth crossings per packet);
//   bridged-nice  bridged, the client and server processes at nice -10 (they stand for other hosts);
//   switch+nf   the same with br_netfilter's hooks on in the switch namespace (the host's default):
//               the lab as it was up to stop 10.
// Per variant: TANDEM_BENCH_ANCHOR_WAVES (default 3) waves of every flow, sends spread over 100 ms,
// each with its median / p90 / last answer, flows later than 0.6 s and 1 s, retransmissions and
// softnet drops (there must be none: nothing fails over), and the clients' send-loop CPU.
// TANDEM_BENCH_ANCHOR_FLOWS (default 50,000), TANDEM_BENCH_ANCHOR_VARIANTS (comma-separated,
// default bridged,switch+nf). TANDEM_BENCH_ANCHOR_PERF=<dir>: `perf record -a -g` during the
// second wave of each variant into <dir>/<variant>.data, and its top symbols and commands in the result.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LabAgentPair } from '../lab/lab-agent-pair.js';
import type { LabAgent } from '../lab/lab-agents.js';
import { LabConnections } from '../lab/lab-connections.js';
import { LabTopology, type LabEdges } from '../lab/lab-topology.js';
import { isRoot } from '../lab/namespace-fixture.js';
import { anchorWave, type AnchorWave } from '../lab/takeover-run.js';

const VARIANTS: Record<string, { edges: LabEdges; bridgeNetfilter: boolean; nice?: number }> = {
  bridged: { edges: 'bridged', bridgeNetfilter: false },
  'bridged-nice': { edges: 'bridged', bridgeNetfilter: false, nice: -10 },
  switch: { edges: 'switch', bridgeNetfilter: false },
  'switch+nf': { edges: 'switch', bridgeNetfilter: true },
};

function progress(line: string): void {
  process.stderr.write(`takeover-anchor: ${line}\n`);
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** The top lines of `perf report` for one sort key (percentages of all samples, no children). */
function perfTop(file: string, sort: string, lines: number): string[] {
  const text = execFileSync('perf', ['report', '-i', file, '--no-children', '--sort', sort, '--stdio', '-g', 'none', '--percent-limit', '0.7'],
    { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  return text.split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, lines).map((l) => l.trim().replace(/\s+/g, ' '));
}

async function withPerf<T>(file: string | undefined, work: () => Promise<T>): Promise<T> {
  if (file === undefined) return work();
  const perf = spawn('perf', ['record', '-a', '-g', '-F', '499', '-o', file], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500)); // perf's own start-up outside the wave
  try {
    return await work();
  } finally {
    perf.kill('SIGINT');
    await new Promise((r) => perf.once('exit', r));
  }
}

async function variantRun(name: string, flows: number, waves: number, perfDir: string | undefined): Promise<Record<string, unknown>> {
  const v = VARIANTS[name];
  if (!v) throw new Error(`TANDEM_BENCH_ANCHOR_VARIANTS: unknown ${name} (${Object.keys(VARIANTS).join(', ')})`);
  const lab = new LabTopology('ta', { edges: v.edges, bridgeNetfilter: v.bridgeNetfilter });
  const agents: LabAgent[] = [];
  let conns: LabConnections | undefined;
  try {
    lab.build();
    await LabAgentPair.start(lab, { sync: true, advertIntervalCs: 5 }, agents);
    conns = await LabConnections.open(lab, flows, { native: true, nice: v.nice });
    for (let round = 0; round < 3; round++) {
      const w = await conns.wave(Math.max(1000, flows / 20), 30_000);
      const ok = w.answers.filter((a) => a >= 0).length;
      if (ok !== flows) throw new Error(`warm-up round ${round}: only ${ok} of ${flows} flows answered through ha1`);
    }
    const results: (AnchorWave & { loadavg: string })[] = [];
    let perf: Record<string, string[]> | undefined;
    for (let i = 0; i < waves; i++) {
      const file = perfDir !== undefined && i === 1 ? path.join(perfDir, `${name}.data`) : undefined;
      const { perFlowMs: _perFlow, ...a } = await withPerf(file, () => anchorWave(conns as LabConnections, 100));
      results.push({ ...a, loadavg: loadavg() });
      progress(`${name} wave ${i + 1}: ${JSON.stringify(results[results.length - 1])}`);
      if (file) perf = { symbols: perfTop(file, 'sym', 25), commands: perfTop(file, 'comm', 12) };
      // Between waves: a slow spread wave so one wave's round-trip times do not carry into the next.
      await conns.wave(Math.max(1000, flows / 20), 30_000);
    }
    const sorted = (k: keyof AnchorWave) => results.map((r) => r[k] as number).sort((a, b) => a - b);
    const mid = (k: keyof AnchorWave) => sorted(k)[Math.floor(results.length / 2)];
    return {
      variant: name, ...v, flows,
      medianOfMedians: mid('medianAnswerMs'), medianOfLast: mid('lastAnswerMs'), medianAfter600ms: mid('answeredAfter600ms'), medianAfter1s: mid('answeredAfter1s'),
      waves: results, ...(perf ? { perf } : {}),
    };
  } finally {
    conns?.close();
    for (const agent of agents) await agent.stop().catch(() => undefined);
    await lab.teardown();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, nftables, keepalived)' };
  const flows = Number(process.env.TANDEM_BENCH_ANCHOR_FLOWS ?? 50_000);
  if (!Number.isInteger(flows) || flows < 1 || flows > 200_000) throw new Error('TANDEM_BENCH_ANCHOR_FLOWS: 1..200000');
  const waves = Number(process.env.TANDEM_BENCH_ANCHOR_WAVES ?? 3);
  if (!Number.isInteger(waves) || waves < 1 || waves > 10) throw new Error('TANDEM_BENCH_ANCHOR_WAVES: 1..10');
  const names = (process.env.TANDEM_BENCH_ANCHOR_VARIANTS ?? 'bridged,switch+nf').split(',').map((s) => s.trim()).filter(Boolean);
  const perfDir = process.env.TANDEM_BENCH_ANCHOR_PERF;
  if (perfDir !== undefined) mkdirSync(perfDir, { recursive: true });
  const variants: Record<string, unknown>[] = [];
  for (const name of names) {
    progress(`${name}: ${flows} flows, load ${loadavg()}`);
    variants.push(await variantRun(name, flows, waves, perfDir));
  }
  return { flows, variants, loadavg: loadavg() };
}
