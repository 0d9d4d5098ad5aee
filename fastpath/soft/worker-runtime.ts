// The inside of one soft-engine worker: its VRF dataplanes, one address table, and the event
// batches to the main thread. Requests run one at a time in arrival order; long ones (packet
// batches, expiry scans) go in chunks and wait for acks whenever the bounded number of event
// batches in flight is reached, so memory stays bounded and no event is ever dropped.
import { getHeapStatistics } from 'node:v8';
import type { ConntrackEventKind } from '../engine.js';
import { AddressTable } from './address-table.js';
import type { NatBlockLog } from './cg-nat-allocator.js';
import { EVENT_KINDS, PackedReader, PackedWriter } from './entry-codec.js';
import type { EventBatchMessage, MemoryReport, ReplyMessage, SoftCounters, WorkerMessageToMain, WorkerMessageToWorker, WorkerRequest } from './messages.js';
import { IPv4RecordReader } from './ipv4-record-reader.js';
import { PacketReader } from './packet-codec.js';
import { moveBuffers, type PackedMove } from './packed-move.js';
import { VrfDataplane } from './vrf-dataplane.js';

export const EVENT_BATCH = 2048;
export const MAX_BATCHES_IN_FLIGHT = 32;
const PACKET_CHUNK = 1024;
const EXPIRY_CHUNK = 1024;

export class SoftWorkerRuntime {
  private readonly addresses = new AddressTable();
  private readonly vrfs = new Map<string, VrfDataplane>();
  private events = new Map<string, PackedWriter>();
  private eventCount = 0;
  private natLogs: NatBlockLog[] = [];
  private inFlight = 0;
  private roomWaiters: (() => void)[] = [];
  private queue: Promise<void> = Promise.resolve();
  /** Buffers to transfer (not copy) with the next reply. */
  private transferNext: ArrayBuffer[] = [];

  constructor(private readonly index: number, private readonly post: (m: WorkerMessageToMain, transfer: ArrayBuffer[]) => void) {}

  receive(msg: WorkerMessageToWorker): void {
    if ('t' in msg) {
      this.inFlight--;
      for (const w of this.roomWaiters.splice(0)) w();
      return;
    }
    this.queue = this.queue.then(async () => {
      let reply: ReplyMessage;
      try {
        const result = await this.handle(msg.req);
        this.flushEvents();
        reply = { t: 'reply', id: msg.id, result, counters: this.counters() };
      } catch (err) {
        this.flushEvents();
        reply = { t: 'reply', id: msg.id, error: err instanceof Error ? err.message : String(err), counters: this.counters() };
      }
      const transfer = reply.result && typeof reply.result === 'object' && 'packed' in reply.result
        ? [(reply.result as { packed: { buf: ArrayBuffer } }).packed.buf] : this.transferNext;
      this.transferNext = [];
      this.post(reply, transfer);
    });
  }

  private vrf(name: string): VrfDataplane {
    const v = this.vrfs.get(name);
    if (!v) throw new Error(`unknown VRF ${JSON.stringify(name)} in worker ${this.index}`);
    return v;
  }

  private async handle(req: WorkerRequest): Promise<unknown> {
    switch (req.t) {
      case 'vrf': {
        let v = this.vrfs.get(req.config.name);
        if (!v) {
          const dp: VrfDataplane = v = new VrfDataplane(this.addresses, { emit: (k, slot) => this.emit(dp, k, slot), natLog: (l) => this.natLogs.push(l) },
            new Int32Array(req.vrfCount), this.index);
          this.vrfs.set(req.config.name, v);
        }
        v.configure(req.config, req.natClaims.map((b) => new Int32Array(b)), req.now,
          Object.fromEntries(Object.entries(req.snatClaims ?? {}).map(([ip, b]) => [ip, new Int32Array(b)])));
        return undefined;
      }
      case 'vrf-rules':
        return this.vrf(req.vrf).applyRuleDelta(req.delta);
      case 'vrf-remove': {
        this.vrfs.get(req.vrf)?.clear(req.now);
        this.vrfs.delete(req.vrf);
        return undefined;
      }
      case 'packets': {
        const v = this.vrf(req.vrf);
        const r = new PacketReader(req.packets);
        const verdicts = new Uint8Array(r.count);
        for (let i = 0; i < r.count; i += PACKET_CHUNK) {
          await this.room();
          const end = Math.min(r.count, i + PACKET_CHUNK);
          for (let j = i; j < end; j++) verdicts[j] = v.processPacked(r, j, req.now);
          this.maybeFlush();
        }
        return verdicts;
      }
      case 'tick': {
        for (const v of this.vrfs.values()) {
          let from = 0;
          do {
            await this.room();
            from = v.tick(req.now, from, EXPIRY_CHUNK);
            this.maybeFlush();
          } while (from >= 0);
        }
        return undefined;
      }
      case 'role':
        this.vrf(req.vrf).setRole(req.role, req.now);
        return undefined;
      case 'policy':
        this.vrf(req.vrf).setFailoverPolicy(req.policy);
        return undefined;
      case 'upsert':
        return this.vrf(req.vrf).upsertPacked(new PackedReader(req.packed), req.now);
      case 'upsert-ipv4':
        return this.vrf(req.vrf).upsertPacked(new IPv4RecordReader(req.records, req.now), req.now);
      case 'remove':
        return this.vrf(req.vrf).remove(req.tuples, req.now);
      case 'dump':
        return this.vrf(req.vrf).dumpPacked(req.cursor, req.max);
      case 'export': {
        const out: Record<string, PackedMove> = {};
        for (const [name, v] of this.vrfs) out[name] = v.exportAll();
        this.transferNext = Object.values(out).flatMap(moveBuffers);
        return out;
      }
      case 'import':
        this.vrf(req.vrf).importMoved(req.moved, req.now);
        return undefined;
      case 'counter-detail':
        return this.vrf(req.vrf).counterDetail();
      case 'rule-names':
        return this.vrf(req.vrf).ruleOrder();
      case 'vs-stats':
        return Object.fromEntries(this.vrf(req.vrf).virtualServiceStats());
      case 'memory': {
        let tableBytes = 0, conntracks = 0;
        for (const v of this.vrfs.values()) {
          tableBytes += v.table.byteSize();
          conntracks += v.table.count;
        }
        const report: MemoryReport = {
          tableBytes, addressBytes: this.addresses.byteSize(), addresses: this.addresses.size, conntracks, heapUsed: getHeapStatistics().used_heap_size,
        };
        return report;
      }
      case 'flush':
        return undefined;
    }
  }

  private emit(dp: VrfDataplane, kind: ConntrackEventKind, slot: number): void {
    let w = this.events.get(dp.name);
    if (!w) this.events.set(dp.name, (w = new PackedWriter(256)));
    dp.writeRecord(slot, w, EVENT_KINDS.indexOf(kind));
    this.eventCount++;
  }

  private maybeFlush(): void {
    if (this.eventCount >= EVENT_BATCH || this.natLogs.length >= EVENT_BATCH) this.flushEvents();
  }

  private flushEvents(): void {
    if (this.eventCount === 0 && this.natLogs.length === 0) return;
    const events = [...this.events].map(([vrf, w]) => ({ vrf, packed: w.finish() }));
    this.events.clear();
    this.eventCount = 0;
    const batch: EventBatchMessage = { t: 'events', events, natLogs: this.natLogs.splice(0), counters: this.counters() };
    this.inFlight++;
    this.post(batch, events.map((e) => e.packed.buf));
  }

  /** Resolves once fewer than MAX_BATCHES_IN_FLIGHT event batches await their ack. */
  private async room(): Promise<void> {
    while (this.inFlight >= MAX_BATCHES_IN_FLIGHT) await new Promise<void>((r) => this.roomWaiters.push(r));
  }

  private counters(): Record<string, SoftCounters> {
    const out: Record<string, SoftCounters> = {};
    for (const [name, v] of this.vrfs) out[name] = v.counters();
    return out;
  }
}
