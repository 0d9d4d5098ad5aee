// A fresh libyang instance when its wasm memory is far larger than what it holds: WebAssembly
// memory never shrinks, so after a large configuration is removed the heap it grew to would stay
// resident for the life of the process. Run only between operations (queued like a commit), never
// inside one: the context's trees are re-parsed from their printed form (YangContext.renew).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { LibyangRenewal, YangContext } from '../../yang/libyang/api.js';
import { logger } from '../../core/log.js';
import { filePageReleaseEnabled, releaseFilePagesLater } from '../../core/file-pages.js';

const log = logger('datastore');

/** The linear memory a fresh instance starts with (emscripten's INITIAL_MEMORY of yang/wasm/). */
export const INITIAL_WASM_MEMORY_BYTES = 16 * 1024 * 1024;

export interface RenewalLimits {
  /** What a fresh instance would need: this many times what libyang holds now (room to work)... */
  factor: number;
  /** ...and renewal pays when the memory is this much larger than that (or the initial size). */
  minSavingBytes: number;
  /**
   * Only after the data shrank: what libyang holds is at most 1/shrink of the most it held at a
   * check since the last renewal. A steady configuration whose commits grow the heap for a while
   * is never renewed over and over (each renewal costs a module load and a full GC).
   */
  shrink: number;
}

/** After a renewal, the file-backed pages are released this much later. */
const RELEASE_DELAY_MS = 2000;

export const RENEWAL_LIMITS: RenewalLimits = { factor: 4, minSavingBytes: 4 * 1024 * 1024, shrink: 4 };

/** Per context: the most libyang held at a check since its last renewal. */
const peakUsed = new WeakMap<YangContext, number>();

/** Whether the memory is oversized for what it holds (pure: the decision alone). */
export function oversized(memoryBytes: number, heapUsedBytes: number, limits: RenewalLimits = RENEWAL_LIMITS): boolean {
  const needed = Math.max(INITIAL_WASM_MEMORY_BYTES, limits.factor * heapUsedBytes);
  return memoryBytes >= needed + limits.minSavingBytes;
}

/** Renews the context's libyang instance if its memory is oversized; what was done, or undefined. */
export async function renewLibyangIfOversized(yang: YangContext, limits: RenewalLimits = RENEWAL_LIMITS): Promise<LibyangRenewal | undefined> {
  if (!yang.renew || !yang.wasmMemoryBytes) return undefined;
  const memory = yang.wasmMemoryBytes();
  const used = yang.heapUsed();
  const peak = Math.max(peakUsed.get(yang) ?? 0, used);
  peakUsed.set(yang, peak);
  log.debug({ wasmMemoryBytes: memory, wasmHeapUsed: used, peakHeapUsed: peak }, 'libyang heap check');
  if (!oversized(memory, used, limits) || used * limits.shrink > peak) return undefined;
  try {
    const r = await yang.renew();
    peakUsed.set(yang, r.heapUsedAfter);
    // The old instance's memory and the JS garbage the large configuration left go back now, not
    // whenever V8 next decides to shrink its heap (in an idle agent: maybe never).
    const before = process.memoryUsage();
    fullGc();
    const after = process.memoryUsage();
    log.info({ ...r, rssBefore: before.rss, rssAfter: after.rss, jsHeapTotalAfter: after.heapTotal }, 'libyang instance renewed (its memory had grown far beyond what it holds)');
    // And the code pages the large configuration's handling touched (core/file-pages.ts), once the commit's work has settled.
    if (filePageReleaseEnabled()) releaseFilePagesLater(RELEASE_DELAY_MS, 'large removal');
    return r;
  } catch (err) {
    // The old instance is untouched: only memory stays as it was.
    log.warn({ err: err instanceof Error ? err.message : String(err), wasmMemoryBytes: memory, wasmHeapUsed: used }, 'libyang instance not renewed');
    return undefined;
  }
}

let gc: (() => void) | undefined;

/** A full garbage collection (V8's gc(), exposed once for this purpose without a node flag). */
function fullGc(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
