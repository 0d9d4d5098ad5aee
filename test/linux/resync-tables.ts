// What the resync tests on two kernels share: the SNAT-bound conntracks they write, and the
// comparison of both kernels' tables by what must be equal (the NAT binding and the state).
import type { ConntrackWrite, KernelConntrack } from '../../fastpath/linux/ctnetlink-codec.js';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import type { FlowTuple } from '../../fastpath/engine.js';

/** Conntrack i, source-NATed to port natPort (another natPort = another binding, same original tuple). */
export function snatWrite(i: number, natPort = 1024 + i): ConntrackWrite {
  return {
    orig: { proto: 'tcp', src: `10.64.${i >> 8}.${i & 255}`, dst: '198.51.100.10', sport: 2000 + i, dport: 443 },
    reply: { proto: 'tcp', src: '198.51.100.10', dst: `192.0.2.${i % 4}`, sport: 443, dport: natPort },
    state: 'established',
    timeout: 7200,
  };
}

export const keyOf = (t: FlowTuple): string => `${t.proto} ${t.src}:${t.sport}>${t.dst}:${t.dport}`;
/** What must be equal on both kernels: the NAT binding (reply tuple) and the state. */
const contentOf = (ct: KernelConntrack): string => `${keyOf(ct.reply)} ${ct.state}`;

/** The test's conntracks (sources 10.64/16) in a namespace's kernel, original tuple -> content. */
export async function kernelTable(ns: string): Promise<Map<string, string>> {
  const nl = new ConntrackNetlink({ namespace: ns });
  const out = new Map<string, string>();
  try {
    await nl.dump((cts) => {
      for (const ct of cts) if (ct.orig.src.startsWith('10.64.')) out.set(keyOf(ct.orig), contentOf(ct));
    });
  } finally {
    nl.close();
  }
  return out;
}

export function tableDifferences(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k}: ha1 ${v}, ha2 ${b.get(k) ?? 'absent'}`);
  for (const k of b.keys()) if (!a.has(k)) out.push(`${k}: only in ha2`);
  return out;
}

export async function until(cond: () => boolean | Promise<boolean>, what: () => string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
