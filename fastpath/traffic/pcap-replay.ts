// Replays a capture (libpcap or pcapng) through the soft engine. Each packet's direction comes
// from the flows seen so far (a packet whose swapped tuple is a known flow is a reply), which is
// right for captures taken on the client side of the box. With a ManualClock the clock follows the
// capture's timestamps, so timeouts play out as recorded.
import { logger } from '../../core/log.js';
import { ManualClock, type Clock } from '../clock.js';
import type { FlowTuple } from '../engine.js';
import type { SoftEngine } from '../soft/soft-engine.js';
import { Verdict, type SoftPacket } from '../soft/vrf-dataplane.js';
import { captureFormat, readCapture, type CaptureFormat } from './capture-reader.js';
import { decodeFrame } from './packet-decoder.js';

const log = logger('pcap-replay');

export interface PcapReplayOptions {
  /** Largest number of distinct flows remembered for direction detection (bound on memory). */
  maxFlows?: number;
  /** Packets per inject call when timestamps need not be followed. */
  batch?: number;
  /** Progress is logged (and onProgress called) every this many packets. */
  progressEvery?: number;
  /** Stops the replay after the batch in flight. */
  signal?: AbortSignal;
  /** Called with the running totals after every batch sent to the dataplane. */
  onProgress?: (r: PcapReplayResult) => void;
}

export interface PcapReplayResult {
  format?: CaptureFormat;
  packets: number;
  replayed: number;
  skipped: number;
  verdicts: Record<keyof typeof Verdict, number>;
}

function key(t: FlowTuple): string {
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
}

export function emptyVerdicts(): Record<keyof typeof Verdict, number> {
  return Object.fromEntries(Object.keys(Verdict).filter((k) => Number.isNaN(Number(k))).map((k) => [k, 0])) as Record<keyof typeof Verdict, number>;
}

export async function replayPcap(engine: SoftEngine, vrf: string, path: string, opts: PcapReplayOptions = {}): Promise<PcapReplayResult> {
  const maxFlows = opts.maxFlows ?? 1_000_000;
  const batchSize = opts.batch ?? 4096;
  const progressEvery = opts.progressEvery ?? 100_000;
  const clock: Clock = engine.clock;
  const manual = clock instanceof ManualClock ? clock : undefined;
  const flows = new Map<string, FlowTuple>();
  const verdicts = emptyVerdicts();
  let format: CaptureFormat;
  try {
    format = await captureFormat(path);
  } catch (err) {
    throw new Error(`cannot read capture ${path}: ${(err as Error).message}`, { cause: err });
  }
  const result: PcapReplayResult = { format, packets: 0, replayed: 0, skipped: 0, verdicts };
  let firstTs = -1;
  let startClock = 0;
  let lastTs = -1;
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
    opts.onProgress?.(result);
  };

  try {
    for await (const p of readCapture(path, format)) {
      if (opts.signal?.aborted) break;
      result.packets++;
      const d = decodeFrame(p.data, p.linkType);
      if (!d) {
        result.skipped++;
        continue;
      }
      const ts = p.timeMs >= 0 ? p.timeMs : lastTs;
      lastTs = ts;
      if (firstTs < 0 && ts >= 0) {
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
  } catch (err) {
    throw new Error(`cannot read capture ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!opts.signal?.aborted) await flush();
  log.info({ path, ...result, stopped: !!opts.signal?.aborted }, 'pcap replay done');
  return result;
}
