// The shapes shared by a VRF's sync sender, receiver and the service around them: tuning of the
// connections, the notifications raised, and the summary of a full resync.

import type { FingerprintPart } from './sync-config.js';

export interface SyncTuning {
  queueLimit: number;
  keepaliveMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  /** Identifies this node in the hello (host name by default). */
  nodeId: string;
  /** Anti-entropy ranges per worker (default 64; tests and the benchmark change it). */
  antiEntropyRanges?: number;
}

export type SyncNotification =
  | { kind: 'connection-up'; vrf: string; peer: string; client: string }
  | { kind: 'connection-down'; vrf: string; peer: string; client: string; reason: string }
  | { kind: 'full-resync-complete'; vrf: string; peer: string; summary: ResyncSummary }
  /** count: sent; acknowledged: written by the peer (the least of them); complete: every peer acknowledged the end. */
  | { kind: 'manual-synchronization-complete'; vrf: string; count: number; acknowledged: number; peerRefused: number; complete: boolean; duration: number }
  | { kind: 'peer-configuration-mismatch'; vrf: string; peer: string; local: string; remote: string; differences: FingerprintPart[] }
  /** Anti-entropy found the peer's synced conntracks different in some ranges and repaired them (counts on the backup). */
  | { kind: 'divergence-repaired'; vrf: string; peer: string; client: string; ranges: number; added: number; updated: number; removed: number; refused: number };

export interface ResyncSummary {
  /** ISO date-and-time of completion. */
  time: string;
  /** Milliseconds. */
  duration: number;
  count: number;
}

export type FingerprintStatus = 'match' | 'mismatch' | 'unknown';
