// What tandem start's in-process memory tuning (cli/process-tuning.ts, core/file-pages.ts) costs a
// single-rule edit-config + commit, measured so that the machine's load matters little: the agent's
// own CPU time per pair (utime + stime of all its threads, /proc/PID/stat) and its page faults per
// pair, next to the wall-clock p50. Variants run interleaved, each a fresh `tandem start` (bin/tandem's
// environment), 10 rules in running, WARMUP pairs not counted, then PAIRS counted.
//   node dist/bench/memory-tuning-cost.js [ROUNDS=2] [PAIRS=100]
// Variants (TANDEM_MEMORY_TUNING): on (the default: file-backed pages released after start-up), off.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { startTandem } from '../test/helpers/tandem-process.js';

const VARIANTS = ['on', 'off'] as const;
const WARMUP = 20;
const TICK_MS = 10; // USER_HZ 100

interface ProcStat { cpuMs: number; minflt: number; majflt: number }

function procStat(pid: number): ProcStat {
  // Fields after the command name (which may hold spaces): state is field 3.
  const after = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const f = (n: number) => Number(after[n - 3]);
  return { cpuMs: (f(14) + f(15)) * TICK_MS, minflt: f(10), majflt: f(12) };
}

function rssMb(pid: number): { rss: number; file: number; anon: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1]) / 1024;
  return { rss: Number(kb('VmRSS').toFixed(1)), file: Number(kb('RssFile').toFixed(1)), anon: Number(kb('RssAnon').toFixed(1)) };
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function measure(variant: string, pairs: number): Promise<Record<string, unknown>> {
  const t = await startTandem({ env: { TANDEM_MEMORY_TUNING: variant } });
  const FW = 'urn:tandem:yang:tandem-firewall';
  const rule = (i: number, action: string) => `<rule><name>r${i}</name><action>${action}</action><protocol>tcp</protocol><destination-port><start>${1 + i}</start></destination-port></rule>`;
  const vrf = (body: string) => `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="${FW}"><default-action>accept</default-action>${body}</firewall></vrf></config>`;
  const ok = (reply: string) => { if (!reply.includes('<ok/>')) throw new Error(reply.slice(0, 500)); };
  try {
    await new Promise((r) => setTimeout(r, 4000)); // past the release (2 s after listening)
    const idle = rssMb(t.pid);
    const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    try {
      ok(await c.rpc(`<edit-config><target><candidate/></target>${vrf(Array.from({ length: 10 }, (_, i) => rule(i, 'accept')).join(''))}</edit-config>`));
      ok(await c.rpc('<commit/>'));
      const pair = async (i: number) => {
        ok(await c.rpc(`<edit-config><target><candidate/></target>${vrf(rule(i % 10, i % 2 ? 'accept' : 'drop'))}</edit-config>`));
        ok(await c.rpc('<commit/>'));
      };
      const first = procStat(t.pid);
      for (let i = 0; i < WARMUP; i++) await pair(i);
      const warm = procStat(t.pid);
      const times: number[] = [];
      for (let i = 0; i < pairs; i++) {
        const s = performance.now();
        await pair(i);
        times.push(performance.now() - s);
      }
      const end = procStat(t.pid);
      return {
        variant, idle, afterPairs: rssMb(t.pid),
        warmupMinorFaults: warm.minflt - first.minflt,
        cpuMsPerPair: Number(((end.cpuMs - warm.cpuMs) / pairs).toFixed(2)),
        minorFaultsPerPair: Number(((end.minflt - warm.minflt) / pairs).toFixed(1)),
        majorFaults: end.majflt - warm.majflt,
        wallMs: { p50: Number(pct(times, 50).toFixed(2)), p95: Number(pct(times, 95).toFixed(2)) },
        loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      };
    } finally {
      c.close();
    }
  } finally {
    await t.stop();
  }
}

export async function run(rounds = 2, pairs = 100, log: (line: string) => void = () => undefined): Promise<Record<string, unknown>> {
  const runs: Record<string, unknown>[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const v of VARIANTS) {
      const m = await measure(v, pairs);
      log(JSON.stringify(m));
      runs.push(m);
    }
  }
  return { runs };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(Number(process.argv[2] ?? 2), Number(process.argv[3] ?? 100), (l) => console.log(l));
}
