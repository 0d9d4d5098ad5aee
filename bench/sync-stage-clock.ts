// Per-stage timestamps of the sync pair benchmark (bench/linux-sync-pair.ts): where the time of a
// burst or a resync goes between ha1's kernel and ha2's kernel. Each stage is a counter read from
// the agents' own objects (ha1's engine events, ha1's sync clients, ha2's receiver, ha2's kernel
// count); a sampler records when each first moved and when it reached its target. The sampler runs
// on the event loop the two agents share, every `stepMs` (a blocked loop delays a sample, so a
// stage time is an upper bound by at most one loop turn).
export interface StageTimes {
  /** ms from the anchor until the counter first moved (-1: never). */
  firstMs: number;
  /** ms from the anchor until the counter reached its target (-1: never). */
  doneMs: number;
}

/** Per stage: its counter, and the count that completes it (default: the clock's target). */
export type StageCounters = Record<string, (() => number) | { read: () => number; target: number }>;

export class SyncStageClock {
  private readonly base = new Map<string, number>();
  private readonly times = new Map<string, StageTimes>();
  /** Whether each stage first moved / completed (its times may be negative after rebase()). */
  private readonly seen = new Map<string, { first: boolean; done: boolean }>();
  private timer: NodeJS.Timeout | undefined;
  private anchor = 0;
  /** Every sample: its time (performance.now()) and each stage's count, for countsAt(). */
  private readonly history: { at: number; counts: Record<string, number> }[] = [];

  /** `relative`: counts from the counters' values at start(); otherwise from 0 (counters that are deltas already). */
  constructor(private readonly counters: StageCounters, private readonly target: number, private readonly relative = true, private readonly stepMs = 2) {}

  /** Counters are read from here on, relative to their values now; times from `anchor` (performance.now()). */
  start(): void {
    this.anchor = performance.now();
    for (const name of Object.keys(this.counters)) {
      this.base.set(name, this.relative ? this.read(name) : 0);
      this.times.set(name, { firstMs: -1, doneMs: -1 });
      this.seen.set(name, { first: false, done: false });
    }
    this.timer = setInterval(() => this.sample(), this.stepMs);
  }

  /** Moves the zero of every time to `at` (performance.now() of e.g. the end of the burst). */
  rebase(at: number): void {
    const shift = at - this.anchor;
    this.anchor = at;
    for (const [name, t] of this.times) {
      const seen = this.seen.get(name);
      if (seen?.first) t.firstMs -= shift;
      if (seen?.done) t.doneMs -= shift;
    }
  }

  sample(): void {
    const at = performance.now();
    const now = at - this.anchor;
    const counts: Record<string, number> = {};
    this.history.push({ at, counts });
    for (const [name, c] of Object.entries(this.counters)) {
      const t = this.times.get(name) as StageTimes;
      const seen = this.seen.get(name) as { first: boolean; done: boolean };
      const moved = this.read(name) - (this.base.get(name) ?? 0);
      counts[name] = moved;
      if (seen.done) continue;
      // Not `firstMs < 0` for "not yet": after rebase() a stage that moved before the new zero has a negative time.
      if (moved > 0 && !seen.first) {
        seen.first = true;
        t.firstMs = now;
      }
      if (moved >= (typeof c === 'function' ? this.target : c.target)) {
        seen.done = true;
        t.doneMs = now;
      }
    }
  }

  /**
   * Each stage's count at `at` (performance.now(), e.g. the end of the burst): the last sample
   * taken at or before it (a sample is at most one loop turn late, so counts are lower bounds).
   * What a stage still lacks then is the work queued before it when the load stopped.
   */
  countsAt(at: number): Record<string, number> {
    let best: Record<string, number> = {};
    for (const h of this.history) {
      if (h.at > at) break;
      best = h.counts;
    }
    return { ...best };
  }

  private read(name: string): number {
    const c = this.counters[name];
    if (c === undefined) return 0;
    return typeof c === 'function' ? c() : c.read();
  }

  /** Stops sampling; the times in ms (rounded to 0.1 ms), by stage. */
  stop(): Record<string, StageTimes> {
    this.sample();
    clearInterval(this.timer);
    const out: Record<string, StageTimes> = {};
    for (const [name, t] of this.times) {
      const seen = this.seen.get(name);
      out[name] = { firstMs: seen?.first ? Math.round(t.firstMs * 10) / 10 : -1, doneMs: seen?.done ? Math.round(t.doneMs * 10) / 10 : -1 };
    }
    return out;
  }

  /** One line: `stage first..done` per stage. */
  static format(stages: Record<string, StageTimes>): string {
    return Object.entries(stages).map(([name, t]) => `${name} ${t.firstMs}..${t.doneMs}`).join(', ');
  }
}
