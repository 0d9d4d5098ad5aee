// Warnings an outsider can trigger at will (refused connections, failed proofs) are logged at most
// once per key and interval; the next line says how many were left out, so a flood costs a few
// log lines, not one per attempt, and nothing is hidden.
import type { Logger } from '../core/log.js';
import type { Clock } from '../fastpath/clock.js';

export class RateLimitedWarning {
  private last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly intervalMs = 10_000,
    private readonly maxKeys = 1024,
  ) {}

  /** Log `msg` at warn unless `key` was logged less than the interval ago. Returns whether it logged. */
  warn(key: string, fields: Record<string, unknown>, msg: string): boolean {
    const now = this.clock.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return false;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.last.delete(key);
    if (this.last.size >= this.maxKeys) this.last.delete(this.last.keys().next().value as string);
    this.last.set(key, { at: now, suppressed: 0 });
    this.log.warn(suppressed > 0 ? { ...fields, suppressedSinceLastWarning: suppressed } : fields, msg);
    return true;
  }
}
