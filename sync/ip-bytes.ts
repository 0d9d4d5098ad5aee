// IPv4/IPv6 text <-> bytes for the wire codec (node:net validates but does not convert).
import { isIPv4, isIPv6 } from 'node:net';
import { parseIPv4 } from '../fastpath/ipv4-tuple-table.js';
import { SyncProtocolError } from './protocol.js';

/** The value of a dotted quad (no leading zero, each part ≤ 255), or -1: the fast path's parser. */
export const dottedQuad = parseIPv4;

export function ipFamily(ip: string): 4 | 6 {
  if (parseIPv4(ip) >= 0) return 4;
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  throw new SyncProtocolError(`not an IP address: ${JSON.stringify(ip)}`);
}

export function writeIPv4(ip: string, buf: Buffer, off: number): number {
  let value = 0;
  let part = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      value = value * 256 + part;
      part = 0;
    } else {
      part = part * 10 + (c - 48);
    }
  }
  buf.writeUInt32BE(value * 256 + part, off);
  return off + 4;
}

export function readIPv4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/** Expects a valid IPv6 text (checked by ipFamily first); embedded IPv4 tails are accepted. */
export function writeIPv6(ip: string, buf: Buffer, off: number): number {
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const groups: number[] = [];
  const parse = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (g.includes('.')) {
        const b = Buffer.allocUnsafe(4);
        writeIPv4(g, b, 0);
        out.push(b.readUInt16BE(0), b.readUInt16BE(2));
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    const head = parse(text.slice(0, dbl));
    const tail = parse(text.slice(dbl + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    groups.push(...parse(text));
  }
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(groups[i] ?? 0, off + 2 * i);
  return off + 16;
}

/** RFC 5952 text: lowercase, longest run (>= 2) of zero groups compressed. */
export function readIPv6(buf: Buffer, off: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + 2 * i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}
