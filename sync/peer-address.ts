// Addresses compared as configured vs. as seen on a socket: one text per address.
import { readIPv6, writeIPv6 } from './ip-bytes.js';

/** IPv4-mapped IPv6 as IPv4, IPv6 in RFC 5952 form. */
export function plainAddress(a: string): string {
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  if (!a.includes(':')) return a;
  try {
    const b = Buffer.alloc(16);
    writeIPv6(a, b, 0);
    return readIPv6(b, 0);
  } catch {
    return a;
  }
}
