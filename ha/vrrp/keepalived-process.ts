// One keepalived (VRRP only) of one VRF: started in the VRF's network namespace with its own pid
// files, its console output logged as JSON lines, restarted with backoff when it dies, reloaded
// with SIGHUP, and ended by PID on stop. `setpriv --pdeathsig TERM` makes the kernel stop it if
// the agent itself dies, so a killed agent never leaves a VRRP master behind.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { logger } from '../../core/log.js';

const log = logger('keepalived');

export interface KeepalivedProcessOptions {
  /** VRF name, for logs. */
  vrf: string;
  /** Network namespace to run in (`ip netns exec`); absent = the agent's own. */
  netns?: string;
  confPath: string;
  /** Directory of this keepalived's pid files. */
  stateDir: string;
  /** keepalived binary (default `keepalived` from PATH). */
  binary?: string;
  /** Restart backoff: first delay, doubled per quick death up to the maximum (default 200 ms .. 10 s). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** A run at least this long resets the backoff (default 10 s). */
  stableMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL (default 5 s). */
  stopTimeoutMs?: number;
  /**
   * Run keepalived under SCHED_RR priority 1 (`chrt`), so that its VRRP process keeps sending
   * and hearing sub-second adverts when the CPU is saturated (default false; the controller sets
   * it where the kernel allows it, see realtimeSchedulingAllowed).
   */
  realtime?: boolean;
}

/**
 * Whether this process may start real-time processes (root or CAP_SYS_NICE, and a kernel that
 * grants SCHED_RR): tried with `chrt --rr 1 true` rather than guessed from the uid.
 */
export function realtimeSchedulingAllowed(): boolean {
  const r = spawnSync('chrt', ['--rr', '1', 'true'], { stdio: 'ignore', timeout: 5000 });
  return r.status === 0;
}

export interface KeepalivedExit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Whether a restart is scheduled (false when stop() ended it). */
  restarting: boolean;
}

/** The line keepalived prints once it is up (signal handlers installed, VRRP child started). */
const STARTUP_COMPLETE = /Startup complete/;
/** If a keepalived version never prints it, it is taken as up after this long. */
const READY_FALLBACK_MS = 3000;

/** keepalived prefixes console lines with a ctime date; the JSON log line has its own time. */
const CTIME_PREFIX = /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}: /;

/** The command line of a keepalived for `opts`, as argv (exported for tests). */
export function keepalivedArgv(opts: KeepalivedProcessOptions): string[] {
  const daemon = [
    opts.binary ?? 'keepalived',
    '--dont-fork',
    '--log-console',
    '--no-syslog',
    '--use-file',
    opts.confPath,
    '--pid',
    join(opts.stateDir, 'keepalived.pid'),
    '--vrrp_pid',
    join(opts.stateDir, 'vrrp.pid'),
    '--vrrp',
  ];
  // Real-time from outside, not with keepalived's own vrrp_rt_priority: with that, keepalived 2.2.7
  // also sets RLIMIT_RTTIME on its VRRP process, fails to set it again on a reload ("child process
  // cannot set realtime rlimit"), and the kernel then SIGKILLs the process within seconds; its
  // respawn comes up as backup and the peer takes over — a false failover on a configuration
  // commit (seen in CI; 8 kills in 10 reloads of two nodes, none with chrt). The VRRP process
  // inherits the policy at fork, so a respawned one is real-time too.
  const scheduled = opts.realtime ? ['chrt', '--rr', '1', ...daemon] : daemon;
  const guarded = ['setpriv', '--pdeathsig', 'TERM', '--', ...scheduled];
  return opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...guarded] : guarded;
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await fs.readFile(file, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive and still a keepalived (not a recycled PID). */
async function isKeepalived(pid: number): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'keepalived';
  } catch {
    return false;
  }
}

export class KeepalivedProcess {
  private child?: ChildProcess;
  private startedAt = 0;
  private backoffMs: number;
  private restartTimer?: NodeJS.Timeout;
  private stopping = false;
  /** keepalived has installed its signal handlers: a SIGHUP before that would kill it. */
  private ready = false;
  private readyTimer?: NodeJS.Timeout;
  private reloadPending = false;
  private exitListeners = new Set<(exit: KeepalivedExit) => void>();
  /** Number of times keepalived was started again after dying. */
  restarts = 0;

  constructor(private readonly opts: KeepalivedProcessOptions) {
    this.backoffMs = opts.backoffMinMs ?? 200;
  }

  /** PID of the keepalived parent process while it runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  /** PID of keepalived's VRRP child (the process that sends adverts), from its pid file. */
  async vrrpPid(): Promise<number | undefined> {
    const pid = await readPid(join(this.opts.stateDir, 'vrrp.pid'));
    return pid !== undefined && (await isKeepalived(pid)) ? pid : undefined;
  }

  onExit(fn: (exit: KeepalivedExit) => void): () => void {
    this.exitListeners.add(fn);
    return () => this.exitListeners.delete(fn);
  }

  /** Start keepalived (no-op while it runs). */
  start(): void {
    this.stopping = false;
    if (this.child || this.restartTimer) return;
    this.spawnOnce();
  }

  private spawnOnce(): void {
    const [cmd, ...args] = keepalivedArgv(this.opts);
    const child = spawn(cmd as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = Date.now();
    this.ready = false;
    clearTimeout(this.readyTimer);
    this.readyTimer = setTimeout(() => this.markReady(child), READY_FALLBACK_MS);
    const ctx = { vrf: this.opts.vrf, netns: this.opts.netns ?? null, pid: child.pid };
    log.info({ ...ctx, conf: this.opts.confPath }, 'keepalived started');
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        if (line.trim() === '') return;
        log.info(ctx, line.replace(CTIME_PREFIX, ''));
        if (STARTUP_COMPLETE.test(line)) this.markReady(child);
      });
    }
    child.on('error', (err) => {
      log.error({ ...ctx, err: err.message }, 'keepalived could not be started');
      // Never spawned (no 'close' may follow): count it as a death, so the backoff retries.
      if (child.pid === undefined) this.onClose(child, null, null);
    });
    child.on('close', (code, signal) => this.onClose(child, code, signal));
  }

  private markReady(child: ChildProcess): void {
    if (this.child !== child || this.ready) return;
    this.ready = true;
    clearTimeout(this.readyTimer);
    if (this.reloadPending) {
      this.reloadPending = false;
      this.reload();
    }
  }

  private onClose(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.ready = false;
    // A new keepalived reads the current file anyway.
    this.reloadPending = false;
    clearTimeout(this.readyTimer);
    const restarting = !this.stopping;
    const pid = child.pid ?? 0;
    if (restarting) {
      if (Date.now() - this.startedAt >= (this.opts.stableMs ?? 10_000)) this.backoffMs = this.opts.backoffMinMs ?? 200;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.opts.backoffMaxMs ?? 10_000);
      log.error({ vrf: this.opts.vrf, pid, code, signal, restartInMs: delay }, 'keepalived died; restarting');
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.stopping) return;
        this.restarts++;
        this.spawnOnce();
      }, delay);
    } else {
      log.info({ vrf: this.opts.vrf, pid, code, signal }, 'keepalived stopped');
    }
    for (const fn of this.exitListeners) fn({ pid, code, signal, restarting });
  }

  /**
   * Make keepalived re-read its configuration file (SIGHUP); starts it if it is not running, and
   * defers the signal while it is starting.
   */
  reload(): void {
    const pid = this.pid;
    if (pid === undefined) {
      this.start();
      return;
    }
    if (!this.ready) {
      this.reloadPending = true;
      return;
    }
    log.info({ vrf: this.opts.vrf, pid }, 'keepalived reload');
    process.kill(pid, 'SIGHUP');
  }

  /** End keepalived by PID (SIGTERM, SIGKILL after the timeout) and remove its pid files. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.reloadPending = false;
    clearTimeout(this.readyTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (child && child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), this.opts.stopTimeoutMs ?? 5000);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        log.warn({ vrf: this.opts.vrf, pid: child.pid }, 'keepalived ignored SIGTERM; killing');
        child.kill('SIGKILL');
        await closed;
      }
    }
    // A VRRP child whose parent was killed may outlive it: end it by the PID it wrote.
    const orphan = await this.vrrpPid();
    if (orphan !== undefined) {
      log.warn({ vrf: this.opts.vrf, pid: orphan }, 'killing leftover keepalived VRRP process');
      try {
        process.kill(orphan, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const f of ['keepalived.pid', 'vrrp.pid']) await fs.rm(join(this.opts.stateDir, f), { force: true });
  }
}

/**
 * Check a keepalived.conf with `keepalived -t` in the namespace it will run in (keepalived also
 * checks that the interfaces exist there). Resolves to undefined when it is fine, else to
 * keepalived's complaints.
 */
export function checkKeepalivedConf(confPath: string, netns?: string, binary = 'keepalived'): Promise<string | undefined> {
  const daemon = [binary, '--config-test', '--use-file', confPath];
  const [cmd, ...args] = netns ? ['ip', 'netns', 'exec', netns, ...daemon] : daemon;
  return new Promise((resolve) => {
    const child = spawn(cmd as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', (err) => resolve(`cannot run ${cmd}: ${err.message}`));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(undefined);
      const text = out
        .split('\n')
        .map((l) => l.replace(CTIME_PREFIX, '').split(confPath).join('keepalived.conf').trim())
        .filter((l) => l !== '')
        .join('; ');
      resolve(text || `keepalived --config-test failed (${signal ?? `exit ${code}`})`);
    });
  });
}
