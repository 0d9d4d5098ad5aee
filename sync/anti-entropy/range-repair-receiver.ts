// The backup's side of anti-entropy for one VRF: answers a connection's DigestRequest with the
// ranges whose digest of its synced conntracks differs, and applies a range repair: the records
// between a range's markers are written (counted as added or updated against what the range held
// at its start), and at the range's end the synced conntracks of that range that neither the
// repair nor a live message carried are removed. Every step waits for the frames before it on the
// connection (the receiver's pipelined writes), so it sees the table the master's stream built.
import type { ConntrackEntry, DataplaneEngine, FlowTuple } from '../../fastpath/engine.js';
import type { Clock } from '../../fastpath/clock.js';
import { logger } from '../../core/log.js';
import { decodeEntries, forEachIPv4Orig } from '../conntrack-codec.js';
import { ctKey, ipv4Key, STATE_INDEX } from '../conntrack-key.js';
import { type Frame, FrameType, SyncProtocolError } from '../protocol.js';
import type { SyncNotification } from '../vrf-sync-types.js';
import type { AntiEntropyStats, RepairCounts } from './anti-entropy-stats.js';
import { decodeDigestRequest, decodeRangeMarker, decodeRangeRepair, encodeDigestReply, SKIPPED } from './digest-frames.js';
import { type DigestFilter, entryHash, placeOf, RANGE_WORDS } from './range-digest.js';
import { digestTable, entriesInRanges } from './table-walk.js';

const log = logger('anti-entropy');

/** What the receiver knows of the connection a frame came on. */
export interface RepairInbound {
  peer: string;
  worker: number;
  workers: number;
}

/** The receiver's ordering of a connection's frames (sync-receiver.ts inOrder). */
export type InOrder = (kind: 'write' | 'delete', run: () => Promise<void>) => Promise<void>;

interface HeldEntry {
  hash: number;
  state: string;
  reply: string;
  range: number;
  orig: FlowTuple;
}

interface OpenRepair {
  round: number;
  ranges: Set<number>;
  /** The synced conntracks of the ranges when the repair started, by key. */
  before: Promise<Map<string, HeldEntry>>;
  /** Keys the repair or a live message carried since the start. */
  seen: Set<string>;
  counts: RepairCounts;
}

interface InboundState {
  round: number;
  ranges: number;
  repair: OpenRepair | undefined;
}

/** The synced conntracks, each with its own state: what the master's stream wrote. */
const SYNCED: DigestFilter = {
  entry: (e) => (e.synced ? (STATE_INDEX.get(e.state) ?? -1) : -1),
  packed: (b, i) => (b.synced(i) ? b.stateIndex(i) : -1),
};

export class RangeRepairReceiver {
  private readonly inbound = new WeakMap<RepairInbound, InboundState>();

  constructor(
    private readonly vrf: string,
    private readonly engine: DataplaneEngine,
    private readonly clock: Clock,
    private readonly stats: AntiEntropyStats,
    /** receive / receive-error accounting of written records. */
    private readonly countWrites: (count: number, written: number) => void,
    private readonly notify: (n: SyncNotification) => void,
  ) {}

  /** Frames 15, 17 and 18 of a connection. */
  async apply(f: Frame, inbound: RepairInbound, reply: (type: FrameType, payload: Buffer) => void, inOrder: InOrder): Promise<void> {
    switch (f.type) {
      case FrameType.DigestRequest:
        return this.digest(f.payload, inbound, reply, inOrder);
      case FrameType.RangeRepair:
        return this.repairRecords(f.payload, inbound, inOrder);
      case FrameType.RangeMarker:
        return this.marker(f.payload, inbound, reply, inOrder);
      default:
        throw new SyncProtocolError(`frame type ${f.type} is not anti-entropy`);
    }
  }

  /** Live CT_NEW / CT_UPDATE records while a repair is open: the range end must not remove them. */
  noteLive(inbound: RepairInbound, payload: Buffer | undefined, entries: ConntrackEntry[] | undefined): void {
    const open = this.inbound.get(inbound)?.repair;
    if (!open) return;
    if (payload) forEachIPv4Orig(payload, (proto, src, dst, sport, dport) => open.seen.add(ipv4Key(proto, src, sport, dst, dport)));
    for (const e of entries ?? []) open.seen.add(ctKey(e.orig));
  }

  private async digest(payload: Buffer, inbound: RepairInbound, reply: (type: FrameType, payload: Buffer) => void, inOrder: InOrder): Promise<void> {
    const req = decodeDigestRequest(payload);
    if (req.worker !== inbound.worker || req.workers !== inbound.workers) {
      throw new SyncProtocolError(`digest of worker ${req.worker}/${req.workers} on the connection of worker ${inbound.worker}/${inbound.workers}`);
    }
    this.inbound.set(inbound, { round: req.round, ranges: req.ranges, repair: undefined });
    await inOrder('delete', async () => {
      let local;
      try {
        local = (await digestTable(this.engine, this.vrf, req.workers, req.ranges, SYNCED)).ofWorker(req.worker);
      } catch (err) {
        log.warn({ vrf: this.vrf, err: (err as Error).message }, 'anti-entropy: digest of the synced conntracks failed: not answered');
        return;
      }
      const differing: number[] = [];
      let compared = 0;
      for (let r = 0; r < req.ranges; r++) {
        const o = r * RANGE_WORDS;
        if (req.digests[o] === SKIPPED) continue;
        compared++;
        if (req.digests[o] !== local[o] || req.digests[o + 1] !== local[o + 1] || req.digests[o + 2] !== local[o + 2]) differing.push(r);
      }
      this.stats.rounds++;
      this.stats.lastRound = new Date().toISOString();
      this.stats.rangesCompared += compared;
      this.stats.rangesSkipped += req.ranges - compared;
      if (differing.length > 0) {
        const counts = differing.map((r) => `${r}: master ${req.digests[r * RANGE_WORDS]}, here ${local[r * RANGE_WORDS]}`);
        log.info({ vrf: this.vrf, peer: inbound.peer, worker: inbound.worker, ranges: differing, counts }, 'anti-entropy: synced conntracks differ from the master in some ranges');
      }
      reply(FrameType.DigestReply, encodeDigestReply({ kind: 'differing', round: req.round, worker: req.worker, compared, ranges: differing }));
    });
  }

  private state(inbound: RepairInbound, round: number): InboundState {
    const s = this.inbound.get(inbound);
    if (!s || s.round !== round) throw new SyncProtocolError(`range repair of round ${round} without its digest`);
    return s;
  }

  private async marker(payload: Buffer, inbound: RepairInbound, reply: (type: FrameType, payload: Buffer) => void, inOrder: InOrder): Promise<void> {
    const m = decodeRangeMarker(payload);
    const s = this.state(inbound, m.round);
    if (m.kind === 'start') {
      if (m.ranges.some((r) => r >= s.ranges)) throw new SyncProtocolError(`range repair beyond ${s.ranges} ranges`);
      let resolve!: (m: Map<string, HeldEntry>) => void;
      let reject!: (err: unknown) => void;
      const open: OpenRepair = {
        round: m.round, ranges: new Set(m.ranges), seen: new Set(), counts: { ranges: 0, added: 0, updated: 0, removed: 0, refused: 0 },
        before: new Promise((res, rej) => {
          resolve = res;
          reject = rej;
        }),
      };
      open.before.catch(() => undefined); // reported where awaited
      s.repair = open; // from here on, live records count as seen
      await inOrder('delete', async () => {
        try {
          const found = await entriesInRanges(this.engine, this.vrf, inbound.workers, s.ranges, (w, r) => w === inbound.worker && open.ranges.has(r), SYNCED);
          const before = new Map<string, HeldEntry>();
          for (const x of found) before.set(ctKey(x.entry.orig), { hash: entryHash(x.entry, x.state), state: x.entry.state, reply: ctKey(x.entry.reply), range: x.range, orig: x.entry.orig });
          resolve(before);
        } catch (err) {
          reject(err);
        }
      });
      return;
    }
    const open = s.repair;
    if (!open || !open.ranges.has(m.range)) throw new SyncProtocolError(`end of range ${m.range} that was not started`);
    await inOrder('delete', async () => {
      const before = await open.before;
      const stale: FlowTuple[] = [];
      for (const [key, h] of before) if (h.range === m.range && !open.seen.has(key)) stale.push(h.orig);
      if (stale.length > 0) {
        try {
          const removed = await this.engine.remove(this.vrf, stale);
          open.counts.removed += removed;
          this.countWrites(stale.length, stale.length); // a delete of a conntrack already gone is no error (as CT_DELETE)
        } catch (err) {
          open.counts.refused += stale.length;
          this.countWrites(stale.length, 0);
          log.error({ vrf: this.vrf, err: (err as Error).message }, 'anti-entropy: engine refused to remove stale synced conntracks');
        }
      }
      open.counts.ranges++;
      if (!m.last) return;
      s.repair = undefined;
      const c = open.counts;
      this.stats.rangesDiffering += c.ranges;
      this.stats.addRepair(c);
      const changed = c.added + c.updated + c.removed + c.refused > 0;
      if (changed) this.stats.lastDivergence = new Date().toISOString();
      reply(FrameType.DigestReply, encodeDigestReply({ kind: 'repaired', round: m.round, worker: inbound.worker, ...c }));
      log.warn({ vrf: this.vrf, peer: inbound.peer, worker: inbound.worker, ...c }, 'anti-entropy: synced conntracks repaired');
      if (changed) this.notify({ kind: 'divergence-repaired', vrf: this.vrf, peer: inbound.peer, client: `npf_event${inbound.worker}`, ...c });
    });
  }

  private async repairRecords(payload: Buffer, inbound: RepairInbound, inOrder: InOrder): Promise<void> {
    const { round, range, records } = decodeRangeRepair(payload);
    const s = this.state(inbound, round);
    const open = s.repair;
    if (!open || !open.ranges.has(range)) throw new SyncProtocolError(`records of range ${range} that was not started`);
    const entries = decodeEntries(records, this.vrf, this.clock.now());
    for (const e of entries) {
      const at = placeOf(e, inbound.workers, s.ranges);
      if (at.worker !== inbound.worker || at.range !== range) throw new SyncProtocolError(`repair record outside range ${range} of worker ${inbound.worker}`);
      open.seen.add(ctKey(e.orig));
    }
    await inOrder('write', async () => {
      const before = await open.before;
      const fresh: ConntrackEntry[] = [];
      const differing: ConntrackEntry[] = [];
      for (const e of entries) {
        const held = before.get(ctKey(e.orig));
        if (held === undefined) fresh.push(e);
        else if (held.hash === entryHash(e)) continue;
        else {
          differing.push(e);
          log.debug({ vrf: this.vrf, orig: ctKey(e.orig), reply: ctKey(e.reply), master: e.state, here: held.state, hereReply: held.reply }, 'anti-entropy: conntrack differs from the master');
        }
      }
      const changed = [...fresh, ...differing];
      if (changed.length === 0) return;
      // Written in two calls so that what the engine took is counted exactly as added or updated.
      let added = 0;
      let updated = 0;
      try {
        if (fresh.length > 0) added = await this.engine.upsert(fresh);
        // An engine updates the state of a conntrack it holds but not its tuples (a kernel cannot
        // change a NAT binding): a differing one is removed and written again. The backup does not
        // forward synced conntracks' traffic, so nothing is cut meanwhile.
        if (differing.length > 0) {
          await this.engine.remove(this.vrf, differing.map((e) => e.orig));
          updated = await this.engine.upsert(differing);
        }
      } catch (err) {
        log.error({ vrf: this.vrf, err: (err as Error).message }, 'anti-entropy: engine refused repaired conntracks');
      }
      this.countWrites(changed.length, added + updated);
      open.counts.added += added;
      open.counts.updated += updated;
      open.counts.refused += changed.length - added - updated;
    });
  }
}
