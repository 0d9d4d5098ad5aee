// Benchmark "YANG parse + validate": a running configuration with 1,000 virtual services and 10,000
// firewall rules, parsed and fully validated by the libyang WebAssembly binding (what the agent does on
// every edit-config/commit), side by side with native yanglint (Debian libyang-tools) on the same file.
// The runs of both are interleaved so that load from other processes weighs on both alike.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { logger } from '../core/log.js';
import { loadTandemContext } from '../yang/libyang/index.js';
import type { YangContext } from '../yang/libyang/api.js';
import { DEFAULT_SIZE, generateRunningConfig, type GeneratedConfigSize } from './yang-config-generator.js';

const log = logger('bench-yang-validate');
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modulesDir = path.join(repoRoot, 'yang/modules');
const ietfDir = path.join(repoRoot, 'yang/ietf');

const WARMUP_RUNS = 2;
const MEASURED_RUNS = 7;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

interface NativeRun { ms: number; maxRssKb?: number }

/** One whole yanglint process (with its max RSS when GNU time is there). */
function yanglintOnce(args: string[]): NativeRun {
  const useTime = existsSync('/usr/bin/time');
  const t0 = performance.now();
  const r = useTime
    ? spawnSync('/usr/bin/time', ['-f', 'maxrss_kb=%M', 'yanglint', ...args], { encoding: 'utf8', timeout: 120_000 })
    : spawnSync('yanglint', args, { encoding: 'utf8', timeout: 120_000 });
  const ms = performance.now() - t0;
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`yanglint ${args.join(' ')} failed: ${r.stderr}`);
  const rss = /maxrss_kb=(\d+)/.exec(r.stderr);
  return rss ? { ms, maxRssKb: Number(rss[1]) } : { ms };
}

function yanglintVersion(): string | undefined {
  const r = spawnSync('yanglint', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? undefined : r.stdout.trim();
}

export async function run(size: GeneratedConfigSize = DEFAULT_SIZE): Promise<Record<string, unknown>> {
  const xml = generateRunningConfig(size);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-bench-yang-'));
  let ctx: YangContext | undefined;
  try {
    const file = path.join(dir, 'running.xml');
    writeFileSync(file, xml);
    log.info({ bytes: xml.length, ...size }, 'generated running configuration');

    const loadStart = performance.now();
    ctx = await loadTandemContext();
    const contextLoadMs = performance.now() - loadStart;
    const c = ctx;
    const heapEmpty = c.heapUsed();

    const version = yanglintVersion();
    const modules = readdirSync(modulesDir).filter((f) => /^tandem-.*\.yang$/.test(f)).map((f) => path.join(modulesDir, f));
    const search = ['-p', modulesDir, ...(existsSync(ietfDir) ? ['-p', ietfDir] : [])];
    const nativeData = [...search, '-t', 'config', ...modules, file];
    const nativeSchema = [...search, ...modules];

    const wasmFull: number[] = [];
    const wasmParseOnly: number[] = [];
    const nativeFull: NativeRun[] = [];
    const nativeSchemaOnly: NativeRun[] = [];
    for (let i = 0; i < WARMUP_RUNS + MEASURED_RUNS; i++) {
      const measured = i >= WARMUP_RUNS;
      const full = timed(() => c.parse(xml, { format: 'xml', kind: 'config', strict: true, validate: true }).free());
      const parseOnly = timed(() => c.parse(xml, { format: 'xml', kind: 'config', strict: true, validate: false }).free());
      const native = version ? yanglintOnce(nativeData) : undefined;
      const schema = version ? yanglintOnce(nativeSchema) : undefined;
      if (!measured) continue;
      wasmFull.push(full);
      wasmParseOnly.push(parseOnly);
      if (native && schema) {
        nativeFull.push(native);
        nativeSchemaOnly.push(schema);
      }
      log.info({ run: i - WARMUP_RUNS + 1, of: MEASURED_RUNS, wasm_ms: round(full), yanglint_ms: native && round(native.ms) }, 'measured run');
    }

    const tree = c.parse(xml, { format: 'xml', kind: 'config', strict: true, validate: true });
    const heapWithTree = c.heapUsed();
    let printMs: number;
    try {
      printMs = timed(() => tree.print({ format: 'xml', withDefaults: 'explicit' }));
    } finally {
      tree.free();
    }
    const heapAfterFree = c.heapUsed();

    const wasm = {
      context_load_ms: round(contextLoadMs),
      parse_validate_median_ms: round(median(wasmFull)),
      parse_validate_min_ms: round(Math.min(...wasmFull)),
      parse_validate_max_ms: round(Math.max(...wasmFull)),
      parse_only_median_ms: round(median(wasmParseOnly)),
      print_xml_ms: round(printMs),
      heap_context_bytes: heapEmpty,
      heap_tree_bytes: heapWithTree - heapEmpty,
      heap_leaked_after_free_bytes: heapAfterFree - heapEmpty,
    };
    let native: Record<string, unknown> = { skipped: 'yanglint not installed (apt-get install libyang-tools)' };
    if (version) {
      const total = median(nativeFull.map((r) => r.ms));
      const schema = median(nativeSchemaOnly.map((r) => r.ms));
      const rss = (runs: NativeRun[]): number | undefined => runs.some((r) => r.maxRssKb !== undefined)
        ? Math.max(...runs.map((r) => r.maxRssKb ?? 0)) : undefined;
      native = {
        version,
        process_median_ms: round(total),
        process_min_ms: round(Math.min(...nativeFull.map((r) => r.ms))),
        schema_only_process_median_ms: round(schema),
        parse_validate_estimate_ms: round(total - schema),
        max_rss_kb: rss(nativeFull),
        schema_only_max_rss_kb: rss(nativeSchemaOnly),
        wasm_over_native_ratio: round(median(wasmFull) / (total - schema), 2),
      };
    }
    return {
      document: {
        virtual_services: size.virtualServices,
        pool_members: size.virtualServices * size.membersPerService,
        firewall_rules: size.firewallRules,
        bytes: Buffer.byteLength(xml),
      },
      method: `median of ${MEASURED_RUNS} runs after ${WARMUP_RUNS} warm-up runs, wasm and yanglint runs interleaved`,
      wasm_binding: wasm,
      native_yanglint: native,
    };
  } finally {
    ctx?.free();
    rmSync(dir, { recursive: true, force: true });
  }
}

// `node dist/bench/yang-validate.js` runs it alone.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run().then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
