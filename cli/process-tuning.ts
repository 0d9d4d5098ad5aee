// The process settings `tandem start` runs with, chosen by measurement (docs/memory.md). They have
// to be in the environment before node starts (glibc and V8 read them once), so bin/tandem sets them
// and execs node; whoever spawns dist/cli/cli.js directly (tests, lab, demo) adds tuningEnv() itself.
//
// MALLOC_MMAP_THRESHOLD_: V8 compiles the libyang module's hot functions (TurboFan) on background
// threads whose scratch memory comes from glibc's per-thread arenas; freed, it stays resident
// (~35 MB: fragmented arenas are never trimmed). Allocations of 32 KiB and more served by mmap go
// back to the kernel on free; the compiled code is the same (no cost in validation speed).
// NODE_OPTIONS --max-semi-space-size=4 (MiB): V8's young generation grows to 2 x 16 MiB during a
// large edit and keeps it; capped, RSS after a large removal is ~20 MB lower. Not 1 (stop 14 and
// before): a single-rule commit at 10,000 rules allocates ~340 KB, so a scavenge came every few
// commits and such a commit was ~20 % slower (stop 15, docs/memory.md); idle RSS is the same at 1 and 4.
//
// In the process itself (cli `start`, unless TANDEM_MEMORY_TUNING=off): the clean file-backed pages
// start-up touched are released STARTUP_SETTLE_MS after listening (core/file-pages.ts).
//
// V8 flag --no-wasm-dynamic-tiering, set in the process by cli `start` before libyang is compiled
// (NODE_OPTIONS does not take it): each libyang function the baseline compiler (Liftoff) compiles
// is compiled by TurboFan too, in the background, within seconds of the start, instead of only once
// it has run hot. With dynamic tiering the first hundreds of commits after a start paid ~0.5 ms each
// of wasm recompilation on two cores (stop 14, BENCHMARKS.md); this way start-up pays 0.2-0.5 s of
// CPU once. TANDEM_WASM_TIERING=dynamic keeps V8's default (to measure the two side by side).

import { setFlagsFromString } from 'node:v8';

/** How long after listening the start-up pages are released (start-up work has settled by then). */
export const STARTUP_SETTLE_MS = 2000;

/** The V8 flag tandem adds to NODE_OPTIONS (a value the caller already gives wins: it comes later). */
export const SEMI_SPACE_FLAG = '--max-semi-space-size=4';

/** Name and value of each environment setting (NODE_OPTIONS: what tandem adds in front of the caller's). */
export const TUNING_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '32768', NODE_OPTIONS: SEMI_SPACE_FLAG };

/** The tuning settings merged with the caller's environment (whose own values win). */
export function tuningEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(TUNING_ENV)) {
    const own = env[k];
    if (k === 'NODE_OPTIONS') out[k] = own === undefined || own === '' ? v : own.includes('--max-semi-space-size') ? own : `${v} ${own}`;
    else out[k] = own ?? v;
  }
  return out;
}

/** Which tuning settings are missing from this process's environment (to say so in the log). */
export function missingTuning(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(TUNING_ENV).filter((k) => (k === 'NODE_OPTIONS' ? !(env[k] ?? '').includes('--max-semi-space-size') : env[k] === undefined));
}

/** The V8 flags `tandem start` sets in its own process, before libyang is compiled (see above). */
export const IN_PROCESS_V8_FLAGS: readonly string[] = ['--no-wasm-dynamic-tiering'];

/** Sets IN_PROCESS_V8_FLAGS unless TANDEM_WASM_TIERING=dynamic; returns the flags set. */
export function applyInProcessV8Flags(env: NodeJS.ProcessEnv = process.env): readonly string[] {
  if (env.TANDEM_WASM_TIERING === 'dynamic') return [];
  for (const flag of IN_PROCESS_V8_FLAGS) setFlagsFromString(flag);
  return IN_PROCESS_V8_FLAGS;
}
