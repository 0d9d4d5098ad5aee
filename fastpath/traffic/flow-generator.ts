// A synthetic traffic source for the soft engine: opens flows at a given rate with a protocol mix,
// keeps at most `concurrency` of them open, sends some data on them, and closes each after its
// lifetime (TCP with a FIN exchange; UDP and ICMP just stop and age out). Seeded, so runs repeat;
// time is the engine's clock, so a ManualClock runs hours of traffic in a test.
import { logger } from '../../core/log.js';
import { ManualClock } from '../clock.js';
import type { FlowTuple, L4Proto } from '../engine.js';
import type { SoftEngine } from '../soft/soft-engine.js';
import { TCP_ACK, TCP_FIN, TCP_SYN, Verdict, type SoftPacket } from '../soft/vrf-dataplane.js';
import { seededRandom } from './seeded-random.js';

const log = logger('flow-generator');

export interface FlowGeneratorOptions {
  vrf: string;
  /** New flows per second of the engine clock. */
  rate: number;
  /** Relative weights of the protocols of new flows. */
  mix?: Partial<Record<L4Proto, number>>;
  /** Lifetime of a flow, uniformly between min and max (ms). */
  lifetimeMs?: { min: number; max: number };
  /** Most flows open at once; new flows wait while the limit is reached. */
  concurrency: number;
  /** Client addresses: an IPv4 prefix (default 10.0.0.0/16). */
  clients?: string;
  /** Destinations (default 192.0.2.1..4 port 80). ICMP ignores the port. */
  servers?: { address: string; port: number }[];
  /** Data packets per open flow per second (each step sends one with that probability). */
  packetsPerSecond?: number;
  /** Stop opening flows after this many (default: no limit besides run duration). */
  maxFlows?: number;
  seed?: number;
  /** Share (0..1) of new flows that stay open (no lifetime) until closeAll. */
  establishedShare?: number;
}

export interface FlowGeneratorStats {
  opened: number;
  closed: number;
  open: number;
  /** Open flows of the established share (they have no lifetime). */
  staying: number;
  packets: number;
  verdicts: Record<string, number>;
}

interface OpenFlow {
  flow: FlowTuple;
  closeAt: number;
}

const key = (f: FlowTuple): string => `${f.proto}|${f.src}|${f.sport}|${f.dst}|${f.dport}`;

export class FlowGenerator {
  readonly stats: FlowGeneratorStats = { opened: 0, closed: 0, open: 0, staying: 0, packets: 0, verdicts: {} };
  private readonly random: () => number;
  private readonly open = new Map<string, OpenFlow>();
  private readonly clientBase: number;
  private readonly clientCount: number;
  private readonly servers: { address: string; port: number }[];
  private readonly mix: [L4Proto, number][];
  private lastStep: number;
  private debt = 0; // fractional flows carried to the next step

  constructor(private readonly engine: SoftEngine, private readonly opts: FlowGeneratorOptions) {
    if (!(opts.rate > 0)) throw new RangeError(`rate must be > 0 flows/s, got ${opts.rate}`);
    if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new RangeError(`concurrency must be an integer >= 1, got ${opts.concurrency}`);
    this.random = seededRandom(opts.seed ?? 1);
    const [addr, len] = (opts.clients ?? '10.0.0.0/16').split('/') as [string, string];
    const bits = Number(len);
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(addr) || !(bits >= 8 && bits <= 32)) throw new RangeError(`clients must be an IPv4 prefix /8../32, got ${opts.clients}`);
    const p = addr.split('.').map(Number) as [number, number, number, number];
    this.clientBase = ((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3];
    this.clientCount = 2 ** (32 - bits);
    this.servers = opts.servers ?? [1, 2, 3, 4].map((i) => ({ address: `192.0.2.${i}`, port: 80 }));
    const mix = opts.mix ?? { tcp: 1 };
    this.mix = (Object.entries(mix) as [L4Proto, number][]).filter(([, w]) => w > 0);
    if (this.mix.length === 0) throw new RangeError('mix needs at least one protocol with a positive weight');
    this.lastStep = engine.clock.now();
  }

  /** Close every open flow now (TCP with its FIN exchange) and open no new one in this call. */
  async closeAll(): Promise<void> {
    await this.step(true);
  }

  /** Send what is due between the previous step and now (engine clock). */
  async step(closeEverything = false): Promise<void> {
    const now = this.engine.clock.now();
    const dt = closeEverything ? 0 : Math.max(0, now - this.lastStep);
    this.lastStep = now;
    const packets: SoftPacket[] = [];
    // Close flows whose lifetime is over.
    for (const [k, f] of this.open) {
      if (f.closeAt > now && !closeEverything) continue;
      if (f.flow.proto === 'tcp') {
        packets.push({ flow: f.flow, flags: TCP_FIN | TCP_ACK }, { flow: f.flow, reply: true, flags: TCP_ACK },
          { flow: f.flow, reply: true, flags: TCP_FIN | TCP_ACK }, { flow: f.flow, flags: TCP_ACK });
      }
      this.open.delete(k);
      this.stats.closed++;
      if (f.closeAt === Infinity) this.stats.staying--;
    }
    // Data on open flows.
    const pps = this.opts.packetsPerSecond ?? 0;
    if (pps > 0) {
      const p = Math.min(1, (pps * dt) / 1000);
      for (const f of this.open.values()) {
        if (this.random() < p) packets.push(f.flow.proto === 'tcp' ? { flow: f.flow, flags: TCP_ACK, reply: this.random() < 0.5 } : { flow: f.flow, reply: this.random() < 0.5 });
      }
    }
    // New flows at the configured rate, within the concurrency and total limits.
    this.debt += (this.opts.rate * dt) / 1000;
    let want = Math.floor(this.debt);
    this.debt -= want;
    const room = this.opts.concurrency - this.open.size;
    const left = (this.opts.maxFlows ?? Number.MAX_SAFE_INTEGER) - this.stats.opened;
    want = Math.max(0, Math.min(want, room, left));
    const life = this.opts.lifetimeMs ?? { min: 1000, max: 10_000 };
    for (let n = 0, tries = 0; n < want && tries < want * 4; tries++) {
      const flow = this.newFlow();
      const k = key(flow);
      if (this.open.has(k)) continue;
      n++;
      const stays = (this.opts.establishedShare ?? 0) > 0 && this.random() < (this.opts.establishedShare ?? 0);
      if (stays) this.stats.staying++;
      this.open.set(k, { flow, closeAt: stays ? Infinity : now + life.min + Math.floor(this.random() * Math.max(0, life.max - life.min)) });
      this.stats.opened++;
      if (flow.proto === 'tcp') {
        packets.push({ flow, flags: TCP_SYN }, { flow, reply: true, flags: TCP_SYN | TCP_ACK }, { flow, flags: TCP_ACK });
      } else {
        packets.push({ flow }, { flow, reply: true });
      }
    }
    this.stats.open = this.open.size;
    if (packets.length === 0) return;
    const verdicts = await this.engine.inject(this.opts.vrf, packets);
    this.stats.packets += packets.length;
    for (const v of verdicts) {
      const name = Verdict[v] as string;
      this.stats.verdicts[name] = (this.stats.verdicts[name] ?? 0) + 1;
    }
  }

  /**
   * Run for `durationMs` of the engine clock in steps of `stepMs`: a ManualClock is advanced,
   * a real clock is waited for. Bounded by durationMs / stepMs steps.
   */
  async run(durationMs: number, stepMs = 100, onProgress?: (s: FlowGeneratorStats) => void): Promise<FlowGeneratorStats> {
    if (!(stepMs > 0) || !(durationMs >= 0)) throw new RangeError('run needs durationMs >= 0 and stepMs > 0');
    const clock = this.engine.clock;
    const steps = Math.ceil(durationMs / stepMs);
    const progressEvery = Math.max(1, Math.round(steps / 10));
    for (let i = 0; i < steps; i++) {
      if (clock instanceof ManualClock) {
        clock.advance(stepMs);
        await this.engine.flush(); // expiries due by now happen before this step's packets
      } else {
        await new Promise((r) => setTimeout(r, stepMs));
      }
      await this.step();
      if ((i + 1) % progressEvery === 0) {
        onProgress?.(this.stats);
        log.debug({ vrf: this.opts.vrf, step: i + 1, steps, ...this.stats }, 'flow generator progress');
      }
    }
    return this.stats;
  }

  private newFlow(): FlowTuple {
    let r = this.random() * this.mix.reduce((s, [, w]) => s + w, 0);
    let proto: L4Proto = (this.mix[0] as [L4Proto, number])[0];
    for (const [p, w] of this.mix) {
      if (r < w) { proto = p; break; }
      r -= w;
    }
    const c = (this.clientBase + Math.floor(this.random() * this.clientCount)) >>> 0;
    const src = `${c >>> 24}.${(c >>> 16) & 255}.${(c >>> 8) & 255}.${c & 255}`;
    const server = this.servers[Math.floor(this.random() * this.servers.length)] as { address: string; port: number };
    const sport = proto === 'icmp' ? Math.floor(this.random() * 65536) : 1024 + Math.floor(this.random() * 64512);
    return { proto, src, dst: server.address, sport, dport: proto === 'icmp' ? 0 : server.port };
  }
}
