// An injectable clock: engines and sync read time and arm timers only through it, so tests drive
// every timeout with a ManualClock instead of sleeping.

/** Handle of an armed timer; cancel() is idempotent. */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds (monotonic for RealClock: performance.timeOrigin + performance.now()). */
  now(): number;
  /** Run `fn` once after `ms` milliseconds of this clock. */
  setTimer(ms: number, fn: () => void): TimerHandle;
  /** Run `fn` every `ms` milliseconds of this clock until cancelled. */
  setInterval(ms: number, fn: () => void): TimerHandle;
}

/** Wall time with Node timers. Timers are unref'd so a clock never keeps the process alive. */
export class RealClock implements Clock {
  now(): number {
    return Math.floor(performance.timeOrigin + performance.now());
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  }

  setInterval(ms: number, fn: () => void): TimerHandle {
    if (!(ms > 0)) throw new RangeError(`interval must be > 0 ms, got ${ms}`);
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  }
}

interface ManualTimer {
  id: number;
  due: number;
  every: number; // 0 for a one-shot timer
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. advance() fires due timers in time order (ties in arming
 * order), with now() equal to each timer's due time while it runs.
 */
export class ManualClock implements Clock {
  private current: number;
  private nextId = 1;
  private timers: ManualTimer[] = [];

  constructor(startMs = 1_000_000) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    return this.arm(Math.max(0, ms), 0, fn);
  }

  setInterval(ms: number, fn: () => void): TimerHandle {
    if (!(ms > 0)) throw new RangeError(`interval must be > 0 ms, got ${ms}`);
    return this.arm(ms, ms, fn);
  }

  /** Number of armed (not cancelled, not yet fired one-shot) timers. */
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Move time forward by `ms`, firing every timer that falls due (at most `maxFires`, a loop bound). */
  advance(ms: number, maxFires = 1_000_000): void {
    if (!(ms >= 0)) throw new RangeError(`cannot advance by ${ms} ms`);
    const target = this.current + ms;
    let fired = 0;
    for (;;) {
      const next = this.earliestDue(target);
      if (!next) break;
      if (++fired > maxFires) throw new Error(`ManualClock.advance: more than ${maxFires} timer firings`);
      this.current = next.due;
      if (next.every > 0) next.due += next.every;
      else next.cancelled = true;
      next.fn();
      this.timers = this.timers.filter((t) => !t.cancelled);
    }
    this.current = target;
  }

  /** Set the clock to an absolute time (not backwards). */
  set(ms: number): void {
    if (ms < this.current) throw new RangeError(`ManualClock cannot go back from ${this.current} to ${ms}`);
    this.advance(ms - this.current);
  }

  private arm(ms: number, every: number, fn: () => void): TimerHandle {
    const timer: ManualTimer = { id: this.nextId++, due: this.current + ms, every, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  private earliestDue(limit: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.timers) {
      if (t.cancelled || t.due > limit) continue;
      if (!best || t.due < best.due || (t.due === best.due && t.id < best.id)) best = t;
    }
    return best;
  }
}
