// Pcap replay: a capture written here is read back with pcap-parser and replayed through the soft
// engine, with the manual clock following the capture's timestamps.
import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEvent } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_FIN, TCP_SYN } from '../../fastpath/soft/vrf-dataplane.js';
import { replayPcap } from '../../fastpath/traffic/pcap-replay.js';
import { writePcap, type FrameSpec } from '../../fastpath/traffic/pcap-writer.js';
import { vrfJson } from './vrf-json.js';

describe('fastpath: pcap replay', function () {
  this.timeout(30000);
  let dir: string;
  let engine: SoftEngine | undefined;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'tandem-pcap-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  it('replays TCP, UDP and ICMP flows with their directions and timing', async () => {
    const t0 = 1_700_000_000_000;
    const c = { src: '10.0.0.5', dst: '192.0.2.80' };
    const tcp = (timeMs: number, reply: boolean, tcpFlags: number): FrameSpec => reply
      ? { timeMs, proto: 'tcp', src: c.dst, dst: c.src, sport: 80, dport: 43210, tcpFlags }
      : { timeMs, proto: 'tcp', ...c, sport: 43210, dport: 80, tcpFlags };
    const frames: FrameSpec[] = [
      { timeMs: t0, proto: 'udp', ...c, sport: 5353, dport: 53 },
      { timeMs: t0 + 5, proto: 'udp', src: c.dst, dst: c.src, sport: 53, dport: 5353 },
      { timeMs: t0 + 10, proto: 'icmp', ...c, sport: 99, dport: 0, echoRequest: true },
      { timeMs: t0 + 11, proto: 'icmp', src: c.dst, dst: c.src, sport: 99, dport: 0, echoRequest: false },
      // 200 s later (UDP timeout 120 s, ICMP 30 s): both are gone before the TCP flow starts.
      tcp(t0 + 200_000, false, TCP_SYN),
      tcp(t0 + 200_001, true, TCP_SYN | TCP_ACK),
      tcp(t0 + 200_002, false, TCP_ACK),
      tcp(t0 + 200_500, false, TCP_FIN | TCP_ACK),
      tcp(t0 + 200_501, true, TCP_ACK),
      tcp(t0 + 200_502, true, TCP_FIN | TCP_ACK),
      tcp(t0 + 200_503, false, TCP_ACK),
    ];
    const file = join(dir, 'flows.pcap');
    await writePcap(file, frames);
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    const events: ConntrackEvent[] = [];
    engine.onEvent((e) => events.push(e));
    const start = clock.now();
    const result = await replayPcap(engine, 'main', file);
    await engine.flush();
    expect(result).to.include({ packets: 11, replayed: 11, skipped: 0 });
    expect(result.verdicts.Forward).to.equal(11);
    expect(clock.now() - start).to.equal(200_503);
    const seen = events.map((e) => `${e.kind}:${e.entry.orig.proto}`);
    expect(seen.slice(0, 4)).to.deep.equal(['new:udp', 'established:udp', 'new:icmp', 'established:icmp']);
    // Both expire while the clock jumps 200 s (one expiry scan may catch both, in any order).
    expect(seen.slice(4, 6).sort()).to.deep.equal(['destroy:icmp', 'destroy:udp']);
    expect(seen.slice(6)).to.deep.equal(['new:tcp', 'established:tcp', 'update:tcp', 'update:tcp', 'update:tcp', 'update:tcp']);
    expect(events.at(-1)?.entry.state).to.equal('time-wait');
  });

  it('skips frames that carry no IP and refuses a file that is not a capture', async () => {
    const file = join(dir, 'mixed.pcap');
    await writePcap(file, [{ timeMs: 1000, proto: 'udp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }]);
    const { readFile } = await import('node:fs/promises');
    const good = await readFile(file);
    // Append an ARP frame (ethertype 0x0806).
    const arp = Buffer.alloc(42);
    arp.writeUInt16BE(0x0806, 12);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1, 0);
    rec.writeUInt32LE(42, 8);
    rec.writeUInt32LE(42, 12);
    await writeFile(file, Buffer.concat([good, rec, arp]));
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 1 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main') });
    const r = await replayPcap(engine, 'main', file);
    expect(r).to.include({ packets: 2, replayed: 1, skipped: 1 });
    const bogus = join(dir, 'bogus.pcap');
    await writeFile(bogus, Buffer.from('this is not a capture file at all'));
    let err: Error | undefined;
    try {
      await replayPcap(engine, 'main', bogus);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/cannot read capture .*bogus.pcap: unknown magic number/);
  });
});
