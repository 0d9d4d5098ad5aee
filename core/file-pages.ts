// Gives back the clean file-backed pages this process has touched. Node's binary is ~95 MB; loading
// the agent (module loading, V8's snapshot, libyang's compile) touches ~45 MB of its text and
// read-only data, a large edit more, and the kernel maps each fault's 64 KiB neighbourhood too. Those
// pages stay in this process's RSS although an idle agent never runs most of that code again. Done
// twice: once start-up has settled (cli `start`) and after a large configuration was removed (the
// libyang renewal, agent/datastore/libyang-renewal.ts). madvise(MADV_DONTNEED) on a private
// file mapping that holds no copied-on-write page only drops this process's page-table entries: the
// pages stay in the page cache (shared with every other node process) and whatever code runs again
// faults them back in (a minor fault, from the page cache). Mappings that may hold data of their own
// (writable, shared, or with anonymous COW pages such as the relocated .data.rel.ro) are never touched:
// for those, dropping would lose data. Figures and cost: docs/memory.md.
import { readFileSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { logger } from './log.js';

const log = logger('memory');

/** One mapping of /proc/self/smaps, with the counters this needs (kB). */
export interface Mapping { start: bigint; end: bigint; perms: string; inode: string; path: string; rssKb: number; anonymousKb: number }

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/;
const FIELD = /^(Rss|Anonymous):\s+(\d+) kB$/;

/** The mappings of an smaps text. */
export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split('\n')) {
    const h = HEADER.exec(line);
    if (h) {
      cur = { start: BigInt(`0x${h[1]!}`), end: BigInt(`0x${h[2]!}`), perms: h[3]!, inode: h[4]!, path: h[5]!, rssKb: 0, anonymousKb: -1 };
      out.push(cur);
      continue;
    }
    const f = FIELD.exec(line);
    if (f && cur) {
      if (f[1] === 'Rss') cur.rssKb = Number(f[2]);
      else cur.anonymousKb = Number(f[2]);
    }
  }
  return out;
}

/**
 * Whether dropping a mapping's pages loses nothing: a file (inode ≠ 0), private, not writable,
 * and not one copied-on-write page in it (its content is the file's, byte for byte). An unknown
 * Anonymous count (-1) is not proof: never.
 */
export function isReleasable(m: Mapping): boolean {
  return m.inode !== '0' && m.path.startsWith('/') && m.perms[1] === '-' && m.perms[3] === 'p' && m.anonymousKb === 0 && m.rssKb > 0;
}

/**
 * The mappings to release: releasable ones of the executable's loaded image and of shared objects
 * (never unmapped while node runs). Not the executable's mappings beyond its image: V8 maps its
 * builtins from the binary into each isolate's code range, and a worker's isolate may go away (and
 * its range be reused) between reading smaps and madvise.
 */
export function releasableMappings(all: Mapping[], execPath: string): Mapping[] {
  const image = all.filter((m) => m.path === execPath && m.perms[1] === 'w');
  const imageEnd = image.length > 0 ? image[image.length - 1]!.end : 0n;
  return all.filter((m) => isReleasable(m) && (m.path !== execPath || m.end <= imageEnd));
}

export interface ReleaseResult { mappings: number; releasedKb: number; rssBeforeKb: number; rssAfterKb: number }

interface Madvise { (start: bigint, length: bigint): void }

async function loadMadvise(): Promise<Madvise | string> {
  try {
    // Optional dependency (the linux engine's setns uses it too): absent where npm ci had no C compiler.
    const sys = (await import('syscall-napi')).default;
    const nr = sys.__NR_madvise;
    if (typeof nr !== 'bigint') return `syscall-napi has no madvise number for ${process.arch}`;
    const MADV_DONTNEED = 4n;
    return (start, length) => { sys.syscall.sync(nr, start, length, MADV_DONTNEED); };
  } catch (err) {
    return `syscall-napi cannot be loaded (${(err instanceof Error ? err.message : String(err)).split('\n')[0]!})`;
  }
}

async function rssKb(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
}

/**
 * Drops this process's clean file-backed pages (see the head of this file). Resolves what it did,
 * or why it did nothing (not Linux, syscall-napi missing); never throws.
 */
export async function releaseFilePages(): Promise<ReleaseResult | { skipped: string }> {
  if (process.platform !== 'linux') return { skipped: `not on Linux (${process.platform})` };
  const madvise = await loadMadvise();
  if (typeof madvise === 'string') return { skipped: madvise };
  try {
    const rssBeforeKb = await rssKb();
    let mappings = 0;
    let releasedKb = 0;
    const execPath = await realpath(process.execPath);
    // Read and used without yielding in between: the mappings cannot change under this loop from this thread.
    for (const m of releasableMappings(parseSmaps(readFileSync('/proc/self/smaps', 'utf8')), execPath)) {
      madvise(m.start, m.end - m.start);
      mappings++;
      releasedKb += m.rssKb;
    }
    return { mappings, releasedKb, rssBeforeKb, rssAfterKb: await rssKb() };
  } catch (err) {
    return { skipped: `madvise failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Releases the pages delayMs after the call (once the work that touched them has settled) and logs what happened. */
export function releaseFilePagesLater(delayMs: number, after: 'start-up' | 'large removal'): void {
  setTimeout(() => {
    void releaseFilePages().then((r) => {
      if ('skipped' in r) log.info({ after, reason: r.skipped }, 'file-backed pages kept');
      else log.info({ after, mappings: r.mappings, releasedMb: mb(r.releasedKb), rssBeforeMb: mb(r.rssBeforeKb), rssAfterMb: mb(r.rssAfterKb) }, 'file-backed pages released');
    });
  }, delayMs).unref();
}

/** Whether releases are wanted in this process: `tandem start` unless TANDEM_MEMORY_TUNING=off (set by cli). */
let enabled = false;
export function enableFilePageRelease(on: boolean): void { enabled = on; }
export function filePageReleaseEnabled(): boolean { return enabled; }

const mb = (kb: number) => Number((kb / 1024).toFixed(1));
