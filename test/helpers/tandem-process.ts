// Run `tandem start` as a child process, as users and outside checks do: a temp state dir with a
// test user, a free loopback port (--listen 127.0.0.1:0; the port is read from the banner start
// prints on stderr),
// and stop() that ends it by PID (SIGTERM, then SIGKILL) and removes the temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserStore } from '../../agent/ssh/user-store.js';
import { tuningEnv } from '../../cli/process-tuning.js';

/** The compiled CLI (dist/cli/cli.js). */
export const TANDEM_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cli/cli.js');

export interface TandemProcessOptions {
  /** Use this state dir (kept on stop); default: a fresh temp dir (removed on stop). */
  stateDir?: string;
  /** Users to create before start; default one: admin / admin-secret in NACM group admin. */
  users?: { name: string; password: string; groups?: string[]; recovery?: boolean }[];
  /** More arguments for `tandem start` (e.g. ['--startup', file, '--max-sessions', '5']). */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Another build's cli.js (benchmarks compare before/after); default this build's. */
  cli?: string;
  /** With bin/tandem's process tuning and the in-process one (cli/process-tuning.ts); default true (false: for memory comparisons). */
  tuned?: boolean;
  /** How long to wait for the agent to listen (ms); default 60 s. */
  readyTimeoutMs?: number;
}

export interface TandemProcess {
  child: ChildProcess;
  pid: number;
  host: string;
  port: number;
  stateDir: string;
  username: string;
  password: string;
  /** Everything printed so far (stdout: the JSON log lines; stderr: the banner and errors). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Send a signal by PID (e.g. 'SIGKILL' for durability tests). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, wait up to 10 s, SIGKILL if needed; then remove a temp state dir. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startTandem(opts: TandemProcessOptions = {}): Promise<TandemProcess> {
  const ownDir = opts.stateDir === undefined;
  const stateDir = opts.stateDir ?? await mkdtemp(path.join(os.tmpdir(), 'tandem-test-'));
  const users = opts.users ?? [{ name: 'admin', password: 'admin-secret', groups: ['admin'] }];
  const store = new UserStore(stateDir);
  for (const u of users) await store.add(u.name, { password: u.password, groups: u.groups, recovery: u.recovery });

  const child = spawn(process.execPath, [opts.cli ?? TANDEM_CLI, 'start', '--state-dir', stateDir, '--listen', '127.0.0.1:0', ...(opts.args ?? [])], {
    // As bin/tandem runs it: the tuning merged with the caller's own values (which win; a NODE_OPTIONS
    // given here keeps the semi-space cap unless it sets one itself).
    env: opts.tuned === false
      ? { ...process.env, TANDEM_MEMORY_TUNING: 'off', ...opts.env }
      : { ...process.env, ...opts.env, ...tuningEnv({ ...process.env, ...opts.env }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const cleanupDir = async () => {
    if (ownDir) await rm(stateDir, { recursive: true, force: true });
  };

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tandem start not listening after ${opts.readyTimeoutMs ?? 60000} ms\n${out}\n${err}`)),
        opts.readyTimeoutMs ?? 60000);
      const check = () => {
        const m = /^tandem: NETCONF over SSH on (?:\[[^\]]+\]|[^:\s]+):(\d+) /m.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      child.stderr!.on('data', check);
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`tandem start exited (${code ?? signal}) before listening:\n${err}\n${out}`));
      });
      check();
    });
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await cleanupDir();
    throw e;
  }

  let stopping: Promise<void> | undefined;
  return {
    child, pid: child.pid!, host: '127.0.0.1', port, stateDir, username: users[0]?.name ?? '', password: users[0]?.password ?? '',
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
    },
    stop: () => {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(child.pid!, 'SIGTERM');
          const timer = setTimeout(() => {
            if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
          }, 10000);
          await exited;
          clearTimeout(timer);
        }
        await cleanupDir();
      })();
      return stopping;
    },
  };
}
