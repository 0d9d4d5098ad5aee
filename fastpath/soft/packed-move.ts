// Conntracks moving between workers when the pool is resized: packed records (entry-codec) plus
// the state only the engine keeps (deadline, internal flags, NAT binding), all in typed arrays
// so a rebalance of 10^6 conntracks costs a copy, not a million cloned objects.
import { ipv4Text } from './address-table.js';
import { PackedReader, PackedWriter, type PackedEntries } from './entry-codec.js';
import { ownerWorker } from '../tuple-hash.js';

export interface PackedMove {
  packed: PackedEntries;
  deadline: Float64Array;
  flags: Uint8Array;
  natPool: Uint16Array;
  natBlock: Int32Array;
}

export function moveBuffers(m: PackedMove): ArrayBuffer[] {
  return [m.packed.buf, m.deadline.buffer as ArrayBuffer, m.flags.buffer as ArrayBuffer, m.natPool.buffer as ArrayBuffer, m.natBlock.buffer as ArrayBuffer];
}

/** Split the conntracks exported by the old workers among `workers` new ones by owner hash. */
export function routeMoves(parts: PackedMove[], workers: number): PackedMove[] {
  const writers = Array.from({ length: workers }, () => new PackedWriter(1024));
  const extras = Array.from({ length: workers }, () => ({ deadline: [] as number[], flags: [] as number[], natPool: [] as number[], natBlock: [] as number[] }));
  for (const part of parts) {
    const r = new PackedReader(part.packed);
    for (let i = 0; i < r.count; i++) {
      const src = r.addr(i, 0);
      const w = ownerWorker({ src: typeof src === 'number' ? ipv4Text(src) : src }, workers);
      (writers[w] as PackedWriter).copyRecord(r, i);
      const x = extras[w] as (typeof extras)[number];
      x.deadline.push(part.deadline[i] as number);
      x.flags.push(part.flags[i] as number);
      x.natPool.push(part.natPool[i] as number);
      x.natBlock.push(part.natBlock[i] as number);
    }
  }
  return writers.map((w, i) => {
    const x = extras[i] as (typeof extras)[number];
    return {
      packed: w.finish(),
      deadline: Float64Array.from(x.deadline),
      flags: Uint8Array.from(x.flags),
      natPool: Uint16Array.from(x.natPool),
      natBlock: Int32Array.from(x.natBlock),
    };
  });
}
