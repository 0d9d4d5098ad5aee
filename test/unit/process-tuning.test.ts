// bin/tandem runs `tandem start` with the process tuning of cli/process-tuning.ts (one process: exec),
// and an agent started without it says so in its log.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IN_PROCESS_V8_FLAGS, missingTuning, SEMI_SPACE_FLAG, TUNING_ENV, tuningEnv } from '../../cli/process-tuning.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(root, 'bin', 'tandem');
const CLI = path.join(root, 'dist', 'cli', 'cli.js');

/**
 * Starts an agent, waits for the banner, runs `whileUp(pid)` and returns it with everything the agent
 * wrote to stdout (read after it stopped); always stops it by PID and removes its state directory.
 */
async function withAgent<T>(cmd: string, args: string[], env: NodeJS.ProcessEnv, whileUp: (pid: number) => Promise<T>): Promise<{ result: T; stdout: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-tuning-'));
  const child = spawn(cmd, [...args, 'start', '--state-dir', dir, '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  let result: T;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not listening after 60 s:\n${err}`)), 60000);
      child.stderr.on('data', () => {
        if (/NETCONF over SSH on/.test(err)) { clearTimeout(timer); resolve(); }
      });
      void exited.then(() => { clearTimeout(timer); reject(new Error(`exited before listening:\n${err}`)); });
    });
    result = await whileUp(child.pid!);
  } finally {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  }
  return { result, stdout: out };
}

/** Starts an agent, waits for the banner, returns its environment and log. */
async function startAndInspect(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ environ: Record<string, string>; log: string; pidIsNode: boolean }> {
  const { result, stdout } = await withAgent(cmd, args, env, async (pid) => {
    const raw = await readFile(`/proc/${pid}/environ`, 'utf8');
    const environ = Object.fromEntries(raw.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const exe = await readFile(`/proc/${pid}/comm`, 'utf8');
    return { environ, pidIsNode: exe.trim() === 'node' };
  });
  return { ...result, log: stdout };
}

/**
 * V8's trace of the wasm functions `tandem start` compiled, by tier, from its start to `settleMs`
 * after it listens (then it is stopped: V8 prints the trace through C stdio, flushed at exit). The
 * agent logs only errors, so no line of its own lands inside the trace's.
 */
async function wasmTiersOfStart(env: NodeJS.ProcessEnv, settleMs: number): Promise<{ liftoff: Set<string>; turbofan: Set<string> }> {
  const { stdout } = await withAgent(process.execPath, ['--trace-wasm-compilation-times', CLI], { ...env, TANDEM_LOG_LEVEL: 'error' },
    () => new Promise((r) => setTimeout(r, settleMs)));
  const of = (tier: string) => new Set([...stdout.matchAll(new RegExp(`^Compiled function \\S+#(\\d+) using ${tier},`, 'gm'))].map((m) => m[1]!));
  return { liftoff: of('Liftoff'), turbofan: of('TurboFan') };
}

describe('process tuning of tandem start', function () {
  this.timeout(90000);
  const base: NodeJS.ProcessEnv = { ...process.env, TANDEM_LOG_FORMAT: 'json' };
  for (const k of Object.keys(TUNING_ENV)) delete base[k];

  it('bin/tandem execs node itself (one process) with every tuning setting', async () => {
    const r = await startAndInspect(BIN, [], base);
    expect(r.pidIsNode, 'the PID bin/tandem started is node (exec), not a shell around it').to.equal(true);
    for (const [k, v] of Object.entries(TUNING_ENV)) expect(r.environ[k], k).to.equal(v);
    expect(r.log).not.to.include('started without the process tuning');
  });

  it('a value already in the environment wins; NODE_OPTIONS of the caller are kept', async () => {
    const r = await startAndInspect(BIN, [], { ...base, MALLOC_MMAP_THRESHOLD_: '65536', NODE_OPTIONS: '--stack-trace-limit=20' });
    expect(r.environ.MALLOC_MMAP_THRESHOLD_).to.equal('65536');
    expect(r.environ.NODE_OPTIONS).to.equal(`${SEMI_SPACE_FLAG} --stack-trace-limit=20`);
    const own = await startAndInspect(BIN, [], { ...base, NODE_OPTIONS: '--max-semi-space-size=8' });
    expect(own.environ.NODE_OPTIONS).to.equal('--max-semi-space-size=8');
  });

  it('tuningEnv() merges the same way for the programs that spawn cli.js themselves', () => {
    expect(tuningEnv({})).to.deep.equal(TUNING_ENV);
    expect(tuningEnv({ NODE_OPTIONS: '--stack-trace-limit=20' }).NODE_OPTIONS).to.equal(`${SEMI_SPACE_FLAG} --stack-trace-limit=20`);
    expect(missingTuning({ ...TUNING_ENV })).to.deep.equal([]);
    expect(missingTuning({ NODE_OPTIONS: '--stack-trace-limit=20' })).to.deep.equal(Object.keys(TUNING_ENV));
  });

  it('an agent started as plain node dist/cli/cli.js logs that the tuning is missing', async () => {
    const r = await startAndInspect(process.execPath, [CLI], base);
    const line = r.log.split('\n').find((l) => l.includes('started without the process tuning'));
    expect(line, r.log.slice(0, 2000)).to.be.a('string');
    expect((JSON.parse(line!) as { missing: string[] }).missing).to.deep.equal(Object.keys(TUNING_ENV));
  });

  it(`has libyang's functions compiled by TurboFan soon after start (${IN_PROCESS_V8_FLAGS.join(' ')}), not during the first commits`, async () => {
    // Tuned: the functions the baseline compiler (Liftoff) compiled are compiled by TurboFan too, in
    // the background, within seconds (all of them at 15-20 s; most at 8).
    const tuned = await wasmTiersOfStart(base, 8000);
    expect(tuned.liftoff.size, 'wasm functions compiled at start').to.be.greaterThan(100);
    expect(tuned.turbofan.size, 'of them compiled by TurboFan').to.be.greaterThan(0.8 * tuned.liftoff.size);
    // V8's default (dynamic tiering): only the ones start-up ran hot (about a sixth).
    const dynamic = await wasmTiersOfStart({ ...base, TANDEM_WASM_TIERING: 'dynamic' }, 8000);
    expect(dynamic.liftoff.size, 'wasm functions compiled at start (dynamic)').to.be.greaterThan(100);
    expect(dynamic.turbofan.size, 'of them compiled by TurboFan (dynamic)').to.be.lessThan(0.5 * dynamic.liftoff.size);
  });
});
