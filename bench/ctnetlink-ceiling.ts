// The kernel's ceiling for SNAT-bound conntrack creation on this machine, measured in the same run
// as tandem's writer (bench/linux-failover.ts): bench/ctnetlink-ceiling/ceiling.c, a minimal raw
// ctnetlink writer (one socket, BATCH creates per datagram, one ack per datagram), built here with
// the system C compiler into a temp dir and run inside a fresh namespace with the same tracking
// ruleset as tandem's measurement. `npm run bench -- ctnetlink-ceiling` runs it alone.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NamespaceFixture, isRoot } from '../lab/namespace-fixture.js';

const SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/ctnetlink-ceiling/ceiling.c');

/** The ruleset both measurements run under: conntrack on, a NAT hook so SNAT bindings are accepted. */
export const TRACKING_RULESET = `table inet bench {
  chain input { type filter hook input priority 0; ct state established accept; }
  chain postrouting { type nat hook postrouting priority 100; }
}`;

export interface CeilingRun {
  conntracks: number;
  batch: number;
  created: number;
  errors: number;
  seconds: number;
  perSecond: number;
  /** The probe's CPU time (user + system) over the writes. */
  cpuSeconds: number;
}

/** Builds the probe; throws with the compiler's words when there is no C compiler. */
export function buildCeilingProbe(): { binary: string; dispose(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-ceiling-'));
  const binary = path.join(dir, 'ceiling');
  execFileSync('cc', ['-O2', '-o', binary, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { binary, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Sizes the global conntrack table for n entries (max and buckets, as docs/linux-engine.md
 * recommends: buckets ≥ max/4) and returns a function that restores the previous values.
 */
export function sizeConntrackTable(n: number): () => void {
  const maxFile = '/proc/sys/net/netfilter/nf_conntrack_max';
  const bucketsFile = '/sys/module/nf_conntrack/parameters/hashsize';
  const oldMax = readFileSync(maxFile, 'utf8').trim();
  const oldBuckets = readFileSync(bucketsFile, 'utf8').trim();
  const max = Math.max(Number(oldMax), Math.ceil(n * 1.25));
  const buckets = Math.max(Number(oldBuckets), 2 ** Math.ceil(Math.log2(max / 4)));
  writeFileSync(maxFile, String(max));
  writeFileSync(bucketsFile, String(buckets));
  return () => {
    writeFileSync(bucketsFile, oldBuckets);
    writeFileSync(maxFile, oldMax);
  };
}

/**
 * A command inside a namespace with a time bound that grows with n (fx.exec allows 30 s: 10^6
 * creates or a flush of them take longer than that on a loaded machine).
 */
export function execInNamespace(ns: string, n: number, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: Math.max(30_000, n / 2), stdio: ['ignore', 'pipe', 'pipe'] });
}

/** One run of the probe: n creates into a fresh namespace's empty table. */
export async function ceilingRun(binary: string, n: number, batch: number): Promise<CeilingRun> {
  const fx = new NamespaceFixture('cl');
  try {
    const ns = fx.add('ha2');
    fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
    const out = execInNamespace(ns, n, binary, [String(n), String(batch), '1']);
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { created: number; errors: number; seconds: number; per_second: number; cpu_seconds: number };
    return { conntracks: n, batch, created: r.created, errors: r.errors, seconds: r.seconds, perSecond: r.per_second, cpuSeconds: r.cpu_seconds };
  } finally {
    for (const ns of fx.namespaces) {
      try {
        execInNamespace(ns, n, 'conntrack', ['-F']);
      } catch {
        // nothing to flush
      }
    }
    await fx.cleanup();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** The best of the probe's batch sizes (64 and 256 messages per datagram): the ceiling. */
export async function ceiling(binary: string, n: number): Promise<CeilingRun> {
  const runs = [await ceilingRun(binary, n, 64), await ceilingRun(binary, n, 256)];
  return runs.sort((a, b) => b.perSecond - a.perSecond)[0];
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, conntracks)' };
  let probe;
  try {
    probe = buildCeilingProbe();
  } catch (err) {
    return { skipped: `no C compiler to build the probe (apt-get install build-essential): ${String(err)}` };
  }
  const sizes = (process.env.TANDEM_BENCH_CEILING_SIZES ?? '100000,1000000').split(',').map(Number);
  const out: Record<string, unknown> = { loadavg: readFileSync('/proc/loadavg', 'utf8').trim() };
  try {
    for (const n of sizes) {
      const restore = sizeConntrackTable(n);
      try {
        out[String(n)] = await ceiling(probe.binary, n);
      } finally {
        restore();
      }
    }
  } finally {
    probe.dispose();
  }
  return out;
}
