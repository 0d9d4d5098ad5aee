// Limits on connections that have not logged in yet, as OpenSSH's MaxStartups start:rate:full,
// applied to all connections and to those of each source: below `start` a connection is accepted;
// from `start` on it is refused with probability `rate`%, rising linearly to 100% at `full`. The
// random early drop keeps a flood from locking everyone out deterministically, and the per-source
// limit (below the global start by default) keeps one host's idle sockets from touching the others.
import { randomInt } from 'node:crypto';

export interface Startups {
  start: number;
  /** Percent refused at `start`. */
  rate: number;
  full: number;
}

/** "start:rate:full", or a single number N (= N:100:N, a hard limit). */
export function parseStartups(spec: string): Startups {
  const m = /^(\d+)(?::(\d+):(\d+))?$/.exec(spec.trim());
  if (!m) throw new Error(`expected START:RATE:FULL or N, got '${spec}'`);
  const start = Number(m[1]);
  const s: Startups = m[2] === undefined ? { start, rate: 100, full: start } : { start, rate: Number(m[2]), full: Number(m[3]) };
  if (s.start < 1 || s.full < s.start || s.rate > 100) throw new Error(`need 1 <= START <= FULL and RATE <= 100, got '${spec}'`);
  return s;
}

/** Whether one more connection is refused when `count` are already waiting to log in. */
export function refuseStartup(count: number, s: Startups, draw: () => number = () => randomInt(100)): boolean {
  const start = Math.min(s.start, s.full);
  if (count < start) return false;
  if (count >= s.full) return true;
  const p = s.rate + ((100 - s.rate) * (count - start)) / (s.full - start);
  return draw() < p;
}

/** Connections not logged in yet, in total and by source. */
export class StartupCounter {
  private total = 0;
  private readonly bySource = new Map<string, number>();

  get size(): number {
    return this.total;
  }

  of(source: string): number {
    return this.bySource.get(source) ?? 0;
  }

  add(source: string): void {
    this.total += 1;
    this.bySource.set(source, this.of(source) + 1);
  }

  remove(source: string): void {
    const n = this.of(source);
    if (n <= 0) return;
    this.total -= 1;
    if (n === 1) this.bySource.delete(source);
    else this.bySource.set(source, n - 1);
  }
}
