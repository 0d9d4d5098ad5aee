// One way to read a capture file, whatever its format: libpcap (with pcap-parser) or pcapng (with
// pcapng-reader.ts), told apart by the file's first four bytes.
import { open } from 'node:fs/promises';
import { parse, type PcapGlobalHeader, type PcapPacketHeader } from 'pcap-parser';
import { readPcapng } from './pcapng-reader.js';

export interface CapturedPacket {
  linkType: number;
  /** Capture time in ms since the epoch; -1 when the format gives none (pcapng simple packet). */
  timeMs: number;
  data: Buffer;
}

export type CaptureFormat = 'pcap' | 'pcapng';

const PCAP_MAGICS = new Set([0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1]);
const PCAPNG_MAGIC = 0x0a0d0d0a;

/** The capture format of a file, from its magic number; throws when it is neither. */
export async function captureFormat(path: string): Promise<CaptureFormat> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    if (bytesRead === 4) {
      if (b.readUInt32BE(0) === PCAPNG_MAGIC) return 'pcapng';
      if (PCAP_MAGICS.has(b.readUInt32BE(0))) return 'pcap';
    }
    throw new Error(`unknown magic number ${b.subarray(0, bytesRead).toString('hex') || '(empty file)'}: neither pcap nor pcapng`);
  } finally {
    await fh.close();
  }
}

/** libpcap packets through pcap-parser, with a bounded read-ahead. */
async function* readPcap(path: string, readAhead = 4096): AsyncGenerator<CapturedPacket> {
  const parser = parse(path);
  const queue: CapturedPacket[] = [];
  let linkType = -1;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  parser.on('globalHeader', (h: PcapGlobalHeader) => { linkType = h.linkLayerType; });
  parser.on('packet', (p: { header: PcapPacketHeader; data: Buffer }) => {
    queue.push({ linkType, timeMs: p.header.timestampSeconds * 1000 + Math.floor(p.header.timestampMicroseconds / 1000), data: p.data });
    if (queue.length >= readAhead) parser.stream.pause();
    wake?.();
  });
  parser.on('error', (err: Error) => { failure = err; ended = true; wake?.(); });
  parser.on('end', () => { ended = true; wake?.(); });
  try {
    for (;;) {
      const p = queue.shift();
      if (p) {
        yield p;
        continue;
      }
      if (ended) break;
      parser.stream.resume();
      await new Promise<void>((r) => { wake = r; });
      wake = undefined;
    }
    if (failure) throw failure;
    if (linkType < 0) throw new Error('no pcap global header');
  } finally {
    parser.stream.destroy();
  }
}

/** Every packet of a pcap or pcapng file. */
export async function* readCapture(path: string, format: CaptureFormat): AsyncGenerator<CapturedPacket> {
  yield* format === 'pcapng' ? readPcapng(path) : readPcap(path);
}
