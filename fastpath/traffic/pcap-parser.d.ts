// Types of the pcap-parser package (plain JavaScript, no bundled types).
declare module 'pcap-parser' {
  import type { EventEmitter } from 'node:events';
  import type { Readable } from 'node:stream';
  export interface PcapGlobalHeader { magicNumber: number; majorVersion: number; minorVersion: number; snapshotLength: number; linkLayerType: number }
  export interface PcapPacketHeader { timestampSeconds: number; timestampMicroseconds: number; capturedLength: number; originalLength: number }
  export interface PcapParser extends EventEmitter {
    stream: Readable;
  }
  export function parse(input: string | Readable): PcapParser;
}
