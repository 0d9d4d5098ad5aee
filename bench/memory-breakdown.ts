// Where a process's anonymous memory is, from /proc/PID/smaps alone (no cooperation of the process):
// each anonymous mapping is classified by its shape, as V8, glibc and the kernel lay them out on
// x86-64 Linux with node 20. Heuristic, but each class has a shape no other has:
// - wasm memory: a read-write mapping followed by its guard reservation of >= 4 GiB (V8 reserves
//   the 32-bit address space plus guards for every WebAssembly.Memory); its RSS is the pages touched.
// - glibc malloc: the main heap ([heap], brk) and the per-thread arenas (64 MiB-aligned, the
//   read-write head of a 64 MiB reservation).
// - JIT code: writable and executable (each isolate's code range, wasm code).
// - thread stacks: 8 MiB read-write mappings behind a guard page.
// - V8 heap: the rest of the 256 KiB-aligned mappings (V8's pages of every isolate).
// Used by bench/memory.ts; method in docs/memory.md.
import { readFileSync } from 'node:fs';

export interface AnonBreakdown {
  /** MB resident per class. */
  v8HeapMb: number;
  /** Each wasm memory: size and resident MB (libyang instances, ssh2's small module). */
  wasm: { sizeMb: number; rssMb: number }[];
  mallocMb: number;
  jitCodeMb: number;
  stacksMb: number;
  otherMb: number;
}

interface Area { start: bigint; end: bigint; perms: string; name: string; rssKb: number }

const GIB4 = 4n << 30n;
const MIB64 = 64n << 20n;
const KIB256 = 256n << 10n;

function parse(text: string): Area[] {
  const out: Area[] = [];
  let cur: Area | undefined;
  for (const line of text.split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (h) {
      cur = { start: BigInt(`0x${h[1]!}`), end: BigInt(`0x${h[2]!}`), perms: h[3]!, name: h[4]!, rssKb: 0 };
      out.push(cur);
      continue;
    }
    const r = /^Rss:\s+(\d+) kB$/.exec(line);
    if (r && cur) cur.rssKb = Number(r[1]);
  }
  return out;
}

const mb = (kb: number) => Number((kb / 1024).toFixed(1));

/** The anonymous memory of an smaps text, by class. */
export function breakdownOf(smaps: string): AnonBreakdown {
  const maps = parse(smaps);
  const kb = { v8: 0, malloc: 0, jit: 0, stacks: 0, other: 0 };
  const wasm: { sizeMb: number; rssMb: number }[] = [];
  maps.forEach((m, i) => {
    if (m.name === '[heap]') {
      kb.malloc += m.rssKb;
      return;
    }
    if (m.name !== '' || m.perms === '---p' || m.rssKb === 0) return;
    const size = m.end - m.start;
    const next = maps[i + 1];
    const prev = maps[i - 1];
    const nextReserved = next && next.start === m.end && next.perms === '---p' && next.name === '' ? next.end - next.start : 0n;
    if (nextReserved >= GIB4) wasm.push({ sizeMb: Number(size >> 10n) / 1024, rssMb: mb(m.rssKb) });
    else if (m.perms.includes('x')) kb.jit += m.rssKb;
    else if (m.start % MIB64 === 0n && size + nextReserved === MIB64) kb.malloc += m.rssKb;
    else if (size === 8n << 20n && prev && prev.end === m.start && prev.perms === '---p') kb.stacks += m.rssKb;
    else if (m.start % KIB256 === 0n && size % KIB256 === 0n) kb.v8 += m.rssKb;
    else kb.other += m.rssKb;
  });
  return { v8HeapMb: mb(kb.v8), wasm, mallocMb: mb(kb.malloc), jitCodeMb: mb(kb.jit), stacksMb: mb(kb.stacks), otherMb: mb(kb.other) };
}

/** The breakdown of a running process (undefined if its smaps cannot be read). */
export function anonBreakdown(pid: number): AnonBreakdown | undefined {
  try {
    return breakdownOf(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
  } catch {
    return undefined;
  }
}
