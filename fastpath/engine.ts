// The interface every dataplane engine (soft, linux) exposes. Sync and the commit transaction use
// only this; nothing outside fastpath/ imports an engine's internals.
import type { FirewallRuleDelta } from './config/rule-delta.js';


export type L4Proto = 'tcp' | 'udp' | 'icmp';

/** One direction of a connection. For ICMP, sport is the echo id and dport is 0. */
export interface FlowTuple {
  proto: L4Proto;
  src: string; // IPv4 or IPv6 text
  dst: string;
  sport: number;
  dport: number;
}

export type TcpState =
  | 'syn-sent' | 'syn-recv' | 'established' | 'fin-wait' | 'close-wait' | 'last-ack' | 'time-wait' | 'close';

/** A conntrack as the engines exchange it with sync (not how they store it). */
export interface ConntrackEntry {
  vrf: string;
  /** Original direction (as the client sent it). */
  orig: FlowTuple;
  /** Reply direction (after NAT: the tuple the server's answer carries). */
  reply: FlowTuple;
  /** TCP state; UDP/ICMP use 'established' once replied ("assured"), else 'syn-sent'. */
  state: TcpState;
  /** Current timeout in seconds (what the conntrack would live without further traffic). */
  timeout: number;
  /** Related to an ALG (helper) master: never synchronised (SPEC rule 7). */
  alg: boolean;
  /** Milliseconds (engine clock) when the conntrack entered established, 0 if it has not. */
  establishedAt: number;
  /** Milliseconds (engine clock) of the last packet seen. */
  lastActivity: number;
  /** Virtual service this flow belongs to, if any (for mirroring counters). */
  virtualService?: string;
  /** Marked by the engine on entries created by sync (on the backup). */
  synced?: boolean;
  /**
   * Added by sync (D2), SPEC rule 8: set on entries that sync writes after a manual
   * synchronisation; `lastActivity` is then the master's real activity time (converted to this
   * engine's clock). After a switch to master, such an entry expires at lastActivity + timeout
   * when that is still in the future, instead of switch time + timeout (rule 5).
   */
  activitySynced?: boolean;
  /**
   * Added by the fast path (D1), SPEC rule 10: set by the engine on flows that must not be
   * synchronised although established and not ALG-related: flows of a virtual service whose
   * network profile is not tcp-fast-path with connection-mirror true. Sync skips them.
   */
  noSync?: boolean;
}

/**
 * Added by sync (D2), SPEC rule 5: what a switch backup -> master does with synced entries.
 * Without a grace period for a protocol, an unused synced entry lives its whole current timeout
 * counted from the switch time. With `graceSeconds[proto]` = G smaller than the entry's timeout,
 * the engine may drop unused entries at random moments between switch + G and switch + timeout
 * (a G bigger than the timeout has no effect).
 */
export interface FailoverPolicy {
  graceSeconds: Partial<Record<L4Proto, number>>;
}

/**
 * 'update' (sync relies on this, SPEC rules 3 and 6): the state or timeout changed (e.g. a TCP entry
 * leaving established), and also traffic seen on an established UDP/ICMP entry, at most once per
 * second of the engine clock per entry (so sync sees "traffic after the synchronization delay").
 */
export type ConntrackEventKind = 'new' | 'established' | 'update' | 'destroy';

export interface ConntrackEvent {
  kind: ConntrackEventKind;
  entry: ConntrackEntry;
  /** Index of the worker that owns the entry (hash of the tuple), 0..workers-1. */
  worker: number;
}

export type HaRole = 'master' | 'backup';

/** Counters an engine keeps per VRF (read by state data and benchmarks). */
export interface EngineCounters {
  conntracks: number;
  synced: number; // entries created by sync
  created: number;
  destroyed: number;
  dropsTableFull: number;
  dropsFirewall: number;
  dropsBackup: number; // packets blocked because they matched a synced entry on a backup (rule 4)
  natAllocFailures: number;
}

/** Configuration of one VRF's dataplane, already converted from YANG. */
export interface VrfDataplaneConfig {
  name: string;
  /** RFC 7951 JSON of the /tandem-vrf:vrf[name] entry, printed with defaults. */
  json: Record<string, unknown>;
  /** Added by the fast path (D1): RFC 7951 entries of /tandem-network-profile:network-profile (virtual services use them). */
  networkProfiles?: Record<string, unknown>[];
  /** Added by the fast path (D1): /tandem-system:system/fast-path/limits/conntrack/max (per VRF). */
  conntrackMax?: number;
  /**
   * Added for issue 8: when a commit changed only this VRF's firewall rules (and firewall leaves),
   * those changes as a delta against the configuration the engine has live. `json` is still the
   * whole VRF part: an engine may ignore the delta or use it to update only what changed (the soft
   * engine sends only the changed rules to its workers; the linux engine edits only those rules of
   * the VRF's nftables chain, linux/nft-rule-edit.ts).
   */
  ruleDelta?: FirewallRuleDelta;
}

export interface DataplaneEngine {
  readonly kind: 'soft' | 'linux';
  /** Number of workers (nb-event-threads); an entry belongs to worker hash(tuple) % workers. */
  readonly workers: number;
  /** Stage a VRF's configuration (validate it against the engine's abilities); throw to refuse. */
  prepareVrf(config: VrfDataplaneConfig): Promise<void>;
  /** Make the staged configuration live (must not fail); `undefined` config removes the VRF. */
  applyVrf(name: string, config: VrfDataplaneConfig | undefined): Promise<void>;
  abortVrf(name: string): Promise<void>;
  setWorkers(n: number): Promise<void>;
  /** Master forwards and ages conntracks; backup holds synced ones without expiry and blocks their traffic. */
  setRole(vrf: string, role: HaRole): Promise<void>;
  role(vrf: string): HaRole;
  /** Subscribe to conntrack events of every VRF; returns an unsubscribe function. */
  onEvent(listener: (ev: ConntrackEvent) => void): () => void;
  /** Every current conntrack of a VRF (for a full resync), in batches. */
  dump(vrf: string, batch: (entries: ConntrackEntry[]) => void | Promise<void>): Promise<void>;
  /** Create or update conntracks (from sync); returns how many were written. */
  upsert(entries: ConntrackEntry[]): Promise<number>;
  remove(vrf: string, tuples: FlowTuple[]): Promise<number>;
  counters(vrf: string): EngineCounters;
  close(): Promise<void>;
  /**
   * Added by sync (D2): the rule-5 policy of a VRF (from ha-delays undefined-grace-period), used
   * by the next setRole(vrf, 'master') of a backup. Optional until every engine has it.
   */
  setFailoverPolicy?(vrf: string, policy: FailoverPolicy): void;
  /**
   * Added for fast sync (G): create or update synced conntracks given as packed IPv4 records, so
   * that a backup writes what it receives without building an object per conntrack. Same effect
   * as `upsert` of entries with `synced: true`, `alg: false`, `establishedAt` = now and
   * `lastActivity` = now (or now - age when bit 3 of the flags is set, which also sets
   * `activitySynced`). `records` holds whole records of IPV4_SYNC_RECORD_BYTES, big-endian:
   *   u8 flags (bits 0-1 protocol: 0 tcp, 1 udp, 2 icmp; bit 3 activity synchronised; no other bit),
   *   u8 TCP state (index in TcpState order: syn-sent ... close), u32 timeout (s),
   *   u32 age of the last activity (ms), u32 orig src, u32 orig dst, u16 orig sport,
   *   u16 orig dport, u32 reply src, u32 reply dst, u16 reply sport, u16 reply dport
   * (sync protocol v1's IPv4 record without a virtual service). The caller has checked every
   * field; the engine routes each record to its owning worker. Returns how many were written.
   */
  upsertIPv4Records?(vrf: string, records: Uint8Array, options?: UpsertIPv4Options): Promise<number>;
  /**
   * Added for fast sync (G): `dump` without an object per conntrack. Each batch is read field by
   * field; `entry(i)` gives what `dump` would have given, for entries the caller cannot take as
   * fields (not plain IPv4, or with a virtual service).
   */
  dumpPacked?(vrf: string, batch: (b: PackedConntrackBatch) => void | Promise<void>): Promise<void>;
  /**
   * Added by sync (issue 11): subscribe to losses of conntrack events (the linux engine's event
   * socket overran: `dropped` events of `vrf` were never reported). Sync answers with a full
   * resync at once. Returns an unsubscribe function.
   */
  onEventsLost?(listener: (vrf: string, dropped: number) => void): () => void;
}

/** How DataplaneEngine.upsertIPv4Records may write. */
export interface UpsertIPv4Options {
  /**
   * The records are a full resync's (issue 11): an engine that knows its table holds a record's
   * conntrack exactly as the record would write it (same tuples, NAT binding, state, and a timeout
   * not above the one held) may leave it as it is and count it written.
   */
  unchangedMayBeSkipped?: boolean;
}

/** One batch of DataplaneEngine.dumpPacked. */
export interface PackedConntrackBatch {
  readonly count: number;
  /** Entry i as an object, as `dump` gives it. */
  entry(i: number): ConntrackEntry;
  /** True when entry i has four IPv4 addresses and no virtual service: the accessors below describe it. */
  isPlainIPv4(i: number): boolean;
  /** 0 tcp, 1 udp, 2 icmp. */
  protoIndex(i: number): number;
  /** Index of the state in TcpState order (syn-sent ... close). */
  stateIndex(i: number): number;
  alg(i: number): boolean;
  synced(i: number): boolean;
  noSync(i: number): boolean;
  timeout(i: number): number;
  establishedAt(i: number): number;
  lastActivity(i: number): number;
  /** Address k (0 orig src, 1 orig dst, 2 reply src, 3 reply dst) as its 32-bit value. */
  ipv4(i: number, k: number): number;
  /** Port k (0 orig sport, 1 orig dport, 2 reply sport, 3 reply dport). */
  port(i: number, k: number): number;
}

/** Size of one record of `DataplaneEngine.upsertIPv4Records`. */
export const IPV4_SYNC_RECORD_BYTES = 34;
