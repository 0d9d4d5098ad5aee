// NETCONF benchmark: tandem (`tandem start`, a child process) side by side with Debian's netconfd
// (yuma123) behind its own OpenSSH sshd with the netconf subsystem, both on loopback, both loaded
// with the same YANG module (tandem-network-profile), driven by the same ssh2 client with the same
// edits. Figures: session set-up, edit-config + commit latency (cold: the first pairs after start;
// warm: again after BENCH_NETCONF_WARMUP pairs, 3,000 by default), get-config on a ~1 MiB
// configuration, and the throughput of 50 concurrent sessions. Run: `npm run bench -- netconf`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import ssh2 from 'ssh2';
import { projectRoot } from '../yang/libyang/index.js';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../test/helpers/tandem-process.js';
import { generateParsableKeyPair } from '../agent/ssh/key-pair.js';
import { warmUpClient } from './client-warmup.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const NP_NS = 'urn:tandem:yang:tandem-network-profile';
const SETUP_RUNS = Number(process.env.BENCH_NETCONF_SETUPS ?? 30);
const EDIT_RUNS = Number(process.env.BENCH_NETCONF_EDITS ?? 100);
/**
 * Edit + commit pairs run before the pairs are measured again ('warm'): tandem's JavaScript is
 * compiled by V8 as it runs (TurboFan, on background threads), and a commit's code is still being
 * optimized after several hundred commits (stop 13: 1.6 ms of compile CPU per pair after 50, ~0.1
 * after 3,000). A running agent is warm; the first EDIT_RUNS after start are reported too ('cold').
 */
const WARMUP_PAIRS = Number(process.env.BENCH_NETCONF_WARMUP ?? 3000);
/** Points of the cold curve: the merge pair's p50 in each of the first blocks of EDIT_RUNS pairs after start. */
const CURVE_POINTS = 10;
/** RPCs the client sends to a stub server before either server is measured (client-warmup.ts). */
const CLIENT_WARMUP_RPCS = Number(process.env.BENCH_CLIENT_WARMUP ?? 6000);
const GET_RUNS = Number(process.env.BENCH_NETCONF_GETS ?? 20);
const SESSIONS = 50;
const ROUNDS_PER_SESSION = Number(process.env.BENCH_NETCONF_ROUNDS ?? 10);
const BIG_CONFIG_BYTES = 1024 * 1024;

export interface Target {
  name: string;
  /** The server process (netconfd itself, not its sshd), for memory figures. */
  pid?: number;
  host: string;
  port: number;
  username: string;
  privateKey: string;
  /** Every process that serves the target's sessions now (CPU per RPC counts them all). */
  cpuPids(): number[];
  stop(): Promise<void>;
}

/** A process and all its descendants (from /proc), e.g. an sshd and its per-session children. */
export function processTree(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(root);
  return out;
}

function progress(msg: string): void {
  process.stderr.write(`bench netconf: ${msg}\n`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { n: s.length, p50_ms: r(percentile(s, 50)), p95_ms: r(percentile(s, 95)), p99_ms: r(percentile(s, 99)), max_ms: r(s[s.length - 1] ?? NaN) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Read a child's stderr (a full pipe would block it) and pass on its last lines as progress. */
function drainStderr(child: ChildProcess, name: string): void {
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    for (const line of d.split('\n')) if (line.trim()) progress(`${name}: ${line.trim().slice(0, 300)}`);
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function startTandemTarget(key: ssh2.utils.KeyPairReturn, env: NodeJS.ProcessEnv = {}): Promise<Target> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-tandem-'));
  const keyFile = path.join(dir, 'bench.pub');
  await writeFile(keyFile, key.public);
  const { UserStore } = await import('../agent/ssh/user-store.js');
  await new UserStore(dir).add('bench', { publicKey: key.public, groups: ['admin'] });
  let t: TandemProcess;
  try {
    // BENCH_TANDEM_CLI: another build's dist/cli/cli.js (an anchor run side by side).
    t = await startTandem({ stateDir: dir, users: [], args: ['--max-sessions', '200'], env: { TANDEM_LOG_LEVEL: 'warn', ...env },
      ...(process.env.BENCH_TANDEM_CLI ? { cli: process.env.BENCH_TANDEM_CLI } : {}) });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    name: 'tandem', pid: t.pid, host: t.host, port: t.port, username: 'bench', privateKey: key.private, cpuPids: () => [t.pid],
    stop: async () => {
      await t.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * netconfd (yuma123) and an sshd of its own whose netconf subsystem is netconf-subsystem; `modules`:
 * files of yang/modules/ to load (their tandem imports are found there).
 */
export async function startNetconfdTarget(key: ssh2.utils.KeyPairReturn, modules = ['tandem-network-profile@2026-11-26.yang']): Promise<Target | string> {
  for (const bin of ['/usr/sbin/netconfd', '/usr/sbin/netconf-subsystem', '/usr/sbin/sshd']) {
    if (!existsSync(bin)) return `${bin} is not installed (Debian netconfd, openssh-server)`;
  }
  if (process.getuid?.() !== 0) return 'netconfd behind sshd needs root (sshd and the login user)';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-netconfd-'));
  const sock = path.join(dir, 'ncx.sock');
  const modpath = path.join(projectRoot(), 'yang/modules'); // netconfd's own ietf-* modules are found after it
  const children: ChildProcess[] = [];
  const stop = async () => {
    for (const c of children.reverse()) await stopChild(c);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    // netconfd accepts sessions from the sshd ports it is told; netconf-subsystem names the socket per port.
    const netconfd = spawn('/usr/sbin/netconfd', [...modules.map((m) => `--module=${path.join(projectRoot(), 'yang/modules', m)}`),
      ...(modules.length > 1 ? [`--modpath=${modpath}`] : []), `--ncxserver-sockname=${sock}`, `--port=${port}`, '--access-control=off',
      '--log-level=error', '--no-startup', '--target=candidate', '--max-sessions=1024'], {
      env: { ...process.env, HOME: dir }, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], // it writes backup-cfg.xml in its cwd
    });
    children.push(netconfd);
    drainStderr(netconfd, 'netconfd');
    const deadline = Date.now() + 15000;
    while (!existsSync(sock)) {
      if (netconfd.exitCode !== null || Date.now() > deadline) throw new Error('netconfd did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const hostKey = path.join(dir, 'ssh_host_ed25519_key');
    if (spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]).status !== 0) throw new Error('ssh-keygen failed');
    await writeFile(path.join(dir, 'authorized_keys'), `${key.public}\n`, { mode: 0o600 });
    const config = path.join(dir, 'sshd_config');
    // MaxStartups is raised so that 50 simultaneous logins are not dropped by sshd's default (10:30:100).
    await writeFile(config, [
      `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${hostKey}`, `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`, 'StrictModes no', 'PermitRootLogin prohibit-password',
      'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'MaxStartups 200:30:400', 'MaxSessions 200',
      'LogLevel ERROR', `Subsystem netconf /usr/sbin/netconf-subsystem --ncxserver-sockname=${port}@${sock}`, '',
    ].join('\n'));
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation directory
    const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(sshd);
    drainStderr(sshd, 'sshd');
    await waitForPort(port, 10000);
    return {
      name: 'netconfd', pid: netconfd.pid, host: '127.0.0.1', port, username: 'root', privateKey: key.private, stop,
      cpuPids: () => [netconfd.pid!, ...processTree(sshd.pid!)],
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * A pause after the hellos before the first rpc, for both servers alike: netconfd (netconf-subsystem)
 * loses an rpc that arrives in the same read as the client's hello, and the session then hangs.
 */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 100));
}

function connect(t: Target): Promise<NetconfTestClient> {
  return NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, privateKey: t.privateKey, timeoutMs: 60000 });
}

function expectOk(reply: string, what: string): void {
  if (!/<ok\/>/.test(reply)) throw new Error(`${what} failed: ${reply.slice(0, 600)}`);
}

function profileXml(name: string, extra = ''): string {
  return `<network-profile xmlns="${NP_NS}"><name>${name}</name><type>tcp-fast-path</type>`
    + `<tcp-fast-path><session-idle-timeout>300</session-idle-timeout>${extra}</tcp-fast-path></network-profile>`;
}

/** The remove half of an edit + commit pair. */
const REMOVE_BENCH_EDIT = `<network-profile xmlns="${NP_NS}" xmlns:nc="${BASE}" nc:operation="remove"><name>bench-edit</name></network-profile>`;

function editCandidate(config: string): string {
  return `<edit-config><target><candidate/></target><config>${config}</config></edit-config>`;
}

/** `n` edit-config + commit pairs on the candidate (merge, then remove, of one network-profile), each RPC timed too. */
async function editPairs(c: NetconfTestClient, n: number): Promise<Record<string, unknown> & { edit_merge_commit: ReturnType<typeof stats> }> {
  const merge: number[] = [];
  const remove: number[] = [];
  // The two RPCs of each pair timed apart too: where a pair's time goes (edit or commit).
  const editOnly: number[] = [];
  const commitOnly: number[] = [];
  for (let i = 0; i < n; i += 1) {
    let t0 = performance.now();
    expectOk(await c.rpc(editCandidate(profileXml('bench-edit'))), 'edit-config merge');
    let t1 = performance.now();
    expectOk(await c.rpc('<commit/>'), 'commit');
    merge.push(performance.now() - t0);
    editOnly.push(t1 - t0);
    commitOnly.push(performance.now() - t1);
    t0 = performance.now();
    expectOk(await c.rpc(editCandidate(REMOVE_BENCH_EDIT)), 'edit-config remove');
    t1 = performance.now();
    expectOk(await c.rpc('<commit/>'), 'commit');
    remove.push(performance.now() - t0);
    editOnly.push(t1 - t0);
    commitOnly.push(performance.now() - t1);
  }
  return {
    edit_merge_commit: stats(merge),
    edit_remove_commit: stats(remove),
    edit_candidate_only: stats(editOnly),
    commit_only: stats(commitOnly),
    edit_pair_commit_p50_ms: Math.round((stats(merge).p50_ms + stats(remove).p50_ms) * 100) / 100,
  };
}

async function measureTarget(t: Target): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};

  progress(`${t.name}: session set-up x${SETUP_RUNS}`);
  const setup: number[] = [];
  for (let i = 0; i < SETUP_RUNS; i += 1) {
    const t0 = performance.now();
    const c = await connect(t);
    setup.push(performance.now() - t0);
    c.close();
  }
  out.session_setup = stats(setup);

  const c = await connect(t);
  await settle();
  try {
    progress(`${t.name}: edit-config + commit x${EDIT_RUNS} (merge, then remove, of one network-profile), cold`);
    const cold = await editPairs(c, EDIT_RUNS);
    Object.assign(out, cold);
    progress(`${t.name}: ${WARMUP_PAIRS} edit-config + commit pairs to warm up, then x${EDIT_RUNS} again, warm`);
    // The first warm-up pairs in blocks of EDIT_RUNS: how long cold lasts (the cold curve).
    const curve = [cold.edit_merge_commit.p50_ms];
    let warmed = 0;
    while (curve.length < CURVE_POINTS && warmed + EDIT_RUNS <= WARMUP_PAIRS) {
      curve.push((await editPairs(c, EDIT_RUNS)).edit_merge_commit.p50_ms);
      warmed += EDIT_RUNS;
    }
    out.cold_curve = { pairs_per_point: EDIT_RUNS, merge_pair_p50_ms: curve };
    await editPairs(c, WARMUP_PAIRS - warmed);
    out.warm = { warmup_pairs: WARMUP_PAIRS, ...await editPairs(c, EDIT_RUNS) };

    if (c.serverHello.includes('urn:ietf:params:netconf:capability:writable-running:1.0')) {
      progress(`${t.name}: edit-config merge + remove pair on running x${EDIT_RUNS}`);
      const pair: number[] = [];
      for (let i = 0; i < EDIT_RUNS; i += 1) {
        const t0 = performance.now();
        expectOk(await c.rpc(`<edit-config><target><running/></target><config>${profileXml('bench-run')}</config></edit-config>`), 'edit-config running merge');
        expectOk(await c.rpc(`<edit-config><target><running/></target><config><network-profile xmlns="${NP_NS}" xmlns:nc="${BASE}" nc:operation="remove"><name>bench-run</name></network-profile></config></edit-config>`), 'edit-config running remove');
        pair.push(performance.now() - t0);
      }
      out.edit_pair_running = stats(pair);
    } else {
      out.edit_pair_running = 'not offered (no :writable-running)';
    }

    progress(`${t.name}: get-config of a small configuration x${GET_RUNS * 5}`);
    expectOk(await c.rpc(editCandidate(profileXml('bench-small'))), 'edit-config');
    expectOk(await c.rpc('<commit/>'), 'commit');
    const small: number[] = [];
    for (let i = 0; i < GET_RUNS * 5; i += 1) {
      const t0 = performance.now();
      const r = await c.rpc('<get-config><source><running/></source></get-config>');
      small.push(performance.now() - t0);
      if (!r.includes('bench-small')) throw new Error(`get-config misses data: ${r.slice(0, 300)}`);
    }
    out.get_config_small = stats(small);

    // get of netconf-state (RFC 6022: capabilities, datastores, schemas, sessions, statistics).
    progress(`${t.name}: get of netconf-state x${GET_RUNS * 5}`);
    const state: number[] = [];
    for (let i = 0; i < GET_RUNS * 5; i += 1) {
      const t0 = performance.now();
      const r = await c.rpc('<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/></filter></get>');
      state.push(performance.now() - t0);
      if (!r.includes('<sessions>') && !r.includes(':sessions>')) throw new Error(`get of netconf-state misses sessions: ${r.slice(0, 300)}`);
    }
    out.get_netconf_state = stats(state);

    progress(`${t.name}: ${SESSIONS} concurrent logins, then ${ROUNDS_PER_SESSION} rounds of get-config (filtered) + edit-config on each`);
    let failedLogins = 0;
    let rpcs = 0;
    const tLogin = performance.now();
    const sessions = (await Promise.all(Array.from({ length: SESSIONS }, async () => {
      try {
        return await connect(t);
      } catch {
        failedLogins += 1;
        return undefined;
      }
    }))).filter((x): x is NetconfTestClient => x !== undefined);
    const loginSecs = (performance.now() - tLogin) / 1000;
    await settle();
    const t0 = performance.now();
    try {
      await Promise.all(sessions.map(async (s, i) => {
        const name = `bench-s${i}`;
        for (let r = 0; r < ROUNDS_PER_SESSION; r += 1) {
          const g = await s.rpc(`<get-config><source><running/></source><filter type="subtree"><network-profile xmlns="${NP_NS}"><name>${name}</name></network-profile></filter></get-config>`);
          if (!g.includes('<data') && !g.includes('<ok/>')) throw new Error(`get-config failed: ${g.slice(0, 400)}`);
          expectOk(await s.rpc(editCandidate(profileXml(name, `<enable-syn-protection>${r % 2 === 0}</enable-syn-protection>`))), 'edit-config');
          rpcs += 2;
        }
      }));
    } finally {
      for (const s of sessions) s.close();
    }
    const secs = (performance.now() - t0) / 1000;
    out.concurrent = { sessions: SESSIONS, failed_logins: failedLogins, all_logged_in_s: Math.round(loginSecs * 100) / 100, rpcs, seconds: Math.round(secs * 100) / 100, rpcs_per_s: Math.round(rpcs / secs) };
    expectOk(await c.rpc('<discard-changes/>'), 'discard-changes');

    progress(`${t.name}: loading a ~1 MiB configuration`);
    let big = '';
    let n = 0;
    while (big.length < BIG_CONFIG_BYTES) {
      big += profileXml(`profile-${String(n).padStart(6, '0')}-${'x'.repeat(40)}`,
        '<enable-syn-protection>true</enable-syn-protection><connection-mirror>true</connection-mirror>');
      n += 1;
    }
    const tl = performance.now();
    expectOk(await c.rpc(editCandidate(big)), 'big edit-config');
    expectOk(await c.rpc('<commit/>'), 'big commit');
    out.big_config = { profiles: n, edit_bytes: Buffer.byteLength(big), load_and_commit_ms: Math.round(performance.now() - tl) };

    progress(`${t.name}: get-config of the 1 MiB configuration x${GET_RUNS}`);
    const gets: number[] = [];
    let replyBytes = 0;
    for (let i = 0; i < GET_RUNS; i += 1) {
      const t1 = performance.now();
      const r = await c.rpc('<get-config><source><running/></source></get-config>');
      gets.push(performance.now() - t1);
      replyBytes = Buffer.byteLength(r);
      if (!r.includes(`profile-${String(n - 1).padStart(6, '0')}`)) throw new Error(`get-config misses data: ${r.slice(0, 300)}`);
    }
    out.get_config_1mib = { ...stats(gets), reply_bytes: replyBytes };
  } finally {
    c.close();
  }
  return out;
}

export async function run(): Promise<Record<string, unknown>> {
  const key = generateParsableKeyPair('ed25519', {}, 'tandem test key');
  const results: Record<string, unknown> = {
    method: `ssh2 client on loopback; set-up = TCP connect to server hello (key auth); edits on candidate + commit; `
      + `${SESSIONS} sessions x ${ROUNDS_PER_SESSION} x (filtered get-config + edit-config)`,
  };
  const only = process.env.BENCH_NETCONF_ONLY; // 'tandem' or 'netconfd' (debugging one side)
  progress(`client: ${CLIENT_WARMUP_RPCS} RPCs (the edit-config + commit pairs) to a stub server, so that neither server's cold figures count the client's own warm-up`);
  const pairRpcs = [editCandidate(profileXml('bench-edit')), '<commit/>',
    editCandidate(REMOVE_BENCH_EDIT), '<commit/>'];
  results.client_warmup = await warmUpClient(CLIENT_WARMUP_RPCS, (i) => pairRpcs[i % pairRpcs.length]!);
  if (only !== 'netconfd') {
    const tandem = await startTandemTarget(key);
    try {
      results.tandem = await measureTarget(tandem);
    } finally {
      await tandem.stop();
    }
  }
  if (only === 'tandem') return results;
  const netconfd = await measureNetconfd(key, measureTarget);
  results.netconfd = netconfd;
  if (results.tandem && !('skipped' in netconfd)) results.ratio_tandem_to_netconfd = ratios(results.tandem as Figures, netconfd as Figures);
  return results;
}

/**
 * netconfd started, measured with `measure` and stopped (also on failure); `{ skipped }` with the
 * reason when it cannot be started, so that tandem's figures still come out.
 */
export async function measureNetconfd(
  key: ssh2.utils.KeyPairReturn, measure: (t: Target) => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  let nc: Target | string;
  try {
    nc = await startNetconfdTarget(key);
  } catch (err) {
    nc = `netconfd could not be started: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (typeof nc === 'string') return { skipped: nc };
  try {
    return await measure(nc);
  } finally {
    await nc.stop();
  }
}

type Figures = Record<string, { p50_ms?: number; rpcs_per_s?: number } | number>;

/** tandem / netconfd for each latency p50 (lower is better) and throughput (higher is better). */
function ratios(a: Figures, b: Figures, prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(a)) {
    const x = a[k];
    const y = b[k];
    if (typeof x === 'object' && typeof y === 'object') {
      if (x.p50_ms !== undefined && y.p50_ms) out[`${prefix}${k}_p50`] = Math.round((x.p50_ms / y.p50_ms) * 100) / 100;
      if (x.rpcs_per_s !== undefined && y.rpcs_per_s) out[`${prefix}${k}_rpcs_per_s`] = Math.round((x.rpcs_per_s / y.rpcs_per_s) * 100) / 100;
      // The same figures measured again after the warm-up.
      if (k === 'warm') Object.assign(out, ratios(x as unknown as Figures, y as unknown as Figures, 'warm_'));
    }
  }
  return out;
}
