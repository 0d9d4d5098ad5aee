// What the master's sender keeps per synchronised conntrack, packed in the one small number its
// TupleMap holds (below 2^29): the state index it last sent (3 bits) and a 26-bit tag of the NAT
// binding (reply tuple) it sent. The tag tells incarnations of one original tuple apart: a
// conntrack ended and created again with another binding (a rebinding) has the same original tuple.
// An event of an older incarnation delivered after a dump that carried the newer one (the kernel's
// events of an outage, read late) would otherwise delete or rebind the newer one on the peer: its
// tag differs from the one sent, so sync drops it. Events of one conntrack arrive in order, so a
// mismatch means an older incarnation, except after a loss of events, which a full resync repairs.
import type { FlowTuple } from '../fastpath/engine.js';
import { hash4, parseIPv4 } from '../fastpath/ipv4-tuple-table.js';
import { fnv1a } from '../fastpath/tuple-hash.js';

const STATE_MASK = 7;
const TAG_MASK = 2 ** 26 - 1;

export function syncedValue(state: number, tag: number): number {
  return tag * 8 + state;
}

export function syncedState(value: number): number {
  return value & STATE_MASK;
}

export function syncedTag(value: number): number {
  return value >>> 3;
}

/** The binding tag of a reply tuple given as numbers (IPv4). */
export function bindingTagIPv4(src: number, dst: number, sport: number, dport: number): number {
  return hash4(src, dst, ((sport << 16) | dport) >>> 0, 0) & TAG_MASK;
}

/** The binding tag of a reply tuple (IPv4 through bindingTagIPv4, so both paths agree; IPv6 by its text). */
export function bindingTag(reply: FlowTuple): number {
  const src = parseIPv4(reply.src);
  const dst = src < 0 ? -1 : parseIPv4(reply.dst);
  if (dst >= 0) return bindingTagIPv4(src, dst, reply.sport, reply.dport);
  return fnv1a(`${reply.src}|${reply.dst}|${reply.sport}|${reply.dport}`) & TAG_MASK;
}
