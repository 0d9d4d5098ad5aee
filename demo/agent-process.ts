// One `tandem start` child process of the demo: its own state directory with one user, listening
// on a free loopback port (read from the line `tandem start` prints). stop() ends it by PID and
// removes the directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserStore } from '../agent/ssh/user-store.js';
import { tuningEnv } from '../cli/process-tuning.js';

const TANDEM_CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url));

export class AgentProcess {
  private constructor(readonly name: string, readonly stateDir: string, readonly child: ChildProcess, readonly port: number, private readonly output: () => string) {}

  static async start(name: string, user: string, password: string): Promise<AgentProcess> {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), `tandem-demo-${name}-`));
    // group admin: the factory NACM configuration gives it every right (docs/nacm.md).
    await new UserStore(stateDir).add(user, { password, groups: ['admin'] });
    const child = spawn(process.execPath, [TANDEM_CLI, 'start', '--engine', 'soft', '--listen', '127.0.0.1:0', '--state-dir', stateDir],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...tuningEnv(), TANDEM_LOG_LEVEL: process.env.TANDEM_LOG_LEVEL ?? 'warn' } });
    let out = '';
    const collect = (d: string): void => { if (out.length < 1_000_000) out += d; };
    child.stdout?.setEncoding('utf8').on('data', collect);
    child.stderr?.setEncoding('utf8').on('data', collect);
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} not listening after 60 s:\n${out}`)), 60_000);
        // The banner is on stderr, the log lines on stdout: both are collected into `out`.
        const check = (): void => {
          const m = /^tandem: NETCONF over SSH on [^:\s]+:(\d+) /m.exec(out);
          if (m) { clearTimeout(timer); resolve(Number(m[1])); }
        };
        child.stdout?.on('data', check);
        child.stderr?.on('data', check);
        child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${name} exited (${code}):\n${out}`)); });
      });
      return new AgentProcess(name, stateDir, child, port, () => out);
    } catch (err) {
      if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
      await rm(stateDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** What the agent printed (its banner and log lines), for a failure report. */
  get log(): string {
    return this.output();
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      process.kill(c.pid, 'SIGTERM');
      const timer = setTimeout(() => { if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL'); }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.stateDir, { recursive: true, force: true });
  }
}
