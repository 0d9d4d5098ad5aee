// Memory of `tandem start` (soft engine) as a user runs it, side by side with Debian's netconfd:
// RSS when idle (8 s after listening), with 10,000 firewall rules committed, and after they are
// removed again (the VRF deleted, commit). Both servers get the same edits over SSH. Method and
// figures: docs/memory.md. Run: `npm run bench -- memory` (netconfd needs root; skipped otherwise).
//   BENCH_MEMORY_RULES=N        rules in the large configuration (default 10000)
//   BENCH_MEMORY_SETTLE_MS=MS   wait before each reading (default 8000)
//   BENCH_MEMORY_LOG_LEVEL=debug  the agent's heap check after each commit in the figures' agentLog
//   BENCH_MEMORY_ONLY=tandem    without netconfd
//   BENCH_MEMORY_UNTUNED=1      also tandem without bin/tandem's process tuning (cli/process-tuning.ts)
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import ssh2 from 'ssh2';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { startTandem } from '../test/helpers/tandem-process.js';
import { anonBreakdown, type AnonBreakdown } from './memory-breakdown.js';
import { startNetconfdTarget } from './netconf.js';

const RULES = Number(process.env.BENCH_MEMORY_RULES ?? 10000);
const SETTLE_MS = Number(process.env.BENCH_MEMORY_SETTLE_MS ?? 8000);
const VRF_NS = 'urn:tandem:yang:tandem-vrf';
const FW_NS = 'urn:tandem:yang:tandem-firewall';

/** RSS and its parts of one process, in MB (kernel's own accounting), and where its anonymous part is (memory-breakdown.ts). */
export interface RssReading { rssMb: number; anonMb: number; fileMb: number; pssMb?: number; hwmMb: number; loadavg: string; anon?: AnonBreakdown }

export function readRss(pid: number): RssReading {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const mb = (k: number) => Number((k / 1024).toFixed(1));
  let pssMb: number | undefined;
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    pssMb = mb(Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN));
  } catch { /* older kernels */ }
  return { rssMb: mb(kb('VmRSS')), anonMb: mb(kb('RssAnon')), fileMb: mb(kb('RssFile')), pssMb, hwmMb: mb(kb('VmHWM')), loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), anon: anonBreakdown(pid) };
}

const settle = () => new Promise((r) => setTimeout(r, SETTLE_MS));

function expectOk(reply: string, what: string): void {
  if (!reply.includes('<ok/>')) throw new Error(`${what}: ${reply.slice(0, 600)}`);
}

function rulesConfig(n: number): string {
  const rules = Array.from({ length: n }, (_, i) =>
    `<rule><name>r${i}</name><action>${i % 2 ? 'drop' : 'accept'}</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port></rule>`);
  return `<config><vrf xmlns="${VRF_NS}"><name>main</name><firewall xmlns="${FW_NS}"><default-action>accept</default-action>${rules.join('')}</firewall></vrf></config>`;
}

const REMOVE_VRF = `<config><vrf xmlns="${VRF_NS}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>main</name></vrf></config>`;

/** The three readings on one server, through one NETCONF session. */
async function measure(pid: number, connect: () => Promise<NetconfTestClient>): Promise<Record<string, unknown>> {
  await settle();
  const idle = readRss(pid);
  const c = await connect();
  try {
    let t = performance.now();
    expectOk(await c.rpc(`<edit-config><target><candidate/></target>${rulesConfig(RULES)}</edit-config>`), 'load edit-config');
    expectOk(await c.rpc('<commit/>'), 'load commit');
    const loadMs = Math.round(performance.now() - t);
    await settle();
    const loaded = readRss(pid);
    t = performance.now();
    expectOk(await c.rpc(`<edit-config><target><candidate/></target>${REMOVE_VRF}</edit-config>`), 'remove edit-config');
    expectOk(await c.rpc('<commit/>'), 'remove commit');
    const removeMs = Math.round(performance.now() - t);
    await settle();
    const removed = readRss(pid);
    // The next small commit after the removal still works (and is what a user does next).
    t = performance.now();
    expectOk(await c.rpc(`<edit-config><target><candidate/></target>${rulesConfig(10)}</edit-config>`), 'small edit-config');
    expectOk(await c.rpc('<commit/>'), 'small commit');
    const smallCommitMs = Math.round(performance.now() - t);
    // And once more after it: what is held only until the next commit (a previous version kept for undo or deltas).
    await settle();
    const afterNextCommit = readRss(pid);
    return {
      afterNextCommit, afterNextCommitOverIdle: Number((afterNextCommit.rssMb / idle.rssMb).toFixed(2)),
      idle, withRules: loaded, afterRemoval: removed, afterOverIdle: Number((removed.rssMb / idle.rssMb).toFixed(2)),
      loadEditCommitMs: loadMs, removeEditCommitMs: removeMs, smallEditCommitAfterMs: smallCommitMs,
    };
  } finally {
    c.close();
  }
}

async function measureTandem(tuned: boolean): Promise<Record<string, unknown>> {
  // BENCH_MEMORY_PLANE=in-process measures the agent with its dataplane in the main thread (default: the plane worker).
  const plane = process.env.BENCH_MEMORY_PLANE;
  const t = await startTandem({ tuned, args: plane ? ['--plane', plane] : [], env: { TANDEM_LOG_LEVEL: process.env.BENCH_MEMORY_LOG_LEVEL ?? 'info' } });
  try {
    const figures = await measure(t.pid, () => NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 300000 }));
    // What the agent logged about its libyang heap and worker start (if anything).
    const notes = t.stdout().split('\n').filter((l) => /libyang instance renewed|libyang instance not renewed|libyang heap check|large configuration removed|plane worker heap collected|file-backed pages released|soft-engine workers started/.test(l)).map((l) => {
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        delete o.level; delete o.time; delete o.app;
        return o;
      } catch {
        return l;
      }
    });
    return { ...figures, agentLog: notes };
  } finally {
    await t.stop();
  }
}

async function measureNetconfd(): Promise<Record<string, unknown>> {
  const key = ssh2.utils.generateKeyPairSync('ed25519');
  const target = await startNetconfdTarget(key, ['tandem-vrf@2026-11-26.yang', 'tandem-firewall@2026-11-26.yang']);
  if (typeof target === 'string') return { skipped: target };
  try {
    if (target.pid === undefined) return { skipped: 'no netconfd pid' };
    return await measure(target.pid, () => NetconfTestClient.connect({ host: target.host, port: target.port, username: target.username, privateKey: target.privateKey, timeoutMs: 300000 }));
  } finally {
    await target.stop();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { rules: RULES, settleMs: SETTLE_MS };
  process.stderr.write('bench memory: tandem (bin/tandem tuning)\n');
  out.tandem = await measureTandem(true);
  if (process.env.BENCH_MEMORY_UNTUNED) {
    process.stderr.write('bench memory: tandem without tuning\n');
    out.tandemUntuned = await measureTandem(false);
  }
  if (process.env.BENCH_MEMORY_ONLY === 'tandem') return out;
  process.stderr.write('bench memory: netconfd\n');
  try {
    out.netconfd = await measureNetconfd();
  } catch (err) {
    out.netconfd = { skipped: `netconfd could not be measured: ${(err as Error).message}` };
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then((r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
