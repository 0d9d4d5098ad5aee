// The receiving side of one VRF's synchronisation: accepts connections from configured peers and
// applies what they send into the local engine, in every HA state; after a full resync on a
// connection it removes the synced conntracks of that connection's worker the resync did not carry.
import { randomBytes } from 'node:crypto';
import type { ConntrackEntry, DataplaneEngine, FlowTuple, L4Proto } from '../fastpath/engine.js';
import type { Clock } from '../fastpath/clock.js';
import { ipv4TupleHash, ownerWorker } from '../fastpath/tuple-hash.js';
import { logger } from '../core/log.js';
import { AckEmitter } from './ack-emitter.js';
import { decodeDeletes, decodeEntries, forEachIPv4Orig, isPlainIPv4Payload } from './conntrack-codec.js';
import { ipv4Text, PROTO_NAMES } from './conntrack-key.js';
import { canonicalAddress } from './peer-address.js';
import { TupleMap } from './tuple-map.js';
import { FINGERPRINT_BYTES, type Hello, TABLE_EPOCH_BYTES } from './handshake.js';
import { BulkKind, type Frame, FrameType, isBulkKind, SyncProtocolError } from './protocol.js';
import type { VrfSyncConfig } from './sync-config.js';
import type { ReceiverSession } from './sync-listener.js';
import type { ResyncSummary, SyncNotification } from './vrf-sync-types.js';
import type { AntiEntropyStats } from './anti-entropy/anti-entropy-stats.js';
import { RangeRepairReceiver } from './anti-entropy/range-repair-receiver.js';

const log = logger('sync');

/** What the receiving side remembers of one incoming connection. */
interface InboundSession {
  peer: string;
  worker: number;
  workers: number;
  /** Keys carried by the full resync in progress on this connection. */
  bulkSeen: TupleMap | undefined;
  /**
   * A full resync is in progress on this connection into a table that held no synced conntrack
   * when it began: nothing can be stale, so no key is recorded and nothing is purged at its end.
   */
  bulkFresh: boolean;
  /** Writes of this connection's frames not finished yet (frames are applied pipelined). */
  writes: Set<Promise<void>>;
  /** Deletes of this connection not finished yet: later writes wait for them. */
  deletes: Promise<void> | undefined;
  /** A full resync started on this connection and has not ended. */
  resyncOpen: boolean;
  /** Acknowledges to the sender what was applied on this connection. */
  acks: AckEmitter;
}

export class SyncReceiver {
  receive = 0;
  receiveError = 0;
  /** Full resyncs in progress (over all connections) and when the first of them started. */
  private resyncsOpen = 0;
  private resyncStartedAt = 0;
  /** Count of the latest full resync per sending worker, for the sender's worker count. */
  private resyncCounts = new Map<number, number>();
  private resyncWorkers = 0;
  /**
   * Records handed to the engine by the receiving side, per sending worker ("workers/worker"),
   * counted before the write resolves; and the engine's synced count before the first of them.
   */
  private acceptedByOwner = new Map<string, number>();
  private syncedBeforeReceiving: number | undefined;
  /** Connections in their data phase (they can carry an ack back). */
  private linked = new Set<InboundSession>();
  /**
   * The peer's table was asked for (requestPeerTable): the connections asked (each sends its
   * worker's share), the sending workers whose full resync has ended since, and the callback once
   * all of them have.
   */
  private tableWanted: { asked: Set<InboundSession>; ended: Map<number, number>; done: (count: number) => void } | undefined;
  /** Anti-entropy's digests and range repairs (frames 15, 17, 18). */
  private antiEntropy: RangeRepairReceiver | undefined;
  /**
   * This receiver's table epoch, sent in every welcome: a master that finds the same epoch as on
   * its previous connection may send a delta resync (what changed while apart) instead of its
   * whole table. Drawn at start and again whenever what this node holds may differ from what it
   * acknowledged (newTableEpoch).
   */
  private epoch = randomBytes(TABLE_EPOCH_BYTES);

  constructor(
    private readonly vrf: string,
    private readonly config: () => VrfSyncConfig,
    private readonly engine: DataplaneEngine,
    private readonly clock: Clock,
    private readonly nodeId: string,
    private readonly peerFingerprint: (peer: string, fingerprint: Buffer) => void,
    private readonly onResyncReceived: (summary: ResyncSummary) => void,
  ) {}

  /**
   * Asks the peer, on each of its connections to us (now, or as they come up), for the
   * synchronised conntracks it holds (each connection carries its worker's share); `done` runs
   * once a full resync has ended on every one of its workers' connections (its whole table is
   * here), with the number of conntracks they carried.
   */
  requestPeerTable(done: (count: number) => void): void {
    const t = { asked: new Set<InboundSession>(), ended: new Map<number, number>(), done };
    this.tableWanted = t;
    for (const inbound of this.linked) if (inbound.acks.requestTable()) t.asked.add(inbound);
    log.info({ vrf: this.vrf, connections: t.asked.size }, 'asked the peer for the synchronised conntracks it holds');
  }

  /** A full resync ended on this connection: the peer's table may be complete. */
  private tableArrived(inbound: InboundSession, count: number): void {
    const t = this.tableWanted;
    if (!t?.asked.has(inbound)) return;
    t.ended.set(inbound.worker, count);
    if (t.ended.size < inbound.workers) return;
    this.tableWanted = undefined;
    let total = 0;
    for (const n of t.ended.values()) total += n;
    t.done(total);
  }

  tableEpoch(): Buffer {
    return this.epoch;
  }

  /**
   * What this node holds may no longer be what it acknowledged (a role switch: as master the
   * kernel changes its conntracks; a synced delete the engine refused): the next connection of
   * every peer gets a full resync, not a delta.
   */
  newTableEpoch(reason: string): void {
    this.epoch = randomBytes(TABLE_EPOCH_BYTES);
    log.info({ vrf: this.vrf, reason }, 'new table epoch: the next resync from the peer is a full one');
  }

  attachAntiEntropy(stats: AntiEntropyStats, notify: (n: SyncNotification) => void): void {
    this.antiEntropy = new RangeRepairReceiver(this.vrf, this.engine, this.clock, stats, (count, written) => this.countWrites(count, written), notify);
  }

  /** Resolver for the listener: accept only hellos from a configured peer address. */
  accept(hello: Hello, remoteAddress: string): ReceiverSession | string {
    if (!this.config().enabled) return `ha-fp-conntrack is disabled in VRF ${this.vrf}`;
    const remote = canonicalAddress(remoteAddress);
    const peer = this.config().peers.find((p) => canonicalAddress(p.address) === remote);
    if (!peer) {
      this.receiveError++;
      return `${remote} is not a peer of VRF ${this.vrf}`;
    }
    const inbound: InboundSession = {
      peer: peer.name, worker: hello.worker, workers: hello.workers, bulkSeen: undefined, bulkFresh: false, writes: new Set(),
      deletes: undefined, resyncOpen: false, acks: new AckEmitter(),
    };
    return {
      secret: this.config().secret,
      nodeId: this.nodeId,
      fingerprint: this.config().fingerprint,
      tableEpoch: () => this.epoch,
      authenticated: () => this.peerFingerprint(peer.name, hello.fingerprint),
      apply: (f, reply) => this.applyAcked(f, inbound, reply),
      dataPhase: (link) => {
        inbound.acks.attach(link);
        this.linked.add(inbound);
        if (this.tableWanted && inbound.acks.requestTable()) this.tableWanted.asked.add(inbound);
      },
      error: () => {
        this.receiveError++;
      },
      closed: () => {
        this.linked.delete(inbound);
        inbound.acks.close();
        this.closeResync(inbound);
      },
    };
  }

  /**
   * After a full resync on one connection, synced entries of that connection's worker that the
   * resync did not carry were destroyed on the master while we were apart: remove them (on a
   * backup they would never expire).
   */
  private async purgeStale(inbound: InboundSession, seen: TupleMap): Promise<number> {
    const stale: FlowTuple[] = [];
    const check = (e: ConntrackEntry): void => {
      if (!e.synced || ownerWorker(e.orig, inbound.workers) !== inbound.worker) return;
      if (!seen.has(e.orig)) stale.push(e.orig);
    };
    if (this.engine.dumpPacked) {
      // Plain IPv4 entries are checked on their fields; only stale ones become tuple objects.
      await this.engine.dumpPacked(this.vrf, (b) => {
        for (let i = 0; i < b.count; i++) {
          if (!b.isPlainIPv4(i)) {
            check(b.entry(i));
            continue;
          }
          const src = b.ipv4(i, 0);
          if (!b.synced(i) || ipv4TupleHash(src) % inbound.workers !== inbound.worker) continue;
          const proto = b.protoIndex(i), dst = b.ipv4(i, 1), sport = b.port(i, 0), dport = b.port(i, 1);
          if (seen.getIPv4(proto, src, dst, sport, dport) === undefined) {
            stale.push({ proto: PROTO_NAMES[proto] as L4Proto, src: ipv4Text(src), dst: ipv4Text(dst), sport, dport });
          }
        }
      });
    } else {
      await this.engine.dump(this.vrf, (batch) => {
        for (const e of batch) check(e);
      });
    }
    if (stale.length === 0) return 0;
    for (let i = 0; i < stale.length; i += 4096) await this.engine.remove(this.vrf, stale.slice(i, i + 4096));
    log.info({ vrf: this.vrf, worker: inbound.worker, removed: stale.length }, 'stale synced conntracks removed after a full resync');
    return stale.length;
  }

  private noteAccepted(inbound: InboundSession, n: number): void {
    this.syncedBeforeReceiving ??= this.engineSynced();
    const key = `${inbound.workers}/${inbound.worker}`;
    this.acceptedByOwner.set(key, (this.acceptedByOwner.get(key) ?? 0) + n);
  }

  /**
   * Whether a full resync starting on this connection can find no stale entry: the engine held no
   * synced conntrack before we received any, and nothing was received that this connection's
   * worker owns (a conntrack always travels on its owner's connection; a different worker count
   * on the sender changes the owners, so then anything received counts).
   */
  private nothingToPurge(inbound: InboundSession): boolean {
    if ((this.syncedBeforeReceiving ?? this.engineSynced()) !== 0) return false;
    for (const [key, n] of this.acceptedByOwner) {
      if (n === 0) continue;
      const [workers, worker] = key.split('/').map(Number);
      if (workers !== inbound.workers || worker === inbound.worker) return false;
    }
    return true;
  }

  /** Synced conntracks the engine holds in this VRF (-1 when it cannot tell). */
  private engineSynced(): number {
    try {
      return this.engine.counters(this.vrf).synced;
    } catch {
      return -1;
    }
  }

  /** The full resync of this connection (if one was open) no longer runs. */
  private closeResync(inbound: InboundSession): void {
    if (!inbound.resyncOpen) return;
    inbound.resyncOpen = false;
    this.resyncsOpen = Math.max(0, this.resyncsOpen - 1);
  }

  /**
   * Frames of one connection are applied pipelined, on several sockets (writer threads, the delete
   * socket): a delete waits for the writes before it, and a write for the deletes before it, so
   * that a conntrack deleted then created again (or created then deleted) ends as the peer said.
   */
  private async inOrder(inbound: InboundSession, kind: 'write' | 'delete', run: () => Promise<void>): Promise<void> {
    if (kind === 'delete') {
      const writes = [...inbound.writes];
      const deletes = inbound.deletes;
      const p = (async () => {
        await deletes;
        await Promise.allSettled(writes);
        await run();
      })();
      inbound.deletes = p;
      try {
        await p;
      } finally {
        if (inbound.deletes === p) inbound.deletes = undefined;
      }
      return;
    }
    const deletes = inbound.deletes;
    const p = deletes ? deletes.then(run, run) : run();
    inbound.writes.add(p);
    try {
      await p;
    } finally {
      inbound.writes.delete(p);
    }
  }

  /** How many of `count` records the engine wrote (0 when it threw: logged). */
  private async written(write: () => Promise<number>, count: number): Promise<number> {
    try {
      return await write();
    } catch (err) {
      log.error({ vrf: this.vrf, err: (err as Error).message, count }, 'engine refused synced conntracks');
      return 0;
    }
  }

  /** receive counts what the engine took, receive-error what it refused (the engine logs why); the refused ones. */
  private countWrites(count: number, written: number): number {
    const refused = Math.max(0, count - written);
    this.receive += count - refused;
    if (refused === 0) return 0;
    this.receiveError += refused;
    log.warn({ vrf: this.vrf, refused, of: count }, 'synced conntracks not written: counted in receive-error');
    return refused;
  }

  /**
   * Applies one frame and acknowledges it once it and every frame before it are done, with the
   * conntrack records the engine refused (a frame that fails the connection is never acknowledged).
   */
  private async applyAcked(f: Frame, inbound: InboundSession, reply: (type: FrameType, payload: Buffer) => void): Promise<void> {
    const seq = inbound.acks.begin();
    const refused = await this.apply(f, inbound, reply);
    inbound.acks.end(seq, refused, f.type === FrameType.BulkEnd);
  }

  /** Applies one frame; resolves to the conntrack records of it the engine refused. */
  private async apply(f: Frame, inbound: InboundSession, reply: (type: FrameType, payload: Buffer) => void): Promise<number> {
    switch (f.type) {
      case FrameType.CtNew:
      case FrameType.CtUpdate: {
        // Fast path: plain IPv4 records go to the engine as received, no object per conntrack.
        if (this.engine.upsertIPv4Records && isPlainIPv4Payload(f.payload)) {
          const count = f.payload.readUInt16BE(0);
          this.noteAccepted(inbound, count);
          const seen = inbound.bulkSeen;
          if (seen) forEachIPv4Orig(f.payload, (proto, src, dst, sport, dport) => seen.setIPv4(proto, src, dst, sport, dport, 0));
          this.antiEntropy?.noteLive(inbound, f.payload, undefined);
          const upsert = this.engine.upsertIPv4Records.bind(this.engine);
          // Within a full resync, the engine may leave records it holds exactly as they are (issue 11).
          const options = inbound.resyncOpen ? { unchangedMayBeSkipped: true } : undefined;
          let refused = 0;
          await this.inOrder(inbound, 'write', async () => {
            refused = this.countWrites(count, await this.written(() => upsert(this.vrf, f.payload.subarray(2), options), count));
          });
          return refused;
        }
        const entries = decodeEntries(f.payload, this.vrf, this.clock.now());
        this.noteAccepted(inbound, entries.length);
        // Recorded before the engine call: a pipelined bulk end may purge before this write resolves.
        const seen = inbound.bulkSeen;
        if (seen) for (const e of entries) seen.set(e.orig, 0);
        let refused = 0;
        this.antiEntropy?.noteLive(inbound, undefined, entries);
        await this.inOrder(inbound, 'write', async () => {
          const written = await this.written(() => this.engine.upsert(entries), entries.length);
          refused = this.countWrites(entries.length, written);
        });
        return refused;
      }
      case FrameType.CtDelete: {
        const tuples = decodeDeletes(f.payload);
        await this.inOrder(inbound, 'delete', async () => {
          try {
            await this.engine.remove(this.vrf, tuples);
          } catch (err) {
            this.receiveError += tuples.length;
            log.error({ vrf: this.vrf, err: (err as Error).message }, 'engine refused synced deletes');
            // Not acknowledged as refused (acks count writes): a delta resync would not repair it.
            this.newTableEpoch('synced deletes refused by the engine');
            return;
          }
          this.receive += tuples.length;
        });
        return 0; // a refused delete is in receive-error; the ack counts conntracks written, not deletes
      }
      case FrameType.BulkStart: {
        if (f.payload.length !== 5) throw new SyncProtocolError('bad bulk-start');
        if (!isBulkKind(f.payload.readUInt8(0))) throw new SyncProtocolError(`unknown bulk kind ${f.payload.readUInt8(0)}`);
        // A delta resync (BulkKind.Delta) carries changes only: applied as live messages, nothing purged.
        if (f.payload.readUInt8(0) === BulkKind.FullResync) {
          this.closeResync(inbound);
          inbound.resyncOpen = true;
          if (this.resyncsOpen++ === 0) this.resyncStartedAt = performance.now();
          // Counted synchronously in frame order, so records still being written count too.
          inbound.bulkFresh = this.nothingToPurge(inbound);
          inbound.bulkSeen = inbound.bulkFresh ? undefined : new TupleMap();
        }
        return 0;
      }
      case FrameType.BulkEnd: {
        if (f.payload.length !== 5) throw new SyncProtocolError('bad bulk-end');
        const kind = f.payload.readUInt8(0);
        if (!isBulkKind(kind)) throw new SyncProtocolError(`unknown bulk kind ${kind}`);
        if (kind === BulkKind.FullResync && (inbound.bulkSeen || inbound.bulkFresh)) {
          const seen = inbound.bulkSeen;
          inbound.bulkSeen = undefined;
          inbound.bulkFresh = false;
          const startedAt = this.resyncStartedAt;
          this.closeResync(inbound);
          // The summary covers every connection: the latest count of each sending worker.
          if (inbound.workers !== this.resyncWorkers) {
            this.resyncCounts.clear();
            this.resyncWorkers = inbound.workers;
          }
          this.resyncCounts.set(inbound.worker, f.payload.readUInt32BE(1));
          if (seen) await this.purgeStale(inbound, seen);
          let count = 0;
          for (const n of this.resyncCounts.values()) count += n;
          this.onResyncReceived({ time: new Date().toISOString(), duration: Math.round(performance.now() - startedAt), count });
          this.tableArrived(inbound, f.payload.readUInt32BE(1));
        }
        return 0;
      }
      case FrameType.ConfigFingerprint: {
        if (f.payload.length !== FINGERPRINT_BYTES) throw new SyncProtocolError(`config fingerprint of ${f.payload.length} bytes`);
        this.peerFingerprint(inbound.peer, Buffer.from(f.payload));
        return 0;
      }
      case FrameType.DigestRequest:
      case FrameType.RangeRepair:
      case FrameType.RangeMarker: {
        if (!this.antiEntropy) throw new SyncProtocolError(`anti-entropy frame type ${f.type} but anti-entropy is not set up here`);
        await this.antiEntropy.apply(f, inbound, reply, (kind, run) => this.inOrder(inbound, kind, run));
        return 0; // what the engine refused of a repair is counted by anti-entropy (conntracks-repaired/refused)
      }
      default:
        throw new SyncProtocolError(`unexpected frame type ${f.type} from a sync client`);
    }
  }
}
