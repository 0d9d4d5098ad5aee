// The part of the configuration one VRF's synchronisation runs on, read from the RFC 7951 JSON
// the commit transaction hands over (printed with defaults, so no default is repeated here).
import { createHash } from 'node:crypto';
import type { L4Proto } from '../fastpath/engine.js';
import { mirrorsConnections, parseNetworkProfiles } from '../fastpath/config/vrf-config.js';

export interface SyncPeerConfig {
  name: string;
  source: string;
  address: string;
  port: number;
}

export interface ProtoDelays {
  /** Seconds a conntrack must have been established before it is sent (rule 6). */
  synchronization: number;
  /** undefined-grace-period in seconds (rule 5), absent when not configured. */
  grace?: number;
}

export interface VrfSyncConfig {
  vrf: string;
  enabled: boolean;
  peers: SyncPeerConfig[];
  listenHaGroup: string;
  /** '' when none is configured. */
  secret: string;
  /** nb-event-threads: connections per peer. */
  workers: number;
  delays: Record<L4Proto, ProtoDelays>;
  /** Timeouts (s) of the VRF: tcp undefined (rule 3) and the established ones (grace effectiveness). */
  timeouts: { tcpUndefined: number; tcpEstablished: number; udp: number; icmp: number };
  /** Per-part digests of everything that changes the VRF's dataplane (both nodes should share it; see FINGERPRINT_PARTS). */
  fingerprint: Buffer;
  /** Virtual services whose profile mirrors connections (tcp-fast-path + connection-mirror, rule 10). */
  mirroredServices: Set<string>;
  /** anti-entropy-interval in seconds (0 or absent: off). */
  antiEntropyInterval?: number;
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {};
}

function list(v: unknown): Json[] {
  return Array.isArray(v) ? (v as Json[]) : [];
}

function num(v: unknown, what: string): number {
  const n = typeof v === 'string' ? Number(v) : v; // uint64 values are strings in RFC 7951
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new Error(`${what}: expected a number, got ${JSON.stringify(v)}`);
  return n;
}

function optNum(v: unknown, what: string): number | undefined {
  return v === undefined ? undefined : num(v, what);
}

/** Key-sorted JSON, so that equal configurations hash equally whatever the member order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Json;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * The configuration fingerprint of a VRF, compared with each peer's (divergence detection): one
 * 4-byte slice (truncated SHA-256 of canonical JSON) per part of the configuration that changes
 * what the dataplane does with a conntrack, so a mismatch names the parts that differ. 8 x 4 bytes
 * fill the 32 bytes the hello carries.
 */
export const FINGERPRINT_PARTS = [
  'firewall', 'cg-nat', 'virtual-service', 'network-profile', 'connection-mirror', 'timeouts', 'ha-delays', 'limits',
] as const;
export type FingerprintPart = typeof FINGERPRINT_PARTS[number];
const SLICE_BYTES = 4;

/** Slices by the (never modified) JSON object they hash: unchanged subtrees are shared between configurations. */
const slices = new WeakMap<object, Buffer>();

function slice(v: unknown): Buffer {
  const cacheable = v !== null && typeof v === 'object';
  const known = cacheable ? slices.get(v) : undefined;
  if (known) return known;
  const digest = createHash('sha256').update(canonicalJson(v ?? null)).digest().subarray(0, SLICE_BYTES);
  if (cacheable) slices.set(v, digest);
  return digest;
}

function computeFingerprint(config: Json, vrfEntry: Json, mirrored: Set<string>): Buffer {
  const ct = obj(obj(obj(vrfEntry['tandem-conntrack:network-stack'])['fast-path'])['conntrack']);
  const services = list(vrfEntry['tandem-virtual-service:virtual-service']);
  const used = new Set(services.map((vs) => String(vs['network-profile'])));
  const profiles = list(config['tandem-network-profile:network-profile']).filter((p) => used.has(String(p['name'])));
  const limits = obj(obj(obj(config['tandem-system:system'])['fast-path'])['limits']);
  const parts: Record<FingerprintPart, unknown> = {
    firewall: vrfEntry['tandem-firewall:firewall'],
    'cg-nat': vrfEntry['tandem-cg-nat:cg-nat'],
    'virtual-service': vrfEntry['tandem-virtual-service:virtual-service'],
    'network-profile': profiles,
    'connection-mirror': [...mirrored].sort(),
    timeouts: ct['timeouts'],
    'ha-delays': ct['ha-delays'],
    limits: { 'conntrack-max': obj(limits['conntrack'])['max'] ?? null },
  };
  return Buffer.concat(FINGERPRINT_PARTS.map((p) => slice(parts[p])));
}

/** The parts of the configuration whose slices differ between two fingerprints (all of them if a fingerprint is not ours). */
export function differingParts(a: Buffer, b: Buffer): FingerprintPart[] {
  if (a.length !== FINGERPRINT_PARTS.length * SLICE_BYTES || b.length !== a.length) return [...FINGERPRINT_PARTS];
  return FINGERPRINT_PARTS.filter((_, i) => !a.subarray(i * SLICE_BYTES, (i + 1) * SLICE_BYTES).equals(b.subarray(i * SLICE_BYTES, (i + 1) * SLICE_BYTES)));
}

/** The fingerprint of one VRF of a configuration. */
export function vrfFingerprint(config: Json, vrfEntry: Json): Buffer {
  return computeFingerprint(config, vrfEntry, mirroredServices(config, vrfEntry));
}

export function vrfEntries(config: Json): Json[] {
  return list(config['tandem-vrf:vrf']);
}

/** nb-event-threads, or undefined when the configuration has no fast-path limits (then the engine's count rules). */
export function workersOf(config: Json): number | undefined {
  const fp = obj(obj(config['tandem-system:system'])['fast-path']);
  const n = obj(obj(obj(fp['limits'])['cg-nat']))['nb-event-threads'];
  return n === undefined ? undefined : num(n, 'nb-event-threads');
}

/** Virtual services of a VRF whose flows are mirrored, by the fast path's rule (mirrorsConnections). */
function mirroredServices(config: Json, vrfEntry: Json): Set<string> {
  const out = new Set<string>();
  const services = list(vrfEntry['tandem-virtual-service:virtual-service']);
  if (services.length === 0) return out;
  const profiles = parseNetworkProfiles(list(config['tandem-network-profile:network-profile']));
  for (const vs of services) {
    if (mirrorsConnections(profiles.get(String(vs['network-profile'])))) out.add(String(vs['name']));
  }
  return out;
}

/** readSyncConfigs results by configuration object (validate, prepare and apply read the same one). */
const readCache = new WeakMap<Json, { workers: number; configs: Map<string, VrfSyncConfig> }>();

/** The sync configuration of every VRF that has ha-fp-conntrack (read once per configuration object). */
export function readSyncConfigs(config: Json, defaultWorkers: number): Map<string, VrfSyncConfig> {
  const cached = readCache.get(config);
  if (cached && cached.workers === defaultWorkers) return cached.configs;
  const configs = parseSyncConfigs(config, defaultWorkers);
  readCache.set(config, { workers: defaultWorkers, configs });
  return configs;
}

function parseSyncConfigs(config: Json, defaultWorkers: number): Map<string, VrfSyncConfig> {
  const out = new Map<string, VrfSyncConfig>();
  const workers = workersOf(config) ?? defaultWorkers;
  for (const v of vrfEntries(config)) {
    const ha = v['tandem-ha-fp-conntrack:ha-fp-conntrack'];
    if (ha === undefined) continue;
    const h = obj(ha);
    const name = String(v['name']);
    const ct = obj(obj(obj(v['tandem-conntrack:network-stack'])['fast-path'])['conntrack']);
    const to = obj(ct['timeouts']);
    const tcpTo = obj(to['tcp']);
    const hd = obj(ct['ha-delays']);
    const delays = (p: L4Proto): ProtoDelays => {
      const d = obj(hd[p]);
      const grace = optNum(d['undefined-grace-period'], `${p} undefined-grace-period`);
      return { synchronization: num(d['synchronization'], `${p} synchronization`), ...(grace === undefined ? {} : { grace }) };
    };
    const mirrored = mirroredServices(config, v);
    out.set(name, {
      vrf: name,
      enabled: h['enabled'] !== false,
      peers: list(h['peer']).map((p) => ({
        name: String(p['name']),
        source: String(p['source']),
        address: String(p['address']),
        port: num(p['port'], 'peer port'),
      })),
      listenHaGroup: String(h['listen-ha-group'] ?? ''),
      secret: typeof h['shared-secret'] === 'string' ? h['shared-secret'] : '',
      workers,
      delays: { tcp: delays('tcp'), udp: delays('udp'), icmp: delays('icmp') },
      timeouts: {
        tcpUndefined: num(tcpTo['undefined'], 'tcp undefined timeout'),
        tcpEstablished: num(tcpTo['established'], 'tcp established timeout'),
        udp: num(to['udp'], 'udp timeout'),
        icmp: num(to['icmp'], 'icmp timeout'),
      },
      fingerprint: computeFingerprint(config, v, mirrored),
      mirroredServices: mirrored,
      antiEntropyInterval: optNum(h['anti-entropy-interval'], 'anti-entropy-interval') ?? 0,
    });
  }
  return out;
}

/**
 * Whether two configurations can keep the same connections (sockets, secret, connection count).
 * The fingerprint is not among them: a changed one is sent to the peers on the open connections.
 */
export function sameConnections(a: VrfSyncConfig, b: VrfSyncConfig): boolean {
  return a.enabled === b.enabled && a.secret === b.secret && a.workers === b.workers &&
    canonicalJson(a.peers) === canonicalJson(b.peers);
}
