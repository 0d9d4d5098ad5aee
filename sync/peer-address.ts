// One text per address, so that a configured peer address and the address a socket reports
// compare equal: IPv4-mapped IPv6 (::ffff:a.b.c.d, a dual-stack listener) as IPv4, IPv6 in
// RFC 5952 form.
import { readIPv6, writeIPv6 } from './ip-bytes.js';

export function canonicalAddress(a: string): string {
  if (a.toLowerCase().startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  if (!a.includes(':')) return a;
  try {
    const b = Buffer.alloc(16);
    writeIPv6(a, b, 0);
    return readIPv6(b, 0);
  } catch {
    return a;
  }
}
