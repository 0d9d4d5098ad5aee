// Decodes captured frames (Ethernet, Linux cooked, raw IP) down to the 5-tuple and TCP flags the
// soft engine needs. Anything else (ARP, fragments, truncated headers) is reported as skipped.
import type { L4Proto } from '../engine.js';

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;

export interface DecodedPacket {
  proto: L4Proto;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10). */
  flags: number;
  /** ICMP/ICMPv6 echo: true for a request, false for a reply. */
  echoRequest?: boolean;
}

function ipv6Text(b: Buffer, off: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(off + i).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** The IP packet inside a frame of the given link type, or undefined when it carries no IP. */
function ipPayload(frame: Buffer, linkType: number): Buffer | undefined {
  switch (linkType) {
    case LINKTYPE_ETHERNET: {
      let off = 12;
      let type = frame.length >= 14 ? frame.readUInt16BE(off) : 0;
      while ((type === 0x8100 || type === 0x88a8) && frame.length >= off + 6) { // VLAN tags
        off += 4;
        type = frame.readUInt16BE(off);
      }
      return type === 0x0800 || type === 0x86dd ? frame.subarray(off + 2) : undefined;
    }
    case LINKTYPE_LINUX_SLL:
      return frame.length >= 16 && [0x0800, 0x86dd].includes(frame.readUInt16BE(14)) ? frame.subarray(16) : undefined;
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      return frame;
    default:
      return undefined;
  }
}

export function decodeFrame(frame: Buffer, linkType: number): DecodedPacket | undefined {
  const ip = ipPayload(frame, linkType);
  if (!ip || ip.length < 1) return undefined;
  const version = (ip[0] ?? 0) >> 4;
  let proto: number, src: string, dst: string, l4: Buffer;
  if (version === 4) {
    if (ip.length < 20) return undefined;
    const ihl = ((ip[0] ?? 0) & 0x0f) * 4;
    const fragOffset = ip.readUInt16BE(6) & 0x1fff;
    if (fragOffset !== 0 || ip.length < ihl) return undefined;
    proto = ip[9] as number;
    src = `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`;
    dst = `${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}`;
    l4 = ip.subarray(ihl);
  } else if (version === 6) {
    if (ip.length < 40) return undefined;
    proto = ip[6] as number; // extension headers are not followed
    src = ipv6Text(ip, 8);
    dst = ipv6Text(ip, 24);
    l4 = ip.subarray(40);
  } else {
    return undefined;
  }
  if (proto === 6 && l4.length >= 14) {
    return { proto: 'tcp', src, dst, sport: l4.readUInt16BE(0), dport: l4.readUInt16BE(2), flags: l4[13] as number };
  }
  if (proto === 17 && l4.length >= 4) {
    return { proto: 'udp', src, dst, sport: l4.readUInt16BE(0), dport: l4.readUInt16BE(2), flags: 0 };
  }
  // ICMP echo (8/0) and ICMPv6 echo (128/129): the echo id plays the source port.
  if ((proto === 1 || proto === 58) && l4.length >= 8) {
    const type = l4[0] as number;
    const request = proto === 1 ? type === 8 : type === 128;
    const reply = proto === 1 ? type === 0 : type === 129;
    if (!request && !reply) return undefined;
    return { proto: 'icmp', src, dst, sport: l4.readUInt16BE(4), dport: 0, flags: 0, echoRequest: request };
  }
  return undefined;
}
