// Replays a libpcap capture through the soft engine. The capture is read with pcap-parser; each
// packet's direction comes from the flows seen so far (a packet whose swapped tuple is a known
// flow is a reply), which is right for captures taken on the client side of the box. With a
// ManualClock the clock follows the capture's timestamps, so timeouts play out as recorded.
import { parse, type PcapGlobalHeader, type PcapPacketHeader } from 'pcap-parser';
import { logger } from '../../core/log.js';
import { ManualClock, type Clock } from '../clock.js';
import type { FlowTuple } from '../engine.js';
import type { SoftEngine } from '../soft/soft-engine.js';
import { Verdict, type SoftPacket } from '../soft/vrf-dataplane.js';
import { decodeFrame } from './packet-decoder.js';

const log = logger('pcap-replay');

export interface PcapReplayOptions {
  /** Largest number of distinct flows remembered for direction detection (bound on memory). */
  maxFlows?: number;
  /** Packets per inject call when timestamps need not be followed. */
  batch?: number;
  /** Progress is logged every this many packets. */
  progressEvery?: number;
}

export interface PcapReplayResult {
  packets: number;
  replayed: number;
  skipped: number;
  verdicts: Record<keyof typeof Verdict, number>;
}

function key(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

export async function replayPcap(engine: SoftEngine, vrf: string, path: string, opts: PcapReplayOptions = {}): Promise<PcapReplayResult> {
  const maxFlows = opts.maxFlows ?? 1_000_000;
  const batchSize = opts.batch ?? 4096;
  const progressEvery = opts.progressEvery ?? 100_000;
  const clock: Clock = engine.clock;
  const manual = clock instanceof ManualClock ? clock : undefined;
  const flows = new Map<string, FlowTuple>();
  const verdicts = Object.fromEntries(Object.keys(Verdict).filter((k) => Number.isNaN(Number(k))).map((k) => [k, 0])) as Record<keyof typeof Verdict, number>;
  const result: PcapReplayResult = { packets: 0, replayed: 0, skipped: 0, verdicts };
  let linkType = -1;
  let firstTs = -1;
  let startClock = 0;
  let pending: SoftPacket[] = [];
  let pendingTs = -1;

  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const packets = pending;
    pending = [];
    if (manual && pendingTs >= 0) {
      const target = startClock + (pendingTs - firstTs);
      if (target > manual.now()) {
        manual.set(target);
        await engine.flush(); // expiries due by now happen before these packets
      }
    }
    for (const v of await engine.inject(vrf, packets)) verdicts[Verdict[v] as keyof typeof Verdict]++;
    result.replayed += packets.length;
  };

  const parser = parse(path);
  const queue: { header: PcapPacketHeader; data: Buffer }[] = [];
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  parser.on('globalHeader', (h: PcapGlobalHeader) => { linkType = h.linkLayerType; });
  parser.on('packet', (p: { header: PcapPacketHeader; data: Buffer }) => {
    queue.push(p);
    if (queue.length >= batchSize) parser.stream.pause(); // bounded read-ahead
    wake?.();
  });
  parser.on('error', (err: Error) => { failure = new Error(`cannot read capture ${path}: ${err.message}`); ended = true; wake?.(); });
  parser.on('end', () => { ended = true; wake?.(); });

  for (;;) {
    if (queue.length === 0) {
      if (ended) break;
      parser.stream.resume();
      await new Promise<void>((r) => { wake = r; });
      wake = undefined;
      continue;
    }
    const p = queue.shift() as { header: PcapPacketHeader; data: Buffer };
    result.packets++;
    const d = decodeFrame(p.data, linkType);
    if (!d) {
      result.skipped++;
      continue;
    }
    const ts = p.header.timestampSeconds * 1000 + Math.floor(p.header.timestampMicroseconds / 1000);
    if (firstTs < 0) {
      firstTs = ts;
      startClock = clock.now();
    }
    const tuple: FlowTuple = { proto: d.proto, src: d.src, dst: d.dst, sport: d.sport, dport: d.dport };
    // ICMP echo keeps its id in both directions; TCP and UDP swap the ports.
    const swapped: FlowTuple = d.proto === 'icmp'
      ? { proto: 'icmp', src: d.dst, dst: d.src, sport: d.sport, dport: 0 }
      : { proto: d.proto, src: d.dst, dst: d.src, sport: d.dport, dport: d.sport };
    let pkt: SoftPacket;
    const asReply = d.proto === 'icmp' ? d.echoRequest === false : flows.has(key(swapped)) && !flows.has(key(tuple));
    if (asReply) {
      pkt = { flow: flows.get(key(swapped)) ?? swapped, reply: true, flags: d.flags };
    } else {
      if (!flows.has(key(tuple)) && flows.size < maxFlows) flows.set(key(tuple), tuple);
      pkt = { flow: tuple, flags: d.flags };
    }
    // With a manual clock, packets of different milliseconds go in separate batches at their time.
    if ((manual && pendingTs !== ts) || pending.length >= batchSize) await flush();
    pending.push(pkt);
    pendingTs = ts;
    if (result.packets % progressEvery === 0) log.info({ path, packets: result.packets }, 'pcap replay progress');
  }
  await flush();
  if (failure) throw failure;
  if (linkType < 0) throw new Error(`cannot read capture ${path}: no pcap global header`);
  log.info({ path, ...result }, 'pcap replay done');
  return result;
}
