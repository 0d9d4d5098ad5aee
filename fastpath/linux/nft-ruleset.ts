// The nftables ruleset of one VRF, rendered from its configuration, and its atomic application.
// The engine owns exactly one table, `inet tandem`, in the VRF's namespace; `nft -f` replaces it in
// a single transaction (chains declared, all their rules flushed, the new rules added), so no packet
// ever sees a half-applied ruleset and other tables are never touched.
//
// - firewall (forward hook): established/related accepted first; invalid packets and mid-stream
//   TCP segments of unknown connections dropped (drop-invalid), so an untracked connection cannot
//   survive a failover by accident; then the ordered rules, then the default action.
// - CG-NAT (postrouting): deterministic port blocks (RFC 7422 style): each subscriber address of a
//   rule's prefix gets one fixed block of the pool (address + port range), the same on both nodes,
//   so both SNAT to the same shared addresses (never masquerade, whose address differs per node).
// - virtual services (prerouting): DNAT of vip:port to the pool members, by weight (numgen) or by
//   client address (jhash) with client-ip persistence; with a snat-ip (postrouting), SNAT of their
//   server-side connections to it.
// - backup role: a raw-priority prerouting chain drops every packet not addressed to the node
//   itself, before conntrack sees it: synced conntracks are neither used nor refreshed (rule 4).
// - counters: every firewall rule and the default action count into a named counter
//   (nft-counters.ts reads them). The script never deletes the table: it declares the chains,
//   flushes their rules and adds them again, so named counters (kernel objects of the table) keep
//   their values across a reload: editing one rule resets no other rule's counts.
import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';
import type { HaRole } from '../engine.js';
import type { FirewallRule, SoftVrfConfig, VirtualServiceConfig } from '../config/vrf-config.js';
import { backupGuardLines } from './backup-guard.js';

export const TABLE = 'tandem';
/** A rule's prefix may hold at most this many subscribers (one map element each). */
const MAX_SUBSCRIBERS_PER_RULE = 65536;

export class RulesetError extends Error {
  override name = 'RulesetError';
  constructor(message: string, readonly path?: string) {
    super(message);
  }
}

function ipv4ToInt(text: string): number {
  const p = text.split('.').map(Number);
  return ((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3];
}

function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function prefixRange(prefix: string): { base: number; size: number } {
  const [addr, len] = prefix.split('/') as [string, string];
  const bits = Number(len);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (ipv4ToInt(addr) & mask) >>> 0, size: 2 ** (32 - bits) };
}

/** One subscriber's fixed translation: public address and port block. */
export interface PortBlock {
  subscriber: string;
  address: string;
  portStart: number;
  portEnd: number;
}

/**
 * The deterministic block of every subscriber of every CG-NAT rule. Rules sharing a pool take
 * consecutive blocks; a rule whose subscribers do not fit is refused.
 */
export function assignPortBlocks(cfg: SoftVrfConfig): Map<string, PortBlock[]> {
  const next = new Map<string, number>(); // pool -> next free block
  const out = new Map<string, PortBlock[]>();
  const base = `/tandem-vrf:vrf[name='${cfg.name}']/tandem-cg-nat:cg-nat`;
  for (const rule of cfg.cgNat.rules) {
    const pool = cfg.cgNat.pools.find((p) => p.name === rule.pool);
    if (!pool) throw new RulesetError(`cg-nat rule ${rule.name} refers to unknown pool ${rule.pool}`, `${base}/rule[name='${rule.name}']/pool`);
    const subscribers = prefixRange(rule.sourcePrefix);
    if (subscribers.size > MAX_SUBSCRIBERS_PER_RULE) {
      throw new RulesetError(
        `cg-nat rule ${rule.name}: source-prefix ${rule.sourcePrefix} holds ${subscribers.size} subscribers; the linux engine gives each a fixed port block and takes at most ${MAX_SUBSCRIBERS_PER_RULE} (a /16) per rule`,
        `${base}/rule[name='${rule.name}']/source-prefix`);
    }
    const addresses = prefixRange(pool.prefix);
    const perAddress = Math.floor((pool.portEnd - pool.portStart + 1) / pool.blockSize);
    const capacity = addresses.size * perAddress;
    const first = next.get(pool.name) ?? 0;
    if (first + subscribers.size > capacity) {
      throw new RulesetError(
        `cg-nat rule ${rule.name}: pool ${pool.name} has ${capacity - first} free port blocks of ${pool.blockSize} ports, the rule's ${rule.sourcePrefix} needs ${subscribers.size}`,
        `${base}/rule[name='${rule.name}']`);
    }
    const blocks: PortBlock[] = [];
    for (let i = 0; i < subscribers.size; i++) {
      const k = first + i;
      const portStart = pool.portStart + (k % perAddress) * pool.blockSize;
      blocks.push({
        subscriber: intToIpv4(subscribers.base + i),
        address: intToIpv4(addresses.base + Math.floor(k / perAddress)),
        portStart,
        portEnd: portStart + pool.blockSize - 1,
      });
    }
    next.set(pool.name, first + subscribers.size);
    out.set(rule.name, blocks);
  }
  return out;
}

function addressMatch(direction: 'saddr' | 'daddr', prefix: string): string {
  return `${isIPv4(prefix.split('/')[0]) ? 'ip' : 'ip6'} ${direction} ${prefix}`;
}

/** Named counter of a firewall rule (rule names are valid nft identifiers after the prefix). */
const RULE_COUNTER_PREFIX = 'fw_rule_';
export const DEFAULT_ACCEPT_COUNTER = 'fw_default_accept';
export const DEFAULT_DROP_COUNTER = 'fw_default_drop';

export function ruleCounterName(rule: string): string {
  return `${RULE_COUNTER_PREFIX}${rule}`;
}

/** A firewall rule as nft text: its matches, its named counter, its verdict, its identity (comment `rule NAME`). */
export function firewallRule(rule: FirewallRule): string {
  const parts: string[] = [];
  if (rule.sourcePrefix) parts.push(addressMatch('saddr', rule.sourcePrefix));
  if (rule.destinationPrefix) parts.push(addressMatch('daddr', rule.destinationPrefix));
  if (rule.protocol === 'icmp') {
    const v6 = [rule.sourcePrefix, rule.destinationPrefix].some((p) => p !== undefined && !isIPv4(p.split('/')[0]));
    parts.push(`meta l4proto ${v6 ? 'ipv6-icmp' : 'icmp'}`);
  } else if (rule.protocol) {
    parts.push(`meta l4proto ${rule.protocol}`);
    const range = (r: { start: number; end: number }) => (r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`);
    if (rule.sourcePort) parts.push(`${rule.protocol} sport ${range(rule.sourcePort)}`);
    if (rule.destinationPort) parts.push(`${rule.protocol} dport ${range(rule.destinationPort)}`);
  }
  parts.push(`counter name ${JSON.stringify(ruleCounterName(rule.name))} ${rule.action === 'drop' ? 'drop' : 'accept'}`);
  parts.push(`comment ${JSON.stringify(ruleComment(rule.name))}`);
  return parts.join(' ');
}

/** The comment that identifies a tandem rule's nft rule (names are at most 64 characters: nft keeps 128). */
export function ruleComment(rule: string): string {
  return `rule ${rule}`;
}

/** The last rule of the forward chain: the default action, counted. */
export function defaultActionRule(action: 'accept' | 'drop'): string {
  return action === 'drop' ? `counter name ${DEFAULT_DROP_COUNTER} drop` : `counter name ${DEFAULT_ACCEPT_COUNTER} accept`;
}

function virtualServiceRule(vs: VirtualServiceConfig): string | undefined {
  const members = vs.members.filter((m) => m.weight > 0);
  if (members.length === 0) return undefined; // nothing to balance to: the vip is not translated
  const v4 = isIPv4(vs.vip);
  const family = v4 ? 'ip' : 'ip6';
  const target = (m: { address: string; port: number }) => `${m.address} . ${m.port}`;
  const match = `${family} daddr ${vs.vip} ${vs.protocol} dport ${vs.port}`;
  const comment = `comment ${JSON.stringify(`virtual-service ${vs.name}`)}`;
  if (vs.persistence === 'client-ip') {
    const elements = members.map((m, i) => `${i} : ${target(m)}`).join(', ');
    return `${match} counter dnat ${family} to jhash ${family} saddr mod ${members.length} map { ${elements} } ${comment}`;
  }
  let at = 0;
  const elements = members.map((m) => {
    const range = m.weight === 1 ? `${at}` : `${at}-${at + m.weight - 1}`;
    at += m.weight;
    return `${range} : ${target(m)}`;
  }).join(', ');
  return `${match} counter dnat ${family} to numgen random mod ${at} map { ${elements} } ${comment}`;
}

const BASE_CHAINS: Record<string, string> = {
  backup_guard: 'type filter hook prerouting priority raw - 10; policy accept;',
  forward: 'type filter hook forward priority filter; policy accept;',
  prerouting_nat: 'type nat hook prerouting priority dstnat; policy accept;',
  postrouting_nat: 'type nat hook postrouting priority srcnat; policy accept;',
};

/**
 * The whole `nft -f` script that replaces the rules of table inet tandem with this VRF's ruleset.
 * `previous`: the configuration applied before (undefined at the first apply): the counter of a
 * rule removed since is deleted, that of an edited rule starts again from 0, all others keep
 * counting. No nft call is needed to know what the table holds: what is deleted is declared
 * first, so the script applies whether or not it exists.
 */
export function renderRuleset(cfg: SoftVrfConfig, role: HaRole, previous?: SoftVrfConfig): string {
  const blocks = assignPortBlocks(cfg);
  const wanted = new Set(cfg.firewall.rules.map((r) => ruleCounterName(r.name)));
  const now = new Map(cfg.firewall.rules.map((r) => [r.name, JSON.stringify(r)]));
  const stale = (previous?.firewall.rules ?? []).filter((r) => now.get(r.name) !== JSON.stringify(r)).map((r) => ruleCounterName(r.name));
  const lines: string[] = [
    // Declared first (created when absent), then emptied of rules: chains and counters stay.
    `table inet ${TABLE} {`,
    ...Object.entries(BASE_CHAINS).map(([chain, type]) => `  chain ${chain} { ${type} }`),
    ...stale.map((n) => `  counter ${n} {}`),
    '}',
    `flush table inet ${TABLE}`,
    ...(role === 'backup' ? [] : [`delete chain inet ${TABLE} backup_guard`]),
    ...stale.map((n) => `delete counter inet ${TABLE} ${n}`),
    `table inet ${TABLE} {`,
    '  counter backup_drops {}',
    '  counter invalid_drops {}',
    `  counter ${DEFAULT_ACCEPT_COUNTER} {}`,
    `  counter ${DEFAULT_DROP_COUNTER} {}`,
    ...[...wanted].map((n) => `  counter ${n} {}`),
  ];
  if (role === 'backup') lines.push(...backupGuardLines());
  lines.push('  chain forward {', '    type filter hook forward priority filter; policy accept;',
    '    ct state established,related accept');
  if (cfg.firewall.dropInvalid) {
    lines.push(
      '    ct state invalid counter name invalid_drops drop',
      '    meta l4proto tcp tcp flags & (fin | syn | rst | ack) != syn ct state new counter name invalid_drops drop',
    );
  }
  for (const rule of cfg.firewall.rules) lines.push(`    ${firewallRule(rule)}`);
  lines.push(`    ${defaultActionRule(cfg.firewall.defaultAction)}`, '  }');

  lines.push('  chain prerouting_nat {', '    type nat hook prerouting priority dstnat; policy accept;');
  for (const vs of cfg.virtualServices) {
    const rule = virtualServiceRule(vs);
    if (rule) lines.push(`    ${rule}`);
  }
  lines.push('  }');

  lines.push('  chain postrouting_nat {', '    type nat hook postrouting priority srcnat; policy accept;',
    // The router's own packets (VRRP adverts, sync, NETCONF) keep their address even when it lies
    // in a subscriber prefix: only forwarded traffic is translated.
    '    fib saddr type local accept comment "the node\'s own packets"');
  // SNAT IP mode (before CG-NAT): a virtual service's server-side connections leave from its SNAT
  // IP, shared by the pair, so the mirrored conntracks stay valid on the new master.
  for (const vs of cfg.virtualServices) {
    if (!vs.snatIp) continue;
    const family = isIPv4(vs.vip) ? 'ip' : 'ip6';
    lines.push(`    meta l4proto ${vs.protocol} ct original ${family} daddr ${vs.vip} ct original proto-dst ${vs.port} `
      + `counter snat ${family} to ${vs.snatIp} comment ${JSON.stringify(`virtual-service ${vs.name} snat-ip`)}`);
  }
  for (const rule of cfg.cgNat.rules) {
    const ruleBlocks = blocks.get(rule.name) ?? [];
    if (ruleBlocks.length === 0) continue;
    const withPorts = ruleBlocks.map((b) => `${b.subscriber} : ${b.address} . ${b.portStart}-${b.portEnd}`).join(', ');
    const addressOnly = ruleBlocks.map((b) => `${b.subscriber} : ${b.address}`).join(', ');
    const comment = `comment ${JSON.stringify(`cg-nat rule ${rule.name}`)}`;
    lines.push(
      `    meta l4proto { tcp, udp } ip saddr ${rule.sourcePrefix} snat ip to ip saddr map { ${withPorts} } ${comment}`,
      `    ip saddr ${rule.sourcePrefix} snat ip to ip saddr map { ${addressOnly} } ${comment}`,
    );
  }
  lines.push('  }', '}');
  return `${lines.join('\n')}\n`;
}

/** The script that removes the table (and nothing else); harmless when it is absent. */
export function renderRemoval(): string {
  return `table inet ${TABLE}\ndelete table inet ${TABLE}\n`;
}

function nftArgs(namespace: string | undefined, args: string[]): [string, string[]] {
  return namespace === undefined ? ['nft', args] : ['ip', ['netns', 'exec', namespace, 'nft', ...args]];
}

/** Runs `nft <args>` in a namespace with `input` on stdin; rejects with nft's own message. */
export function runNft(namespace: string | undefined, args: string[], input?: string): Promise<string> {
  const [cmd, argv] = nftArgs(namespace, args);
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, argv, { maxBuffer: 64 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new RulesetError(`nft ${args.join(' ')}${namespace ? ` (namespace ${namespace})` : ''} failed: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
    child.stdin?.on('error', () => undefined); // nft may exit before reading (its error is reported above)
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}

/** Checks a script without applying it (nft -c). */
export function checkRuleset(namespace: string | undefined, script: string): Promise<void> {
  return runNft(namespace, ['-c', '-f', '-'], script).then(() => undefined);
}

/** Applies a script atomically (one netlink transaction). */
export function applyRuleset(namespace: string | undefined, script: string): Promise<void> {
  return runNft(namespace, ['-f', '-'], script).then(() => undefined);
}

/** Packets counted by the table's named counters (0 when the table is absent). */
export async function readCounters(namespace: string | undefined): Promise<Record<string, number>> {
  let text: string;
  try {
    text = await runNft(namespace, ['-j', 'list', 'counters', 'table', 'inet', TABLE]);
  } catch {
    return {};
  }
  const out: Record<string, number> = {};
  const parsed = JSON.parse(text) as { nftables?: { counter?: { name: string; packets: number } }[] };
  for (const item of parsed.nftables ?? []) {
    if (item.counter) out[item.counter.name] = item.counter.packets;
  }
  return out;
}
