// Keys and small codes for conntracks inside sync: the text key of a tuple, the state and
// protocol indexes of the wire records, and the text of a packed IPv4 address.
import type { FlowTuple, L4Proto } from '../fastpath/engine.js';
import { STATES } from './conntrack-codec.js';

export const STATE_INDEX = new Map(STATES.map((st, i) => [st, i]));
export const ESTABLISHED = STATE_INDEX.get('established') as number;
export const PROTO_NAMES: readonly L4Proto[] = ['tcp', 'udp', 'icmp'];

export function ctKey(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

/** ctKey of a plain IPv4 tuple given by its packed fields. */
export function ipv4Key(proto: number, src: number, sport: number, dst: number, dport: number): string {
  return `${PROTO_NAMES[proto]}|${ipv4Text(src)}|${sport}|${ipv4Text(dst)}|${dport}`;
}

/** Text of a 32-bit IPv4 value. */
export function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}
