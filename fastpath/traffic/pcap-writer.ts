// Writes small libpcap 2.4 files of Ethernet/IPv4 frames (tests and demos make their own captures).
import { writeFile } from 'node:fs/promises';
import type { L4Proto } from '../engine.js';

export interface FrameSpec {
  /** Capture time, ms since the epoch. */
  timeMs: number;
  proto: L4Proto;
  src: string; // IPv4
  dst: string; // IPv4
  sport: number;
  dport: number;
  tcpFlags?: number;
  /** ICMP echo: request (true) or reply (false). */
  echoRequest?: boolean;
}

function ipv4(text: string, b: Buffer, off: number): void {
  text.split('.').forEach((p, i) => b.writeUInt8(Number(p), off + i));
}

export function ethernetFrame(f: FrameSpec): Buffer {
  const l4 = f.proto === 'tcp' ? Buffer.alloc(20) : Buffer.alloc(8);
  if (f.proto === 'tcp') {
    l4.writeUInt16BE(f.sport, 0);
    l4.writeUInt16BE(f.dport, 2);
    l4.writeUInt8(5 << 4, 12);
    l4.writeUInt8(f.tcpFlags ?? 0, 13);
    l4.writeUInt16BE(65535, 14);
  } else if (f.proto === 'udp') {
    l4.writeUInt16BE(f.sport, 0);
    l4.writeUInt16BE(f.dport, 2);
    l4.writeUInt16BE(8, 4);
  } else {
    l4.writeUInt8(f.echoRequest === false ? 0 : 8, 0);
    l4.writeUInt16BE(f.sport, 4);
  }
  const ip = Buffer.alloc(20);
  ip.writeUInt8(0x45, 0);
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt8(64, 8);
  ip.writeUInt8(f.proto === 'tcp' ? 6 : f.proto === 'udp' ? 17 : 1, 9);
  ipv4(f.src, ip, 12);
  ipv4(f.dst, ip, 16);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, l4]);
}

export async function writePcap(path: string, frames: FrameSpec[]): Promise<void> {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20); // Ethernet
  const parts: Buffer[] = [header];
  for (const f of frames) {
    const data = ethernetFrame(f);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(Math.floor(f.timeMs / 1000), 0);
    rec.writeUInt32LE((f.timeMs % 1000) * 1000, 4);
    rec.writeUInt32LE(data.length, 8);
    rec.writeUInt32LE(data.length, 12);
    parts.push(rec, data);
  }
  await writeFile(path, Buffer.concat(parts));
}
