// A streaming reader of pcapng captures (the format Wireshark and dumpcap write by default):
// section header, interface description and enhanced/simple/obsolete packet blocks, in either
// byte order, with each interface's link type and timestamp resolution. Other blocks (name
// resolution, statistics, custom) are skipped. pcap-parser reads only libpcap files.
import { open, type FileHandle } from 'node:fs/promises';
import type { CapturedPacket } from './capture-reader.js';

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const OBSOLETE_PB = 0x00000002;
const SPB = 0x00000003;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
/** A block bigger than this is a damaged file, not a packet (pcapng's own recommended bound is 16 MiB). */
const MAX_BLOCK = 16 * 1024 * 1024;
const OPT_END = 0;
const OPT_IF_TSRESOL = 9;

interface Interface {
  linkType: number;
  snapLen: number;
  /** Timestamp units per millisecond. */
  unitsPerMs: number;
}

export class PcapngError extends Error {
  override name = 'PcapngError';
}

async function readExactly(fh: FileHandle, buf: Buffer, pos: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Units per millisecond of an if_tsresol value (default 10^-6 s). */
function unitsPerMs(tsresol: number | undefined): number {
  if (tsresol === undefined) return 1000;
  const exp = tsresol & 0x7f;
  const perSecond = tsresol & 0x80 ? 2 ** exp : 10 ** exp;
  return perSecond / 1000;
}

/** Every packet of a pcapng file, in order. Throws PcapngError on a malformed file. */
export async function* readPcapng(path: string): AsyncGenerator<CapturedPacket> {
  const fh = await open(path, 'r');
  try {
    let pos = 0;
    let little = true;
    let interfaces: Interface[] = [];
    const head = Buffer.alloc(12);
    for (let blockIndex = 0; ; blockIndex++) {
      const got = await readExactly(fh, head, pos);
      if (got === 0) return;
      if (got < 8) throw new PcapngError(`truncated block header at byte ${pos}`);
      const typeLE = head.readUInt32LE(0);
      if (typeLE === SHB) {
        if (got < 12) throw new PcapngError(`truncated section header at byte ${pos}`);
        if (head.readUInt32LE(8) === BYTE_ORDER_MAGIC) little = true;
        else if (head.readUInt32BE(8) === BYTE_ORDER_MAGIC) little = false;
        else throw new PcapngError(`section header at byte ${pos} has no byte-order magic`);
        interfaces = []; // interface ids are per section
      } else if (blockIndex === 0) {
        throw new PcapngError('not a pcapng file (no section header block first)');
      }
      const type = little ? head.readUInt32LE(0) : head.readUInt32BE(0);
      const length = little ? head.readUInt32LE(4) : head.readUInt32BE(4);
      if (length < 12 || length % 4 !== 0 || length > MAX_BLOCK) throw new PcapngError(`block at byte ${pos} has an invalid length ${length}`);
      const block = Buffer.alloc(length);
      if (await readExactly(fh, block, pos) < length) throw new PcapngError(`truncated block at byte ${pos} (${length} bytes announced)`);
      const trailer = little ? block.readUInt32LE(length - 4) : block.readUInt32BE(length - 4);
      if (trailer !== length) throw new PcapngError(`block at byte ${pos}: trailing length ${trailer} differs from ${length}`);
      const u32 = (o: number): number => (little ? block.readUInt32LE(o) : block.readUInt32BE(o));
      const u16 = (o: number): number => (little ? block.readUInt16LE(o) : block.readUInt16BE(o));
      const body = length - 4; // end of the block's content before the trailing length
      if (type === IDB) {
        if (length < 20) throw new PcapngError(`interface description at byte ${pos} is too short`);
        let tsresol: number | undefined;
        for (let o = 16; o + 4 <= body;) {
          const code = u16(o), len = u16(o + 2);
          if (code === OPT_END) break;
          if (code === OPT_IF_TSRESOL && len >= 1) tsresol = block.readUInt8(o + 4);
          o += 4 + Math.ceil(len / 4) * 4;
        }
        interfaces.push({ linkType: u16(8), snapLen: u32(12), unitsPerMs: unitsPerMs(tsresol) });
      } else if (type === EPB || type === OBSOLETE_PB) {
        if (length < 32) throw new PcapngError(`packet block at byte ${pos} is too short`);
        const ifId = type === EPB ? u32(8) : u16(8);
        const iface = interfaces[ifId];
        if (!iface) throw new PcapngError(`packet block at byte ${pos} names interface ${ifId}, which is not described`);
        const ts = u32(12) * 2 ** 32 + u32(16);
        const capLen = u32(20);
        if (28 + capLen > body) throw new PcapngError(`packet block at byte ${pos}: captured length ${capLen} exceeds the block`);
        yield { linkType: iface.linkType, timeMs: Math.floor(ts / iface.unitsPerMs), data: block.subarray(28, 28 + capLen) };
      } else if (type === SPB) {
        const iface = interfaces[0];
        if (!iface) throw new PcapngError(`simple packet block at byte ${pos} without an interface description`);
        const origLen = u32(8);
        const capLen = Math.min(origLen, iface.snapLen || origLen, body - 12);
        // No timestamp in a simple packet block: it keeps the time of the previous packet.
        yield { linkType: iface.linkType, timeMs: -1, data: block.subarray(12, 12 + capLen) };
      }
      pos += length;
    }
  } finally {
    await fh.close();
  }
}
