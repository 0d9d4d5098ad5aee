// The process settings `tandem start` runs with, chosen by measurement (docs/memory.md). They have
// to be in the environment before node starts (glibc reads them once), so bin/tandem sets them and
// execs node; whoever spawns dist/cli/cli.js directly (tests, lab, demo) adds tuningEnv() itself.
//
// MALLOC_MMAP_THRESHOLD_: V8 compiles the libyang module's hot functions (TurboFan) on background
// threads whose scratch memory comes from glibc's per-thread arenas; freed, it stays resident
// (~35 MB, fragmented arenas are never trimmed). Allocations of 32 KiB and more served by mmap go
// back to the kernel on free; the compiled code itself is unchanged (no speed cost in validation).

/** Name and value of each environment setting. */
export const TUNING_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '32768' };

/** The tuning settings, without overriding any the caller's environment already has. */
export function tuningEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(TUNING_ENV)) out[k] = env[k] ?? v;
  return out;
}

/** Which tuning settings are missing from this process's environment (to say so in the log). */
export function missingTuning(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(TUNING_ENV).filter((k) => env[k] === undefined);
}
