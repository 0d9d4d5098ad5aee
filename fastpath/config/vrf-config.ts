// The soft engine's view of one VRF's configuration, read from the RFC 7951 JSON of
// /tandem-vrf:vrf[name] (printed with defaults, so no default is repeated here) and the network
// profiles. Anything malformed or not implemented throws a VrfConfigError naming the path.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { L4Proto } from '../engine.js';

export class VrfConfigError extends Error {
  override name = 'VrfConfigError';
  constructor(message: string, readonly path: string) {
    super(message);
  }
}

export interface TcpTimeouts {
  'syn-sent': number; 'syn-recv': number; established: number; 'fin-wait': number; 'close-wait': number;
  'last-ack': number; 'time-wait': number; close: number; undefined: number;
}

export interface Timeouts {
  tcp: TcpTimeouts;
  udp: number;
  icmp: number;
}

export interface PortRange { start: number; end: number }

export interface FirewallRule {
  name: string;
  protocol?: L4Proto;
  sourcePrefix?: string;
  destinationPrefix?: string;
  sourcePort?: PortRange;
  destinationPort?: PortRange;
  action: 'accept' | 'drop';
}

export interface FirewallConfig {
  defaultAction: 'accept' | 'drop';
  dropInvalid: boolean;
  rules: FirewallRule[];
}

export interface NatPoolConfig {
  name: string;
  prefix: string; // IPv4 prefix
  portStart: number;
  portEnd: number;
  blockSize: number;
}

export interface CgNatConfig {
  pools: NatPoolConfig[];
  rules: { name: string; sourcePrefix: string; pool: string }[];
  logAllocation: boolean;
  logDestroy: boolean;
}

export interface NetworkProfile {
  name: string;
  type: 'tcp-fast-path' | 'tcp-proxy' | 'udp-fast-path';
  sessionIdleTimeout: number;
  synProtection: boolean;
  connectionMirror: boolean;
}

/**
 * Rule 10, the one place it is decided: a virtual service's flows are mirrored (synchronised) only
 * when its profile is tcp-fast-path with connection-mirror. The engines mark the other flows
 * noSync from it; sync's configuration fingerprint reads it too.
 */
export function mirrorsConnections(profile: NetworkProfile | undefined): boolean {
  return profile?.type === 'tcp-fast-path' && profile.connectionMirror;
}

export interface VirtualServiceConfig {
  name: string;
  vip: string;
  port: number;
  protocol: 'tcp' | 'udp';
  members: { address: string; port: number; weight: number }[];
  persistence: 'none' | 'client-ip';
  /** Source address of the server-side connections (SNAT IP mode); absent: the client's address is kept. */
  snatIp?: string;
  /** Established timeout of its flows: the profile's session-idle-timeout, else the VRF's. */
  establishedTimeout?: number;
  synProtection: boolean;
  /** Flows are mirrored (synchronised) only with a tcp-fast-path profile with connection-mirror (rule 10). */
  mirror: boolean;
}

export interface SoftVrfConfig {
  name: string;
  timeouts: Timeouts;
  firewall: FirewallConfig;
  cgNat: CgNatConfig;
  virtualServices: VirtualServiceConfig[];
  /** Maximum conntracks of this VRF (all workers together). */
  conntrackMax: number;
}

type Json = Record<string, unknown>;

function obj(v: unknown, path: string): Json {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new VrfConfigError(`expected an object at ${path}`, path);
  return v as Json;
}

/** Path of a list entry: by its name key when it has one, else by position. */
function entryPath(path: string, i: number, e: Json): string {
  return typeof e.name === 'string' ? `${path}[name='${e.name}']` : `${path}[${i}]`;
}

function list(v: unknown, path: string): Json[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new VrfConfigError(`expected a list at ${path}`, path);
  return v.map((e, i) => obj(e, `${path}[${i}]`));
}

function num(v: unknown, path: string, fallback?: number): number {
  if (v === undefined && fallback !== undefined) return fallback;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new VrfConfigError(`expected a number at ${path}, got ${JSON.stringify(v)}`, path);
  return n;
}

function str(v: unknown, path: string, fallback?: string): string {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string') throw new VrfConfigError(`expected a string at ${path}, got ${JSON.stringify(v)}`, path);
  return v;
}

function bool(v: unknown, path: string, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new VrfConfigError(`expected a boolean at ${path}, got ${JSON.stringify(v)}`, path);
  return v;
}

/** Checks an "a.b.c.d/len" or "x::/len" prefix; returns it unchanged. */
function prefix(v: unknown, path: string, family?: 4): string {
  const s = str(v, path);
  const [addr, len] = s.split('/');
  const bits = Number(len);
  const v4 = isIPv4(addr ?? '');
  if (!(v4 || isIPv6(addr ?? '')) || !/^\d+$/.test(len ?? '') || bits > (v4 ? 32 : 128) || (family === 4 && !v4)) {
    throw new VrfConfigError(`invalid ${family === 4 ? 'IPv4 ' : ''}prefix ${JSON.stringify(s)} at ${path}`, path);
  }
  return s;
}

function ipAddress(v: unknown, path: string): string {
  const s = str(v, path);
  if (!isIPv4(s) && !isIPv6(s)) throw new VrfConfigError(`invalid IP address ${JSON.stringify(s)} at ${path}`, path);
  return s;
}

function proto(v: unknown, path: string): L4Proto | undefined {
  if (v === undefined) return undefined;
  if (v !== 'tcp' && v !== 'udp' && v !== 'icmp') throw new VrfConfigError(`unknown protocol ${JSON.stringify(v)} at ${path}`, path);
  return v;
}

function action(v: unknown, path: string, fallback?: 'accept' | 'drop'): 'accept' | 'drop' {
  const s = str(v, path, fallback);
  if (s !== 'accept' && s !== 'drop') throw new VrfConfigError(`unknown action ${JSON.stringify(s)} at ${path}`, path);
  return s;
}

function portRange(v: unknown, path: string): PortRange | undefined {
  if (v === undefined) return undefined;
  const o = obj(v, path);
  const start = num(o.start, `${path}/start`);
  const end = num(o.end, `${path}/end`, start);
  if (end < start) throw new VrfConfigError(`port range end ${end} is lower than start ${start} at ${path}`, path);
  return { start, end };
}

/** One firewall rule (an RFC 7951 entry of .../tandem-firewall:firewall/rule); `p` is its data path for errors. */
export function parseFirewallRule(r: Json, p: string): FirewallRule {
  return {
    name: str(r.name, `${p}/name`),
    protocol: proto(r.protocol, `${p}/protocol`),
    sourcePrefix: r['source-prefix'] === undefined ? undefined : prefix(r['source-prefix'], `${p}/source-prefix`),
    destinationPrefix: r['destination-prefix'] === undefined ? undefined : prefix(r['destination-prefix'], `${p}/destination-prefix`),
    sourcePort: portRange(r['source-port'], `${p}/source-port`),
    destinationPort: portRange(r['destination-port'], `${p}/destination-port`),
    action: action(r.action, `${p}/action`),
  };
}

/** The firewall's own leaves (default-action, drop-invalid) of an RFC 7951 firewall container. */
export function parseFirewallDefaults(fw: Json, fwPath: string): Omit<FirewallConfig, 'rules'> {
  return {
    defaultAction: action(fw['default-action'], `${fwPath}/default-action`, 'accept'),
    dropInvalid: bool(fw['drop-invalid'], `${fwPath}/drop-invalid`, true),
  };
}

/** Network profiles from the RFC 7951 list /tandem-network-profile:network-profile. */
export function parseNetworkProfiles(entries: Json[] | undefined): Map<string, NetworkProfile> {
  const out = new Map<string, NetworkProfile>();
  for (const [i, p] of (entries ?? []).entries()) {
    const path = entryPath('/tandem-network-profile:network-profile', i, p);
    const name = str(p.name, `${path}/name`);
    const type = str(p.type, `${path}/type`);
    if (type !== 'tcp-fast-path' && type !== 'tcp-proxy' && type !== 'udp-fast-path') {
      throw new VrfConfigError(`unknown network profile type ${JSON.stringify(type)}`, `${path}/type`);
    }
    const fp = obj(p['tcp-fast-path'], `${path}/tcp-fast-path`);
    out.set(name, {
      name,
      type,
      sessionIdleTimeout: num(fp['session-idle-timeout'], `${path}/tcp-fast-path/session-idle-timeout`, 300),
      synProtection: bool(fp['enable-syn-protection'], `${path}/tcp-fast-path/enable-syn-protection`, false),
      connectionMirror: bool(fp['connection-mirror'], `${path}/tcp-fast-path/connection-mirror`, false),
    });
  }
  return out;
}

// Leaves this engine knows under the VRF entry; any other member is refused as not implemented
// (except those owned by other subsystems, which they check).
const FOREIGN_VRF_MEMBERS = new Set(['name', 'vrrp', 'interface', 'tandem-ha-fp-conntrack:ha-fp-conntrack']);

export function parseVrfConfig(vrf: Json, profiles: Map<string, NetworkProfile>, conntrackMax: number): SoftVrfConfig {
  const name = str(vrf.name, '/tandem-vrf:vrf/name');
  const base = `/tandem-vrf:vrf[name='${name}']`;
  for (const key of Object.keys(vrf)) {
    if (!FOREIGN_VRF_MEMBERS.has(key) && !['tandem-firewall:firewall', 'tandem-cg-nat:cg-nat',
      'tandem-virtual-service:virtual-service', 'tandem-conntrack:network-stack'].includes(key)) {
      throw new VrfConfigError(`not yet implemented: ${base}/${key}`, `${base}/${key}`);
    }
  }

  const ctPath = `${base}/tandem-conntrack:network-stack/fast-path/conntrack/timeouts`;
  const ns = obj(vrf['tandem-conntrack:network-stack'], `${base}/tandem-conntrack:network-stack`);
  const t = obj(obj(obj(ns['fast-path'], ctPath).conntrack, ctPath).timeouts, ctPath);
  const tcp = obj(t.tcp, `${ctPath}/tcp`);
  // Linux nf_conntrack values: used only when the JSON has no timeouts container (printed with
  // defaults it always has; the fallback keeps the engine usable from code and tests).
  const tcpDefaults: TcpTimeouts = { 'syn-sent': 120, 'syn-recv': 60, established: 432000, 'fin-wait': 120,
    'close-wait': 60, 'last-ack': 30, 'time-wait': 120, close: 10, undefined: 10 };
  const tcpTimeouts = {} as TcpTimeouts;
  for (const k of Object.keys(tcpDefaults) as (keyof TcpTimeouts)[]) tcpTimeouts[k] = num(tcp[k], `${ctPath}/tcp/${k}`, tcpDefaults[k]);
  const timeouts: Timeouts = { tcp: tcpTimeouts, udp: num(t.udp, `${ctPath}/udp`, 120), icmp: num(t.icmp, `${ctPath}/icmp`, 30) };

  const fwPath = `${base}/tandem-firewall:firewall`;
  const fw = obj(vrf['tandem-firewall:firewall'], fwPath);
  const firewall: FirewallConfig = {
    ...parseFirewallDefaults(fw, fwPath),
    rules: list(fw.rule, `${fwPath}/rule`).map((r, i) => parseFirewallRule(r, entryPath(`${fwPath}/rule`, i, r))),
  };

  const natPath = `${base}/tandem-cg-nat:cg-nat`;
  const nat = obj(vrf['tandem-cg-nat:cg-nat'], natPath);
  const pools = list(nat.pool, `${natPath}/pool`).map((p, i): NatPoolConfig => {
    const pp = entryPath(`${natPath}/pool`, i, p);
    const range = obj(p['port-range'], `${pp}/port-range`);
    const pool = {
      name: str(p.name, `${pp}/name`),
      prefix: prefix(p.prefix, `${pp}/prefix`, 4),
      portStart: num(range.start, `${pp}/port-range/start`, 1024),
      portEnd: num(range.end, `${pp}/port-range/end`, 65535),
      blockSize: num(p['port-block-size'], `${pp}/port-block-size`, 512),
    };
    if (pool.portEnd < pool.portStart || pool.blockSize < 1 || pool.blockSize > pool.portEnd - pool.portStart + 1) {
      throw new VrfConfigError(`pool ${pool.name}: port-block-size ${pool.blockSize} does not fit port range ${pool.portStart}-${pool.portEnd}`, pp);
    }
    const bits = Number(pool.prefix.split('/')[1]);
    if (bits < 8) throw new VrfConfigError(`pool ${pool.name}: prefix ${pool.prefix} is too large for the soft engine (at most a /8)`, `${pp}/prefix`);
    return pool;
  });
  const logging = obj(nat.logging, `${natPath}/logging`);
  const cgNat: CgNatConfig = {
    pools,
    rules: list(nat.rule, `${natPath}/rule`).map((r, i) => {
      const rp = entryPath(`${natPath}/rule`, i, r);
      const pool = str(r.pool, `${rp}/pool`);
      if (!pools.some((p) => p.name === pool)) throw new VrfConfigError(`cg-nat rule refers to unknown pool ${JSON.stringify(pool)}`, `${rp}/pool`);
      return { name: str(r.name, `${rp}/name`), sourcePrefix: prefix(r['source-prefix'], `${rp}/source-prefix`, 4), pool };
    }),
    logAllocation: bool(logging.allocation, `${natPath}/logging/allocation`, false),
    logDestroy: bool(logging.destroy, `${natPath}/logging/destroy`, false),
  };

  const virtualServices = list(vrf['tandem-virtual-service:virtual-service'], `${base}/tandem-virtual-service:virtual-service`).map((v, i): VirtualServiceConfig => {
    const vp = entryPath(`${base}/tandem-virtual-service:virtual-service`, i, v);
    const vsName = str(v.name, `${vp}/name`);
    const protocol = str(v.protocol, `${vp}/protocol`, 'tcp');
    if (protocol !== 'tcp' && protocol !== 'udp') throw new VrfConfigError(`unknown protocol ${protocol}`, `${vp}/protocol`);
    const persistence = str(v.persistence, `${vp}/persistence`, 'none');
    if (persistence !== 'none' && persistence !== 'client-ip') throw new VrfConfigError(`unknown persistence ${persistence}`, `${vp}/persistence`);
    const profileName = v['network-profile'] === undefined ? undefined : str(v['network-profile'], `${vp}/network-profile`);
    const profile = profileName === undefined ? undefined : profiles.get(profileName);
    if (profileName !== undefined && !profile) {
      throw new VrfConfigError(`virtual service ${vsName}: unknown network profile ${JSON.stringify(profileName)}`, `${vp}/network-profile`);
    }
    const fastPath = profile?.type === 'tcp-fast-path';
    const mirror = mirrorsConnections(profile);
    if (mirror && persistence === 'client-ip') {
      throw new VrfConfigError(`virtual service ${vsName}: client-ip persistence is not supported with connection-mirror`, `${vp}/persistence`);
    }
    return {
      name: vsName,
      vip: ipAddress(v.vip, `${vp}/vip`),
      port: num(v.port, `${vp}/port`),
      protocol,
      members: list(v['pool-member'], `${vp}/pool-member`).map((m, j) => ({
        address: ipAddress(m.address, `${vp}/pool-member[${j}]/address`),
        port: num(m.port, `${vp}/pool-member[${j}]/port`),
        weight: num(m.weight, `${vp}/pool-member[${j}]/weight`, 1),
      })),
      persistence,
      ...(v['snat-ip'] === undefined ? {} : { snatIp: ipAddress(v['snat-ip'], `${vp}/snat-ip`) }),
      establishedTimeout: fastPath ? profile?.sessionIdleTimeout : undefined,
      synProtection: fastPath && !!profile?.synProtection,
      mirror,
    };
  });

  return { name, timeouts, firewall, cgNat, virtualServices, conntrackMax };
}

/** A compiled prefix test (node's BlockList does the IPv4/IPv6 arithmetic). */
export function prefixMatcher(prefixText: string): (address: string) => boolean {
  const [addr, len] = prefixText.split('/') as [string, string];
  const family = isIPv4(addr) ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  list.addSubnet(addr, Number(len), family);
  return (address: string) => (isIPv4(address) ? family === 'ipv4' : family === 'ipv6') && list.check(address, family);
}
