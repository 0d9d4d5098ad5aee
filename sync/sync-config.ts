// The part of the configuration one VRF's synchronisation runs on, read from the RFC 7951 JSON
// the commit transaction hands over (printed with defaults, so no default is repeated here).
import { createHash } from 'node:crypto';
import type { L4Proto } from '../fastpath/engine.js';

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
  /** SHA-256 of the VRF's firewall + CG-NAT configuration (both nodes must share it). */
  fingerprint: Buffer;
  /** Virtual services whose profile mirrors connections (tcp-fast-path + connection-mirror, rule 10). */
  mirroredServices: Set<string>;
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
 * Fingerprints by VRF entry: a commit reads the same (never modified) JSON in validate, prepare and
 * apply, and unchanged entries are shared between configurations, so each is hashed once.
 */
const fingerprints = new WeakMap<Json, Buffer>();

export function vrfFingerprint(vrfEntry: Json): Buffer {
  const known = fingerprints.get(vrfEntry);
  if (known) return known;
  const fingerprint = computeFingerprint(vrfEntry);
  fingerprints.set(vrfEntry, fingerprint);
  return fingerprint;
}

function computeFingerprint(vrfEntry: Json): Buffer {
  const parts = { firewall: vrfEntry['tandem-firewall:firewall'] ?? null, cgnat: vrfEntry['tandem-cg-nat:cg-nat'] ?? null };
  return createHash('sha256').update(canonicalJson(parts)).digest();
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

function mirroredServices(config: Json, vrfEntry: Json): Set<string> {
  const profiles = new Map<string, Json>();
  for (const p of list(config['tandem-network-profile:network-profile'])) profiles.set(String(p['name']), p);
  const out = new Set<string>();
  for (const vs of list(vrfEntry['tandem-virtual-service:virtual-service'])) {
    const profile = profiles.get(String(vs['network-profile']));
    if (!profile || profile['type'] !== 'tcp-fast-path') continue;
    if (obj(profile['tcp-fast-path'])['connection-mirror'] === true) out.add(String(vs['name']));
  }
  return out;
}

/** The sync configuration of every VRF that has ha-fp-conntrack. */
export function readSyncConfigs(config: Json, defaultWorkers: number): Map<string, VrfSyncConfig> {
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
      fingerprint: vrfFingerprint(v),
      mirroredServices: mirroredServices(config, v),
    });
  }
  return out;
}

/** Whether two configurations need new connections (anything the hello or the sockets depend on). */
export function sameConnections(a: VrfSyncConfig, b: VrfSyncConfig): boolean {
  return a.enabled === b.enabled && a.secret === b.secret && a.workers === b.workers &&
    a.fingerprint.equals(b.fingerprint) && canonicalJson(a.peers) === canonicalJson(b.peers);
}
