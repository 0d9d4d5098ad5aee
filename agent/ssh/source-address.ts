// The "source" that per-source SSH limits count against, as OpenSSH does it: an IPv4 address
// (/32), or the /64 of an IPv6 address (one host usually owns a whole /64). IPv4-mapped IPv6
// addresses (a dual-stack listener) count as their IPv4 address.
import net from 'node:net';

/** Eight 16-bit groups of an IPv6 address (no zone), or undefined when it is not one. */
function ipv6Groups(addr: string): number[] | undefined {
  const noZone = addr.split('%')[0]!;
  let text = noZone;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4Tail) {
    const b = v4Tail[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4Tail[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  const all = [...h, ...fill, ...t];
  if (all.length !== 8) return undefined;
  return all.map((g) => parseInt(g, 16));
}

/** The per-source key of a peer address ('unknown' when the socket has none, e.g. already closed). */
export function sourceOf(addr: string | undefined): string {
  if (!addr) return 'unknown';
  if (net.isIPv4(addr)) return addr;
  if (!net.isIPv6(addr)) return addr;
  const g = ipv6Groups(addr);
  if (!g) return addr;
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}
