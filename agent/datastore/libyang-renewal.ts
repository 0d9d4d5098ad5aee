// After a large configuration is removed, give back what it left behind. Run only between
// operations (queued like a commit), never inside one. What libyang holds is the sign: when it
// shrank from a large peak, a large configuration is gone, and
// - libyang's pages: WebAssembly memory never shrinks, and the pages a large tree touched stay
//   resident even when the memory did not grow (large edits are parsed in the libyang worker; the
//   main instance holds running, ~0.7 KB per firewall rule). A fresh instance (YangContext.renew:
//   the trees are re-parsed from their printed form) touches ~1 MB.
// - the main isolate's JS heap: V8 keeps the pages a large commit grew it to until its memory
//   reducer runs (seconds to never, depending on what else allocates): one full GC now.
// - the code pages the large configuration's handling touched (core/file-pages.ts).
// - the plane worker's JS heap (a full GC there too, announced through core/full-gc.ts).
import type { LibyangRenewal, YangContext } from '../../yang/libyang/api.js';
import { logger } from '../../core/log.js';
import { filePageReleaseEnabled, releaseFilePagesLater } from '../../core/file-pages.js';
import { announceLargeRemoval, fullGc } from '../../core/full-gc.js';

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
  /** A peak of what libyang held at least this large, then shrunk: a large configuration was removed. */
  largeBytes: number;
}

/** After a renewal, the file-backed pages are released this much later. */
const RELEASE_DELAY_MS = 2000;

export const RENEWAL_LIMITS: RenewalLimits = { factor: 4, minSavingBytes: 4 * 1024 * 1024, shrink: 4, largeBytes: 2 * 1024 * 1024 };

/** Per context: the most libyang held at a check since its last renewal. */
const peakUsed = new WeakMap<YangContext, number>();

/** Whether the memory is oversized for what it holds (pure: the decision alone). */
export function oversized(memoryBytes: number, heapUsedBytes: number, limits: RenewalLimits = RENEWAL_LIMITS): boolean {
  const needed = Math.max(INITIAL_WASM_MEMORY_BYTES, limits.factor * heapUsedBytes);
  return memoryBytes >= needed + limits.minSavingBytes;
}

/**
 * Whether a fresh instance would give back enough: the memory grew beyond what the data needs (it
 * never shrinks), or the pages the peak touched (at least `peak` bytes; a fresh instance touches
 * what it holds) are far more than what libyang holds now.
 */
export function renewalPays(memoryBytes: number, heapUsedBytes: number, peakUsedBytes: number, limits: RenewalLimits = RENEWAL_LIMITS): boolean {
  return oversized(memoryBytes, heapUsedBytes, limits) || peakUsedBytes >= limits.factor * heapUsedBytes + limits.minSavingBytes;
}

/** Whether what libyang holds shrank from a large peak (a large configuration was removed). */
export function shrankFromLarge(heapUsedBytes: number, peakUsedBytes: number, limits: RenewalLimits = RENEWAL_LIMITS): boolean {
  return peakUsedBytes >= limits.largeBytes && heapUsedBytes * limits.shrink <= peakUsedBytes;
}

/** What was given back after a large removal (undefined: nothing was removed). */
export interface LargeRemovalRelease {
  /** The libyang renewal, if one paid and succeeded. */
  renewal?: LibyangRenewal;
  rssBefore: number;
  rssAfter: number;
  jsHeapTotalBefore: number;
  jsHeapTotalAfter: number;
}

/**
 * After each commit: if a large configuration was removed, renews the libyang instance (if that
 * pays), runs a full GC and releases the file-backed pages later. What was done, or undefined.
 */
export async function renewLibyangIfOversized(yang: YangContext, limits: RenewalLimits = RENEWAL_LIMITS): Promise<LargeRemovalRelease | undefined> {
  const used = yang.heapUsed();
  const memory = yang.wasmMemoryBytes?.() ?? 0;
  const peak = Math.max(peakUsed.get(yang) ?? 0, used);
  peakUsed.set(yang, peak);
  log.debug({ wasmMemoryBytes: memory, wasmHeapUsed: used, peakHeapUsed: peak }, 'libyang heap check');
  const grown = yang.wasmMemoryBytes !== undefined && oversized(memory, used, limits) && used * limits.shrink <= peak;
  if (!grown && !shrankFromLarge(used, peak, limits)) return undefined;
  const before = process.memoryUsage();
  let renewal: LibyangRenewal | undefined;
  if (yang.renew && yang.wasmMemoryBytes && renewalPays(memory, used, peak, limits)) {
    try {
      renewal = await yang.renew();
    } catch (err) {
      // The old instance is untouched: only memory stays as it was.
      log.warn({ err: err instanceof Error ? err.message : String(err), wasmMemoryBytes: memory, wasmHeapUsed: used }, 'libyang instance not renewed');
    }
  }
  // The peak starts again from here: the next large removal is measured from what is held now.
  peakUsed.set(yang, renewal?.heapUsedAfter ?? used);
  // The old instance's memory and the JS garbage the large configuration left go back now, not
  // whenever V8 next decides to shrink its heap (in an idle agent: maybe never).
  fullGc();
  const after = process.memoryUsage();
  const out: LargeRemovalRelease = { rssBefore: before.rss, rssAfter: after.rss, jsHeapTotalBefore: before.heapTotal, jsHeapTotalAfter: after.heapTotal };
  if (renewal) {
    out.renewal = renewal;
    log.info({ ...renewal, rssBefore: before.rss, rssAfter: after.rss, jsHeapTotalAfter: after.heapTotal }, 'libyang instance renewed (it holds far less than its memory grew or was touched to)');
  }
  log.info({ renewed: !!renewal, wasmHeapUsed: used, peakHeapUsed: peak, ...out }, 'large configuration removed: memory given back');
  // The plane worker's heap held the configuration too (agent/plane/start-plane.ts collects it).
  announceLargeRemoval();
  // And the code pages the large configuration's handling touched (core/file-pages.ts), once the commit's work has settled.
  if (filePageReleaseEnabled()) releaseFilePagesLater(RELEASE_DELAY_MS, 'large removal');
  return out;
}
