// Messages between the soft engine (main thread) and its workers. Everything is structured-clone
// data; time always travels with the request (workers have no clock of their own).
import type { EngineCounters, FailoverPolicy, FlowTuple, HaRole } from '../engine.js';
import type { NatBlockLog } from './cg-nat-allocator.js';
import type { PackedEntries } from './entry-codec.js';
import type { VirtualServiceStats } from './vrf-dataplane.js';
import type { PackedMove } from './packed-move.js';
import type { PackedPackets } from './packet-codec.js';
import type { FirewallConfig, FirewallRule, SoftVrfConfig } from '../config/vrf-config.js';
import type { RuleDelta } from '../config/rule-delta.js';

/** A change of a VRF's firewall rules only (issue 8): the changed rules and the firewall's leaves. */
export type SoftRuleDelta = RuleDelta<FirewallRule> & Omit<FirewallConfig, 'rules'>;

export type SoftCounters = EngineCounters & { dropsInvalid: number; synCookies: number };

export type WorkerRequest =
  | { t: 'vrf'; config: SoftVrfConfig; vrfCount: SharedArrayBuffer; natClaims: SharedArrayBuffer[]; snatClaims?: Record<string, SharedArrayBuffer>; now: number }
  | { t: 'vrf-remove'; vrf: string; now: number }
  /** Answered with the VRF's number of firewall rules after the delta. */
  | { t: 'vrf-rules'; vrf: string; delta: SoftRuleDelta }
  | { t: 'packets'; vrf: string; now: number; packets: PackedPackets }
  | { t: 'tick'; now: number }
  | { t: 'role'; vrf: string; role: HaRole; now: number }
  | { t: 'policy'; vrf: string; policy: FailoverPolicy }
  | { t: 'upsert'; vrf: string; packed: PackedEntries; now: number }
  | { t: 'upsert-ipv4'; vrf: string; records: ArrayBuffer; now: number }
  | { t: 'remove'; vrf: string; tuples: FlowTuple[]; now: number }
  | { t: 'dump'; vrf: string; cursor: number; max: number }
  | { t: 'export' }
  | { t: 'import'; vrf: string; moved: PackedMove; now: number }
  | { t: 'vs-stats'; vrf: string }
  | { t: 'rule-names'; vrf: string }
  | { t: 'counter-detail'; vrf: string }
  | { t: 'memory' }
  | { t: 'flush' };

export type WorkerMessageToWorker =
  | { id: number; req: WorkerRequest }
  | { t: 'ack' };

/** One batch of events; the main thread answers every batch with an ack (bounded in-flight batches). */
export interface EventBatchMessage {
  t: 'events';
  /** Per VRF, packed records whose event kind index (EVENT_KINDS) is in the record. */
  events: { vrf: string; packed: PackedEntries }[];
  natLogs: NatBlockLog[];
  counters: Record<string, SoftCounters>;
}

export interface ReplyMessage {
  t: 'reply';
  id: number;
  result?: unknown;
  error?: string;
  counters: Record<string, SoftCounters>;
}

export type WorkerMessageToMain = EventBatchMessage | ReplyMessage;

export interface MemoryReport {
  /** Typed arrays of the conntrack tables (slots and both indexes). */
  tableBytes: number;
  /** Address interning tables. */
  addressBytes: number;
  addresses: number;
  conntracks: number;
  /** JavaScript heap in use in the workers (objects, not the typed arrays' backing stores). */
  heapUsed: number;
}

export type VsStatsReply = Record<string, VirtualServiceStats>;
