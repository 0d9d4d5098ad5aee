// The pcapng reader on files written independently (test/traffic/pcapng-file.ts): byte orders,
// timestamp resolutions, skipped blocks, and damaged files refused with the byte offset.
import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { captureFormat } from '../../fastpath/traffic/capture-reader.js';
import { readPcapng } from '../../fastpath/traffic/pcapng-reader.js';
import { decodeFrame } from '../../fastpath/traffic/packet-decoder.js';
import type { FrameSpec } from '../../fastpath/traffic/pcap-writer.js';
import { writePcapng } from './pcapng-file.js';

const frames: FrameSpec[] = [
  { timeMs: 1_700_000_000_123, proto: 'tcp', src: '10.0.0.1', dst: '192.0.2.1', sport: 1234, dport: 80, tcpFlags: 0x02 },
  { timeMs: 1_700_000_000_456, proto: 'udp', src: '10.0.0.2', dst: '192.0.2.2', sport: 53, dport: 5353 },
];

async function all(file: string): Promise<{ timeMs: number; linkType: number; data: Buffer }[]> {
  const out = [];
  for await (const p of readPcapng(file)) out.push(p);
  return out;
}

describe('traffic: pcapng reader', () => {
  let dir = '';
  before(async () => { dir = await mkdtemp(path.join(tmpdir(), 'tandem-pcapng-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  for (const o of [{ bigEndian: false, nanoseconds: false }, { bigEndian: true, nanoseconds: false }, { bigEndian: false, nanoseconds: true }]) {
    it(`reads ${o.bigEndian ? 'big' : 'little'}-endian, ${o.nanoseconds ? 'nano' : 'micro'}second captures`, async () => {
      const file = path.join(dir, `c-${o.bigEndian}-${o.nanoseconds}.pcapng`);
      await writePcapng(file, frames, o);
      expect(await captureFormat(file)).to.equal('pcapng');
      const packets = await all(file);
      expect(packets.map((p) => p.timeMs)).to.deep.equal(frames.map((f) => f.timeMs));
      expect(packets.map((p) => p.linkType)).to.deep.equal([1, 1]);
      expect(decodeFrame(packets[0]!.data, 1)).to.deep.include({ proto: 'tcp', src: '10.0.0.1', dst: '192.0.2.1', sport: 1234, dport: 80, flags: 0x02 });
      expect(decodeFrame(packets[1]!.data, 1)).to.deep.include({ proto: 'udp', src: '10.0.0.2', sport: 53, dport: 5353 });
    });
  }

  it('refuses truncated and inconsistent files, naming the byte offset', async () => {
    const good = path.join(dir, 'good.pcapng');
    await writePcapng(good, frames);
    const bytes = await readFile(good);
    const truncated = path.join(dir, 'truncated.pcapng');
    await writeFile(truncated, bytes.subarray(0, bytes.length - 10));
    let err: Error | undefined;
    try { await all(truncated); } catch (e) { err = e as Error; }
    expect(err?.message).to.match(/^truncated block at byte \d+/);
    const badTrailer = Buffer.from(bytes);
    badTrailer.writeUInt32LE(12345, badTrailer.length - 4); // the last block's trailing length
    const bad = path.join(dir, 'bad-trailer.pcapng');
    await writeFile(bad, badTrailer);
    err = undefined;
    try { await all(bad); } catch (e) { err = e as Error; }
    expect(err?.message).to.match(/trailing length 12345 differs/);
    const notFirst = path.join(dir, 'no-shb.pcapng');
    await writeFile(notFirst, bytes.subarray(28)); // starts at the interface description
    err = undefined;
    try { await all(notFirst); } catch (e) { err = e as Error; }
    expect(err?.message).to.equal('not a pcapng file (no section header block first)');
  });
});
