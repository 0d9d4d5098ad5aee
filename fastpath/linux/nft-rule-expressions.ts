// A firewall rule as nf_tables netlink attributes: its expressions and its comment, exactly as
// nft 1.0.6 compiles `firewallRule()`'s text (nft-ruleset.ts), so `nft list` shows a rule sent on
// the engine's own netlink socket as the very text nft would have loaded (the test compares them).
// What nft emits, per match (`nft --debug=netlink`):
//   ip/ip6 saddr|daddr P   meta nfproto (once per rule) ; payload of the prefix's whole bytes ;
//                          cmp eq — or, when the length is not a multiple of 8 (or is 0), the
//                          whole address, bitwise mask, cmp eq of the masked address
//   meta l4proto X         meta l4proto ; cmp eq
//   tcp|udp sport|dport N  payload 2 bytes of the transport header ; cmp eq  (a range: cmp gte, cmp lte)
//   counter name "C"       objref counter C ;   accept|drop   immediate verdict
//   comment "rule NAME"    rule userdata: TLV type 0 (NFTNL_UDATA_RULE_COMMENT), NUL-terminated
import { isIPv4, isIPv6 } from 'node:net';
import type { FirewallRule } from '../config/vrf-config.js';
import { nlAttribute } from './nfnetlink-message.js';
import { ruleComment, ruleCounterName } from './nft-ruleset.js';

const NLA_F_NESTED = 0x8000;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFT_REG_VERDICT = 0;
const NFT_REG_1 = 1;
const NFT_META_NFPROTO = 15;
const NFT_META_L4PROTO = 16;
const NFT_PAYLOAD_NETWORK_HEADER = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER = 2;
const NFT_CMP_EQ = 0;
const NFT_CMP_LTE = 3;
const NFT_CMP_GTE = 5;
const NFT_OBJECT_COUNTER = 1;
const NF_DROP = 0;
const NF_ACCEPT = 1;
const NFPROTO_IPV4 = 2;
const NFPROTO_IPV6 = 10;
const NFTNL_UDATA_RULE_COMMENT = 0;
const L4_PROTOCOLS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, 'ipv6-icmp': 58 };

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

export function nested(type: number, ...children: Buffer[]): Buffer {
  return nlAttribute(type | NLA_F_NESTED, Buffer.concat(children));
}

function expr(name: string, ...attrs: Buffer[]): Buffer {
  return nested(NFTA_LIST_ELEM, nlAttribute(NFTA_EXPR_NAME, Buffer.from(`${name}\0`)), nested(NFTA_EXPR_DATA, ...attrs));
}

function meta(key: number): Buffer {
  return expr('meta', nlAttribute(2 /* NFTA_META_KEY */, u32(key)), nlAttribute(1 /* NFTA_META_DREG */, u32(NFT_REG_1)));
}

function cmp(op: number, value: Buffer): Buffer {
  return expr('cmp', nlAttribute(1 /* NFTA_CMP_SREG */, u32(NFT_REG_1)), nlAttribute(2 /* NFTA_CMP_OP */, u32(op)),
    nested(3 /* NFTA_CMP_DATA */, nlAttribute(NFTA_DATA_VALUE, value)));
}

function payload(base: number, offset: number, len: number): Buffer {
  return expr('payload', nlAttribute(1 /* NFTA_PAYLOAD_DREG */, u32(NFT_REG_1)), nlAttribute(2 /* NFTA_PAYLOAD_BASE */, u32(base)),
    nlAttribute(3 /* NFTA_PAYLOAD_OFFSET */, u32(offset)), nlAttribute(4 /* NFTA_PAYLOAD_LEN */, u32(len)));
}

function bitwise(len: number, mask: Buffer): Buffer {
  return expr('bitwise', nlAttribute(1 /* NFTA_BITWISE_SREG */, u32(NFT_REG_1)), nlAttribute(2 /* NFTA_BITWISE_DREG */, u32(NFT_REG_1)),
    nlAttribute(3 /* NFTA_BITWISE_LEN */, u32(len)), nested(4 /* NFTA_BITWISE_MASK */, nlAttribute(NFTA_DATA_VALUE, mask)),
    nested(5 /* NFTA_BITWISE_XOR */, nlAttribute(NFTA_DATA_VALUE, Buffer.alloc(len))));
}

/** An IPv4 or IPv6 address as its network-order bytes. */
function addressBytes(text: string): Buffer {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!isIPv6(text)) throw new Error(`not an IP address: ${text}`);
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const h = groups(head), t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function prefixMatch(prefix: string, source: boolean): Buffer[] {
  const [addr, lenText] = prefix.split('/') as [string, string | undefined];
  const v4 = isIPv4(addr);
  const bytes = addressBytes(addr);
  const bits = lenText === undefined ? bytes.length * 8 : Number(lenText);
  const offset = v4 ? (source ? 12 : 16) : (source ? 8 : 24);
  if (bits > 0 && bits % 8 === 0) return [payload(NFT_PAYLOAD_NETWORK_HEADER, offset, bits / 8), cmp(NFT_CMP_EQ, bytes.subarray(0, bits / 8))];
  const mask = Buffer.alloc(bytes.length);
  for (let i = 0; i < bits; i++) mask[i >> 3]! |= 0x80 >> (i & 7);
  const masked = Buffer.from(bytes.map((b, i) => b & mask[i]!));
  return [payload(NFT_PAYLOAD_NETWORK_HEADER, offset, bytes.length), bitwise(bytes.length, mask), cmp(NFT_CMP_EQ, masked)];
}

function port(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

function portMatch(range: { start: number; end: number }, offset: number): Buffer[] {
  const load = payload(NFT_PAYLOAD_TRANSPORT_HEADER, offset, 2);
  return range.start === range.end ? [load, cmp(NFT_CMP_EQ, port(range.start))] : [load, cmp(NFT_CMP_GTE, port(range.start)), cmp(NFT_CMP_LTE, port(range.end))];
}

/** NFTA_RULE_EXPRESSIONS of a firewall rule (nested list), as nft compiles firewallRule(rule). */
export function ruleExpressions(rule: FirewallRule): Buffer {
  const exprs: Buffer[] = [];
  const prefixes = [rule.sourcePrefix, rule.destinationPrefix].filter((p): p is string => p !== undefined);
  let nfproto: number | undefined;
  for (const [prefix, source] of [[rule.sourcePrefix, true], [rule.destinationPrefix, false]] as const) {
    if (prefix === undefined) continue;
    const family = isIPv4(prefix.split('/')[0]!) ? NFPROTO_IPV4 : NFPROTO_IPV6;
    if (nfproto !== family) exprs.push(meta(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, Buffer.from([family])));
    nfproto = family;
    exprs.push(...prefixMatch(prefix, source));
  }
  if (rule.protocol) {
    const v6 = prefixes.some((p) => !isIPv4(p.split('/')[0]!));
    const name = rule.protocol === 'icmp' && v6 ? 'ipv6-icmp' : rule.protocol;
    const number = L4_PROTOCOLS[name];
    if (number === undefined) throw new Error(`no nf_tables protocol number for ${name}`);
    exprs.push(meta(NFT_META_L4PROTO), cmp(NFT_CMP_EQ, Buffer.from([number])));
    if (rule.protocol !== 'icmp') {
      if (rule.sourcePort) exprs.push(...portMatch(rule.sourcePort, 0));
      if (rule.destinationPort) exprs.push(...portMatch(rule.destinationPort, 2));
    }
  }
  exprs.push(counterRef(ruleCounterName(rule.name)), verdict(rule.action));
  return nested(4 /* NFTA_RULE_EXPRESSIONS */, ...exprs);
}

export function counterRef(name: string): Buffer {
  return expr('objref', nlAttribute(1 /* NFTA_OBJREF_IMM_TYPE */, u32(NFT_OBJECT_COUNTER)), nlAttribute(2 /* NFTA_OBJREF_IMM_NAME */, Buffer.from(`${name}\0`)));
}

export function verdict(action: 'accept' | 'drop'): Buffer {
  return expr('immediate', nlAttribute(1 /* NFTA_IMMEDIATE_DREG */, u32(NFT_REG_VERDICT)),
    nested(2 /* NFTA_IMMEDIATE_DATA */, nested(NFTA_DATA_VERDICT, nlAttribute(NFTA_VERDICT_CODE, u32(action === 'drop' ? NF_DROP : NF_ACCEPT)))));
}

/** NFTA_RULE_USERDATA carrying the rule's comment (`rule NAME`), as nft writes it. */
export function ruleUserdata(name: string): Buffer {
  const text = Buffer.from(`${ruleComment(name)}\0`);
  return nlAttribute(7 /* NFTA_RULE_USERDATA */, Buffer.concat([Buffer.from([NFTNL_UDATA_RULE_COMMENT, text.length]), text]));
}
