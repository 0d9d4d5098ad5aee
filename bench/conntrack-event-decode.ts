// `npm run bench -- conntrack-event-decode` (no root): the event reader's decode of a burst of 10^5
// conntrack events (one message per datagram, as the kernel sends events; IPv4 TCP with an SNAT
// reply, the shape of the sync pair benchmark's burst), by the general decoder (splitMessages +
// eventKind + decodeConntrack, what conntrack-events.ts used) and by conntrack-event-decoder.ts
// (what it uses now). The two run alternately on the same input, 5 rounds each: the ratio of
// their medians is the figure (the machine's load moves both alike).
import { readFileSync } from 'node:fs';
import { MessageBuilder, NLM_F_CREATE, NLM_F_EXCL, decodeConntrack, eventKind, splitMessages, writeCreate } from '../fastpath/linux/ctnetlink-codec.js';
import { forEachEvent } from '../fastpath/linux/conntrack-event-decoder.js';
import { burstWrites } from './linux-sync-pair.js';

const N = Number(process.env.TANDEM_BENCH_EVENTS ?? 100_000);
const ROUNDS = 5;

function datagrams(): Buffer[] {
  const b = new MessageBuilder(512);
  return burstWrites(N, 1).map((w, i) => {
    b.reset();
    writeCreate(b, w, i + 1, NLM_F_CREATE | NLM_F_EXCL);
    return Buffer.from(b.finish());
  });
}

function general(ds: Buffer[]): number {
  let sum = 0;
  for (const d of ds) {
    for (const m of splitMessages(d)) {
      if (!eventKind(m)) continue;
      sum += decodeConntrack(m).orig.sport;
    }
  }
  return sum;
}

function fast(ds: Buffer[]): number {
  let sum = 0;
  for (const d of ds) forEachEvent(d, (e) => { sum += e.conntrack.orig.sport; }, () => undefined);
  return sum;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

export async function run(): Promise<Record<string, unknown>> {
  const ds = datagrams();
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  const times: Record<'general' | 'fast', number[]> = { general: [], fast: [] };
  if (general(ds) !== fast(ds)) throw new Error('the two decoders disagree');
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of [['general', general], ['fast', fast]] as const) {
      const t = performance.now();
      fn(ds);
      times[name].push(performance.now() - t);
    }
    await new Promise((res) => setImmediate(res));
  }
  const g = median(times.general), f = median(times.fast);
  return {
    events: N,
    generalMs: Math.round(g), fastMs: Math.round(f),
    generalPerSecond: Math.round(N / (g / 1000)), fastPerSecond: Math.round(N / (f / 1000)),
    speedup: Math.round((g / f) * 100) / 100,
    roundsMs: { general: times.general.map(Math.round), fast: times.fast.map(Math.round) },
    loadavg: [loadBefore, readFileSync('/proc/loadavg', 'utf8').trim()],
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then((r) => console.log(JSON.stringify(r)), (err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
