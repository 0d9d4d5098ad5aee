// The master's side of anti-entropy for one VRF: every `anti-entropy-interval` seconds it digests
// the conntracks it mirrors (the ones marked synced, with the state it last sent) per worker and
// range, sends each connection's digest (DigestRequest), and repairs the ranges the backup reports
// as differing by sending their conntracks between range markers (the backup drops what is not sent).
//
// Live events, the scheme: frames on one connection are applied in order, so a digest request
// queued after some live messages is compared with the backup's table after those messages. Every
// range that a live event or message touches from the start of the round (before the master reads
// its table) until the reply is "dirty": not compared (marked skipped in the request) or not
// repaired (when it differs), and checked again next round; so whether the master's read saw an
// event's effect or not never matters, and live sync is not delayed by the read. A repair is sent
// with events held (as a full resync does), so events that raced with its dump follow it on the
// wire and win. A range of constant churn is verified in a quiet round only.
import type { ConntrackEntry, DataplaneEngine, HaRole } from '../../fastpath/engine.js';
import type { Clock, TimerHandle } from '../../fastpath/clock.js';
import { tupleHash } from '../../fastpath/tuple-hash.js';
import { logger } from '../../core/log.js';
import { encodeRecords, recordSize, STATES, type SyncRecord } from '../conntrack-codec.js';
import { FrameType } from '../protocol.js';
import type { SyncClient } from '../sync-client.js';
import type { VrfSyncConfig } from '../sync-config.js';
import type { SyncNotification } from '../vrf-sync-types.js';
import type { AntiEntropyStats } from './anti-entropy-stats.js';
import { type DigestReply, encodeDigestRequest, encodeRangeMarker, encodeRangeRepair, SKIPPED } from './digest-frames.js';
import { type DigestFilter, RANGE_WORDS, rangeOf } from './range-digest.js';
import { digestTable, entriesInRanges, type RangeEntry } from './table-walk.js';

const log = logger('anti-entropy');

/** Records per RangeRepair frame (IPv6 records with a virtual service stay below the frame limit). */
const RECORDS_PER_FRAME = 1024;
/** An exchange without an answer for this long (or 3 intervals) is given up at the next tick. */
const EXCHANGE_TIMEOUT_MS = 30_000;
const ESTABLISHED = STATES.indexOf('established');

/** What the sender lends anti-entropy (sync-sender.ts). */
export interface MasterSide {
  readonly role: HaRole;
  readonly bulkGeneration: number;
  verifiable(c: SyncClient): boolean;
  holdEvents<T>(fn: () => Promise<T>): Promise<T>;
  mirroredState(orig: ConntrackEntry['orig']): number;
  mirroredStateIPv4(proto: number, src: number, dst: number, sport: number, dport: number): number;
}

interface Exchange {
  round: number;
  worker: number;
  generation: number;
  sentAt: number;
  phase: 'digest' | 'repair';
}

export class AntiEntropyRounds {
  private timer: TimerHandle | undefined;
  private intervalS = 0;
  private round = 0;
  private running = false;
  private readonly exchanges = new Map<SyncClient, Exchange>();
  /** worker * ranges + range of every range a live message touched since the round began. */
  private dirty: Set<number> | undefined;
  private readonly filter: DigestFilter;

  constructor(
    private readonly vrf: string,
    private readonly config: () => VrfSyncConfig,
    private readonly engine: DataplaneEngine,
    private readonly netClock: Clock,
    private readonly side: MasterSide,
    private readonly peers: () => SyncClient[][],
    private readonly stats: AntiEntropyStats,
    private readonly notify: (n: SyncNotification) => void,
    readonly ranges: number,
  ) {
    this.filter = {
      entry: (e) => (e.alg ? -1 : side.mirroredState(e.orig)),
      packed: (b, i) => (b.alg(i) ? -1 : side.mirroredStateIPv4(b.protoIndex(i), b.ipv4(i, 0), b.ipv4(i, 1), b.port(i, 0), b.port(i, 1))),
    };
  }

  /** (Re)arm the round timer for `seconds` (0: off). */
  configure(seconds: number): void {
    if (seconds === this.intervalS && (this.timer !== undefined) === seconds > 0) return;
    this.timer?.cancel();
    this.timer = undefined;
    this.intervalS = seconds;
    if (seconds > 0) this.timer = this.netClock.setInterval(seconds * 1000, () => void this.runRound());
  }

  stop(): void {
    this.configure(0);
    this.reset();
  }

  /** The role changed: exchanges in flight mean nothing any more. */
  reset(): void {
    this.exchanges.clear();
    if (!this.running) this.dirty = undefined;
  }

  /** A live event or message about `e` (any kind): its range is not verified this round. */
  observe(e: ConntrackEntry): void {
    const dirty = this.dirty;
    if (!dirty) return;
    const workers = this.config().workers;
    const h = tupleHash(e.orig);
    dirty.add((h % workers) * this.ranges + rangeOf(h, workers, this.ranges));
  }

  /** The connection went down: its exchange is moot. */
  forget(client: SyncClient): void {
    this.exchanges.delete(client);
    if (this.exchanges.size === 0 && !this.running) this.dirty = undefined;
  }

  /** One round now (the timer calls it; tests and the benchmark may too). Resolves once the digests are queued. */
  async runRound(): Promise<number> {
    if (this.running || this.side.role !== 'master' || !this.config().enabled) return 0;
    const now = this.netClock.now();
    if (this.exchanges.size > 0) {
      const limit = Math.max(EXCHANGE_TIMEOUT_MS, 3000 * this.intervalS);
      if ([...this.exchanges.values()].some((x) => now - x.sentAt < limit)) return 0; // the last round is still being answered
      log.warn({ vrf: this.vrf, unanswered: this.exchanges.size }, 'anti-entropy: digests left unanswered, new round');
      this.exchanges.clear();
    }
    const targets = this.peers().flat().filter((c) => this.side.verifiable(c));
    if (targets.length === 0) return 0;
    this.running = true;
    this.round = (this.round + 1) >>> 0 || 1;
    const round = this.round;
    const dirty = new Set<number>();
    this.dirty = dirty;
    const generation = this.side.bulkGeneration;
    const workers = this.config().workers;
    const R = this.ranges;
    let sent = 0;
    try {
      // Events are not held while the table is read (that would delay live sync every round):
      // a range any of them touches is dirty, skipped now or when its answer comes.
      const digests = await digestTable(this.engine, this.vrf, workers, R, this.filter);
      // A resync or manual synchronisation ran meanwhile: it rewrote what is synced; next round.
      if (this.side.bulkGeneration === generation && this.config().workers === workers && this.side.role === 'master') {
        for (const c of targets) {
          if (!this.side.verifiable(c)) continue;
          const w = c.config.worker;
          const view = digests.ofWorker(w).slice();
          for (let r = 0; r < R; r++) {
            if (!dirty.has(w * R + r)) continue;
            view[r * RANGE_WORDS] = SKIPPED;
            this.stats.rangesSkipped++;
          }
          c.bulkFrame(FrameType.DigestRequest, encodeDigestRequest({ round, worker: w, workers, ranges: R, digests: view }), 0);
          this.exchanges.set(c, { round, worker: w, generation, sentAt: now, phase: 'digest' });
          sent++;
        }
      }
    } catch (err) {
      log.warn({ vrf: this.vrf, err: (err as Error).message }, 'anti-entropy: digest of the table failed; next round');
    } finally {
      this.running = false;
      if (this.exchanges.size === 0) this.dirty = undefined;
    }
    if (sent > 0) {
      this.stats.rounds++;
      this.stats.lastRound = new Date().toISOString();
    }
    return sent;
  }

  /** A DigestReply from the backup on `client`. */
  onReply(client: SyncClient, reply: DigestReply): void {
    const x = this.exchanges.get(client);
    if (!x || x.round !== reply.round || x.worker !== reply.worker) {
      log.debug({ vrf: this.vrf, client: client.name, round: reply.round }, 'anti-entropy: reply to a round no longer waited for');
      return;
    }
    if (reply.kind === 'repaired') {
      if (x.phase !== 'repair') return;
      this.done(client);
      const counts = { ranges: reply.ranges, added: reply.added, updated: reply.updated, removed: reply.removed, refused: reply.refused };
      this.stats.addRepair(counts);
      log.info({ vrf: this.vrf, peer: client.config.peer, client: client.name, ...counts }, 'anti-entropy: peer repaired the differing ranges');
      if (counts.added + counts.updated + counts.removed + counts.refused > 0) {
        this.notify({ kind: 'divergence-repaired', vrf: this.vrf, peer: client.config.peer, client: client.name, ...counts });
      }
      return;
    }
    if (x.phase !== 'digest') return;
    this.stats.rangesCompared += reply.compared;
    const R = this.ranges;
    if (this.side.bulkGeneration !== x.generation || !this.side.verifiable(client)) {
      // A full resync went out meanwhile: it repairs everything; what differed is no divergence.
      this.stats.rangesSkipped += reply.ranges.length;
      this.done(client);
      return;
    }
    const dirty = this.dirty ?? new Set<number>();
    const repair = reply.ranges.filter((r) => r < R && !dirty.has(x.worker * R + r));
    this.stats.rangesSkipped += reply.ranges.length - repair.length;
    if (repair.length === 0) {
      this.done(client);
      return;
    }
    this.stats.rangesDiffering += repair.length;
    this.stats.lastDivergence = new Date().toISOString();
    log.warn({ vrf: this.vrf, peer: client.config.peer, client: client.name, ranges: repair }, 'anti-entropy: peer differs in some ranges: repairing them');
    x.phase = 'repair';
    this.repair(client, x, repair).catch((err: unknown) => {
      log.warn({ vrf: this.vrf, client: client.name, err: (err as Error).message }, 'anti-entropy: repair failed; next round');
      this.done(client);
    });
  }

  private done(client: SyncClient): void {
    this.exchanges.delete(client);
    if (this.exchanges.size === 0 && !this.running) this.dirty = undefined;
  }

  /** The conntracks of the differing ranges, between a start marker and one end marker per range. */
  private async repair(client: SyncClient, x: Exchange, ranges: number[]): Promise<void> {
    const workers = this.config().workers;
    const wanted = new Set(ranges);
    await this.side.holdEvents(async () => {
      client.bulkFrame(FrameType.RangeMarker, encodeRangeMarker({ kind: 'start', round: x.round, ranges }), 0);
      const found = await entriesInRanges(this.engine, this.vrf, workers, this.ranges, (w, r) => w === x.worker && wanted.has(r), this.filter);
      const byRange = new Map<number, RangeEntry[]>(ranges.map((r) => [r, []]));
      for (const e of found) byRange.get(e.range)?.push(e);
      for (let i = 0; i < ranges.length; i++) {
        const r = ranges[i] as number;
        const entries = byRange.get(r) as RangeEntry[];
        let records = 0;
        for (let k = 0; k < entries.length; k += RECORDS_PER_FRAME) {
          const recs: SyncRecord[] = [];
          const sizes: number[] = [];
          for (const re of entries.slice(k, k + RECORDS_PER_FRAME)) {
            const rec = this.record(re);
            try {
              sizes.push(recordSize(rec));
              recs.push(rec);
            } catch (err) {
              client.stats.buildError++;
              log.warn({ vrf: this.vrf, err: (err as Error).message }, 'anti-entropy: conntrack could not be encoded');
            }
          }
          if (recs.length === 0) continue;
          client.bulkFrame(FrameType.RangeRepair, encodeRangeRepair(x.round, r, encodeRecords(recs, sizes, this.engineNow())), recs.length);
          records += recs.length;
          await client.room();
        }
        client.bulkFrame(FrameType.RangeMarker, encodeRangeMarker({ kind: 'end', round: x.round, range: r, last: i === ranges.length - 1, records }), 0);
      }
    });
  }

  /** What sync would send for this conntrack: the state last sent, the TCP undefined timeout outside established (rule 3). */
  private record(re: RangeEntry): SyncRecord {
    const e = re.entry;
    const entry: ConntrackEntry = re.state === STATES.indexOf(e.state) ? e : { ...e, state: STATES[re.state] as ConntrackEntry['state'] };
    const timeout = e.orig.proto === 'tcp' && re.state !== ESTABLISHED ? this.config().timeouts.tcpUndefined : e.timeout;
    return { entry, withActivity: false, timeout };
  }

  /** Ages are not sent in repairs (withActivity false): any time base does. */
  private engineNow(): number {
    return 0;
  }
}
