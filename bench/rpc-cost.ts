// What one small RPC costs the server, tandem side by side with netconfd (yuma123 behind its own
// sshd), in two measures: the client's latency (p50/p95, depends on the machine's load) and the
// server's CPU per RPC (utime+stime of every server process over N RPCs, from /proc: the work done,
// nearly independent of load). For netconfd the CPU of sshd's session processes and of
// netconf-subsystem is counted too: they do what tandem's ssh2 and framing do.
// Run: `npm run bench -- rpc-cost`. BENCH_RPC_COST_N: RPCs per measure (default 3000), BENCH_RPC_COST_WARMUP before it (default 1000).
// BENCH_RPC_COST_ONLY=<rpc name>, BENCH_RPC_COST_TANDEM_ONLY=1: narrow the run (profiling). TANDEM_CPU_PROF_DIR: profile tandem's main thread (bench/cpu-profile-preload.ts) and leave the profile there.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { generateParsableKeyPair } from '../agent/ssh/key-pair.js';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { measureNetconfd, startTandemTarget, type Target } from './netconf.js';
import { warmUpClient } from './client-warmup.js';

const N = Number(process.env.BENCH_RPC_COST_N ?? 3000);
const WARMUP = Number(process.env.BENCH_RPC_COST_WARMUP ?? 1000);
const NP_NS = 'urn:tandem:yang:tandem-network-profile';
const CLK_TCK = 100; // Linux USER_HZ

/** The RPCs measured: the smallest reads and the smallest write, as bench/netconf.ts sends them. */
const RPCS: { name: string; xml: string; expect: RegExp }[] = [
  { name: 'get_config_small', xml: '<get-config><source><running/></source></get-config>', expect: /bench-small/ },
  {
    name: 'get_config_filtered',
    xml: `<get-config><source><running/></source><filter type="subtree"><network-profile xmlns="${NP_NS}"><name>bench-small</name></network-profile></filter></get-config>`,
    expect: /bench-small/,
  },
  {
    name: 'get_netconf_state',
    xml: '<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/></filter></get>',
    expect: /sessions>/,
  },
  {
    name: 'edit_config_candidate',
    xml: `<edit-config><target><candidate/></target><config><network-profile xmlns="${NP_NS}"><name>bench-edit</name>`
      + '<type>tcp-fast-path</type><tcp-fast-path><session-idle-timeout>300</session-idle-timeout></tcp-fast-path></network-profile></config></edit-config>',
    expect: /<ok\/>/,
  },
];

function cpuTicks(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      sum += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    } catch {
      // gone
    }
  }
  return sum;
}

function selfTicks(): number {
  const u = process.cpuUsage();
  return ((u.user + u.system) / 1e6) * CLK_TCK;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

async function measure(t: Target): Promise<Record<string, unknown>> {
  const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, privateKey: t.privateKey, timeoutMs: 60000 });
  await new Promise((r) => setTimeout(r, 100)); // netconfd loses an rpc that arrives with the hello
  const out: Record<string, unknown> = {};
  try {
    const small = `<network-profile xmlns="${NP_NS}"><name>bench-small</name><type>tcp-fast-path</type></network-profile>`;
    if (!/<ok\/>/.test(await c.rpc(`<edit-config><target><candidate/></target><config>${small}</config></edit-config>`))) throw new Error('setup edit failed');
    if (!/<ok\/>/.test(await c.rpc('<commit/>'))) throw new Error('setup commit failed');
    const only = process.env.BENCH_RPC_COST_ONLY; // one RPC's name (profiling)
    for (const rpc of RPCS.filter((r) => !only || r.name === only)) {
      for (let i = 0; i < WARMUP; i += 1) await c.rpc(rpc.xml); // warm-up: JIT-compiled code, as in a long-running agent
      const pids = t.cpuPids();
      const lat: number[] = [];
      const s0 = cpuTicks(pids);
      const c0 = selfTicks();
      const w0 = performance.now();
      for (let i = 0; i < N; i += 1) {
        const t0 = performance.now();
        const reply = await c.rpc(rpc.xml);
        lat.push(performance.now() - t0);
        if (i === 0 && !rpc.expect.test(reply)) throw new Error(`${t.name} ${rpc.name}: unexpected reply ${reply.slice(0, 400)}`);
      }
      const wall = performance.now() - w0;
      const server = cpuTicks(pids) - s0;
      const client = selfTicks() - c0;
      lat.sort((a, b) => a - b);
      out[rpc.name] = {
        n: N, p50_ms: r2(pct(lat, 50)), p95_ms: r2(pct(lat, 95)), p99_ms: r2(pct(lat, 99)),
        server_cpu_us_per_rpc: Math.round((server / CLK_TCK / N) * 1e6),
        client_cpu_us_per_rpc: Math.round((client / CLK_TCK / N) * 1e6),
        wall_us_per_rpc: Math.round((wall / N) * 1000),
      };
      process.stderr.write(`bench rpc-cost: ${t.name} ${rpc.name} ${JSON.stringify(out[rpc.name])}\n`);
    }
    await c.rpc('<discard-changes/>');
  } finally {
    c.close();
  }
  return out;
}

export async function run(): Promise<Record<string, unknown>> {
  const key = generateParsableKeyPair('ed25519', {}, 'tandem test key');
  const results: Record<string, unknown> = {
    method: `one ssh2 client session on loopback, ${N} RPCs in sequence per measure after ${WARMUP} warm-up; server CPU = utime+stime `
      + 'of the server processes (tandem: its node process; netconfd: netconfd + sshd and its session children) / N',
    loadavg_before: readFileSync('/proc/loadavg', 'utf8').trim(),
  };
  // The client warmed up on these RPCs first (client-warmup.ts): measured first, tandem would
  // otherwise get the client's own first thousands of RPCs and netconfd a warm client.
  results.client_warmup = await warmUpClient(Number(process.env.BENCH_CLIENT_WARMUP ?? RPCS.length * WARMUP), (i) => RPCS[i % RPCS.length]!.xml);
  const prof = process.env.TANDEM_CPU_PROF_DIR;
  const preload = new URL('./cpu-profile-preload.js', import.meta.url).href;
  const tandem = await startTandemTarget(key, prof ? { NODE_OPTIONS: `--import=${preload}`, CPU_PROFILE_DIR: prof } : {});
  try {
    results.tandem = await measure(tandem);
    if (prof && tandem.pid) {
      process.kill(tandem.pid, 'SIGUSR2');
      await new Promise((r) => setTimeout(r, 2000));
    }
  } finally {
    await tandem.stop();
  }
  results.netconfd = process.env.BENCH_RPC_COST_TANDEM_ONLY ? { skipped: 'BENCH_RPC_COST_TANDEM_ONLY set' } : await measureNetconfd(key, measure);
  results.loadavg_after = readFileSync('/proc/loadavg', 'utf8').trim();
  return results;
}
