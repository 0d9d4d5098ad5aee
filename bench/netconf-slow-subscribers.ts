// Memory of the agent under subscribers that never read: a `tandem start` child process, 20 (BENCH_SLOW_SUBSCRIBERS)
// sessions that subscribe to notifications and then stop reading (their SSH channel paused), and
// one session committing `BENCH_SLOW_SUBSCRIBER_COMMITS` (3000) edits of running, each changing
// 10 network profiles (one netconf-config-change notification per commit to every subscriber).
// Figures: the agent's RSS (VmRSS) before, every 500 commits and after, and how many subscribers the
// agent closed. BENCH_TANDEM_CLI=/path/to/dist/cli/cli.js measures another build (the "before").
// Run: `npm run bench -- netconf-slow-subscribers`.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { startTandem } from '../test/helpers/tandem-process.js';

const SUBSCRIBERS = Number(process.env.BENCH_SLOW_SUBSCRIBERS ?? 20);
const COMMITS = Number(process.env.BENCH_SLOW_SUBSCRIBER_COMMITS ?? 3000);
const PROFILES = 10;
const NP = 'urn:tandem:yang:tandem-network-profile';

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function edit(round: number): string {
  const type = round % 2 === 0 ? 'tcp-proxy' : 'tcp-fast-path';
  const profiles = Array.from({ length: PROFILES }, (_, i) => `<network-profile xmlns="${NP}"><name>slow-${i}</name><type>${type}</type></network-profile>`);
  return `<edit-config><target><running/></target><config>${profiles.join('')}</config></edit-config>`;
}

export async function run(): Promise<Record<string, unknown>> {
  const cli = process.env.BENCH_TANDEM_CLI;
  const t = await startTandem({ cli, env: { TANDEM_LOG_LEVEL: 'warn' } });
  const clients: NetconfTestClient[] = [];
  try {
    const opts = { host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 60000 };
    const writer = await NetconfTestClient.connect(opts);
    clients.push(writer);
    const first = await writer.rpc(edit(1));
    if (!first.includes('<ok/>')) throw new Error(`edit-config failed: ${first}`);
    for (let i = 0; i < SUBSCRIBERS; i += 1) {
      const s = await NetconfTestClient.connect(opts);
      clients.push(s);
      const r = await s.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>');
      if (!r.includes('<ok/>')) throw new Error(`create-subscription failed: ${r}`);
      s.channel.pause(); // never reads again
    }
    const samples: { commits: number; rss_mb: number }[] = [{ commits: 0, rss_mb: rssMb(t.pid) }];
    const t0 = performance.now();
    for (let i = 0; i < COMMITS; i += 1) {
      const r = await writer.rpc(edit(i));
      if (!r.includes('<ok/>')) throw new Error(`edit-config ${i} failed: ${r.slice(0, 500)}`);
      if ((i + 1) % 500 === 0) {
        samples.push({ commits: i + 1, rss_mb: rssMb(t.pid) });
        process.stderr.write(`bench netconf-slow-subscribers: ${i + 1} commits, RSS ${samples[samples.length - 1]!.rss_mb} MB\n`);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const closedLog = t.stdout().split('\n').filter((l) => l.includes('does not read its notifications')).length;
    const sessions = await writer.rpc('<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><sessions/></netconf-state></filter></get>');
    const open = (sessions.match(/<session>/g) ?? []).length;
    for (const c of clients.splice(1)) c.close();
    await new Promise((r) => setTimeout(r, 3000));
    return {
      cli: cli ?? 'this build', subscribers: SUBSCRIBERS, commits: COMMITS, profiles_per_commit: PROFILES, seconds: Math.round(seconds),
      rss_mb: samples, rss_mb_after_subscribers_gone: rssMb(t.pid), subscribers_closed_by_agent: closedLog, sessions_open_at_end: open,
    };
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
}
