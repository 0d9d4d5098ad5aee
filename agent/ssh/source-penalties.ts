// Per-source penalties after failed logins, as OpenSSH's PerSourcePenalties: a source whose
// connections fail authentication (or never try, or let the login time run out) collects penalty
// time; once its penalty reaches `min`, its new connections are closed at accept, before a byte is
// read, until the penalty has run out. Penalties add up to at most `max`. The table is bounded: when
// it is full of live penalties, new sources are not penalised (OpenSSH's "permissive" overflow).
import { logger } from '../../core/log.js';

const log = logger('ssh-penalties');

export type PenaltyKind = 'authfail' | 'noauth' | 'grace-exceeded';

export interface PenaltyConfig {
  /** Seconds per connection that failed authentication. */
  authfail: number;
  /** Seconds per connection that closed without trying to authenticate. */
  noauth: number;
  /** Seconds per connection that reached the login timeout. */
  'grace-exceeded': number;
  /** Most penalty seconds a source can hold. */
  max: number;
  /** Penalty seconds a source must hold before its connections are refused. */
  min: number;
  /** Most sources tracked at once. */
  'max-sources': number;
}

/** OpenSSH 9.8's defaults (crash penalties have no equivalent here). */
export const DEFAULT_PENALTIES: PenaltyConfig = {
  authfail: 5, noauth: 1, 'grace-exceeded': 10, max: 600, min: 15, 'max-sources': 65536,
};

/** Parse "authfail:5 noauth:1 max:600 min:15" (spaces or commas; each key optional) or "off". */
export function parsePenalties(spec: string): PenaltyConfig | undefined {
  if (spec.trim() === 'off' || spec.trim() === 'no') return undefined;
  const out: PenaltyConfig = { ...DEFAULT_PENALTIES };
  for (const part of spec.split(/[\s,]+/).filter(Boolean)) {
    const m = /^([a-z-]+):(\d+)s?$/.exec(part);
    if (!m || !(m[1]! in out)) throw new Error(`bad penalty '${part}' (keys: ${Object.keys(out).join(', ')}; e.g. authfail:5)`);
    out[m[1] as keyof PenaltyConfig] = Number(m[2]);
  }
  if (out.min > out.max) throw new Error(`penalty min (${out.min}) is above max (${out.max})`);
  return out;
}

interface Penalty {
  /** Epoch milliseconds the penalty runs out. */
  until: number;
  /** Reached `min` at some point: connections are refused until `until`. */
  active: boolean;
}

export class SourcePenalties {
  private readonly table = new Map<string, Penalty>();
  private overflowWarned = false;

  constructor(private readonly cfg: PenaltyConfig, private readonly now: () => number = Date.now) {}

  /** Milliseconds left on an enforced penalty of this source; 0 when its connections are allowed. */
  refusedFor(source: string): number {
    const p = this.table.get(source);
    if (!p) return 0;
    const left = p.until - this.now();
    if (left <= 0) {
      this.table.delete(source);
      return 0;
    }
    return p.active ? left : 0;
  }

  /** Add a penalty to the source for how one of its connections ended. */
  penalise(source: string, kind: PenaltyKind): void {
    const secs = this.cfg[kind];
    if (secs <= 0) return;
    const now = this.now();
    let p = this.table.get(source);
    if (p && p.until <= now) {
      this.table.delete(source);
      p = undefined;
    }
    if (!p) {
      if (this.table.size >= this.cfg['max-sources']) this.prune(now);
      if (this.table.size >= this.cfg['max-sources']) {
        if (!this.overflowWarned) log.warn({ limit: this.cfg['max-sources'] }, 'penalty table full; new sources are not penalised');
        this.overflowWarned = true;
        return;
      }
      p = { until: now, active: false };
      this.table.set(source, p);
    }
    p.until = Math.min(p.until + secs * 1000, now + this.cfg.max * 1000);
    if (!p.active && p.until - now >= this.cfg.min * 1000) {
      p.active = true;
      log.warn({ source, kind, seconds: Math.round((p.until - now) / 1000) }, 'source penalised: its connections are refused');
    }
  }

  private prune(now: number): void {
    for (const [k, p] of this.table) if (p.until <= now) this.table.delete(k);
    if (this.table.size < this.cfg['max-sources']) this.overflowWarned = false;
  }
}
