// Writes pcapng captures for tests, independently of the reader: big- or little-endian sections,
// an interface with a chosen timestamp resolution, enhanced packet blocks, and a name-resolution
// block the reader must skip.
import { writeFile } from 'node:fs/promises';
import { ethernetFrame, type FrameSpec } from '../../fastpath/traffic/pcap-writer.js';

function pad4(b: Buffer): Buffer {
  return b.length % 4 === 0 ? b : Buffer.concat([b, Buffer.alloc(4 - (b.length % 4))]);
}

export async function writePcapng(path: string, frames: FrameSpec[], opts: { bigEndian?: boolean; nanoseconds?: boolean } = {}): Promise<void> {
  const be = !!opts.bigEndian;
  const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); if (be) b.writeUInt32BE(n); else b.writeUInt32LE(n); return b; };
  const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); if (be) b.writeUInt16BE(n); else b.writeUInt16LE(n); return b; };
  const block = (type: number, body: Buffer): Buffer => {
    const len = 12 + pad4(body).length;
    return Buffer.concat([u32(type), u32(len), pad4(body), u32(len)]);
  };
  const shb = block(0x0a0d0d0a, Buffer.concat([u32(0x1a2b3c4d), u16(1), u16(0), Buffer.alloc(8, 0xff)]));
  const tsresol = opts.nanoseconds ? Buffer.concat([u16(9), u16(1), Buffer.from([9, 0, 0, 0])]) : Buffer.alloc(0);
  const idb = block(1, Buffer.concat([u16(1), u16(0), u32(65535), tsresol, u16(0), u16(0)]));
  const nrb = block(4, Buffer.concat([u16(0), u16(0)])); // empty name resolution block
  const packets = frames.map((f) => {
    const data = ethernetFrame(f);
    const units = opts.nanoseconds ? BigInt(f.timeMs) * 1_000_000n : BigInt(f.timeMs) * 1000n;
    return block(6, Buffer.concat([u32(0), u32(Number(units >> 32n)), u32(Number(units & 0xffffffffn)), u32(data.length), u32(data.length), data]));
  });
  await writeFile(path, Buffer.concat([shb, idb, nrb, ...packets]));
}
