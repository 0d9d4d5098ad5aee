// `npm run bench -- commit-probes`: the two floors under a small commit's latency, measured apart
// from the agent (docs/architecture.md § Commit path): what the disk costs for each way of making
// a small running durable (temp file + fdatasync, rename + directory fsync, one O_DSYNC append),
// and what a postMessage round trip to a worker costs with the plane's commit request's shape.
// The state directory's file system is the one measured: run it where tandem keeps its state.
import { closeSync, constants, fdatasyncSync, fsyncSync, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

const ROUNDS = Number(process.env.TANDEM_BENCH_FLUSH_ROUNDS ?? 200);
const MESSAGES = Number(process.env.TANDEM_BENCH_POST_ROUNDS ?? 2000);

function quantile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return Math.round((s[Math.min(s.length - 1, Math.floor(p * s.length))] as number) * 1000) / 1000;
}

function summary(samples: number[]): { p50_ms: number; p95_ms: number } {
  return { p50_ms: quantile(samples, 0.5), p95_ms: quantile(samples, 0.95) };
}

function diskFlushes(dir: string): Record<string, { p50_ms: number; p95_ms: number }> {
  const whole = Buffer.alloc(3000, 'x'); // a small running.xml
  const record = Buffer.from(`${'y'.repeat(300)}\n`); // one journal record of a one-leaf edit
  const journal = openSync(join(dir, 'running.journal'), constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC, 0o600);
  const times = { tempFileFdatasync: [] as number[], renameDirFsync: [] as number[], oDsyncAppend: [] as number[] };
  try {
    for (let i = 0; i < ROUNDS; i++) {
      let t = performance.now();
      const fd = openSync(join(dir, 'running.xml.tmp'), 'w', 0o600);
      writeSync(fd, whole);
      fdatasyncSync(fd);
      closeSync(fd);
      times.tempFileFdatasync.push(performance.now() - t);
      t = performance.now();
      renameSync(join(dir, 'running.xml.tmp'), join(dir, 'running.xml'));
      const dfd = openSync(dir, 'r');
      fsyncSync(dfd);
      closeSync(dfd);
      times.renameDirFsync.push(performance.now() - t);
      t = performance.now();
      writeSync(journal, record);
      times.oDsyncAppend.push(performance.now() - t);
    }
  } finally {
    closeSync(journal);
  }
  return { tempFileFdatasync: summary(times.tempFileFdatasync), renameDirFsync: summary(times.renameDirFsync), oDsyncAppend: summary(times.oDsyncAppend) };
}

async function postMessageRoundTrip(): Promise<{ p50_ms: number; p95_ms: number }> {
  const worker = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m.id));", { eval: true });
  const request = (id: number): unknown => ({
    t: 'validate-prepare-apply', id,
    calls: [{ index: 0, ctx: { id, changes: [{ operation: 'create', path: "/tandem-network-profile:network-profile[name='bench-edit']", schemaPath: '/x' }], changedPaths: ['/a'], oldConfig: { ref: 1 }, newConfig: { id: 2, base: 1, delta: { o: [['a'], ['b', { v: { x: 1 } }]] } } } }, { index: 1, ctx: { id } }],
  });
  const times: number[] = [];
  try {
    for (let i = 0; i < MESSAGES; i++) {
      const t = performance.now();
      const answered = new Promise((resolve) => worker.once('message', resolve));
      worker.postMessage(request(i));
      await answered;
      times.push(performance.now() - t);
    }
  } finally {
    await worker.terminate();
  }
  return summary(times);
}

export async function run(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(process.env.TANDEM_BENCH_STATE_DIR ?? tmpdir(), 'tandem-flush-'));
  try {
    const disk = diskFlushes(dir);
    const post = await postMessageRoundTrip();
    return { rounds: ROUNDS, disk, postMessageRoundTrip: { messages: MESSAGES, ...post } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
