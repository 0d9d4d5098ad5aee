// Traffic into a running soft engine over NETCONF: the RPCs of tandem-traffic (start-traffic,
// replay-pcap, stop-traffic) and the progress of every source as state data under
// /tandem-traffic:traffic. Sources run in the background on the engine's clock; the RPCs answer
// at once with the source id. On the linux engine every RPC is refused (real packets only).
import { isAbsolute } from 'node:path';
import { access, constants } from 'node:fs/promises';
import type { ConfigJson, RpcProvider, StateProvider } from '../../core/subsystem.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import type { DataplaneEngine, L4Proto } from '../engine.js';
import { SoftEngine } from '../soft/soft-engine.js';
import { Verdict } from '../soft/vrf-dataplane.js';
import { FlowGenerator, type FlowGeneratorStats } from './flow-generator.js';
import { emptyVerdicts, replayPcap, type PcapReplayResult } from './pcap-replay.js';

const log = logger('traffic');

const MODULE = 'tandem-traffic';
/** Finished sources kept in state data; older ones are forgotten first. */
const KEEP_FINISHED = 100;
/** The generator sends what is due every this many ms of the engine clock. */
const STEP_MS = 100;

type Status = 'running' | 'completed' | 'stopped' | 'failed';
type Verdicts = Record<keyof typeof Verdict, number>;

interface Source {
  id: number;
  kind: 'flow-generator' | 'pcap-replay';
  vrf: string;
  status: Status;
  error?: string;
  started: Date;
  finished?: Date;
  file?: string;
  format?: 'pcap' | 'pcapng';
  generator?: FlowGeneratorStats;
  replay?: PcapReplayResult;
  abort: AbortController;
  done: Promise<void>;
}

const VERDICT_LEAVES: Record<keyof typeof Verdict, string> = {
  Forward: 'forwarded', DropFirewall: 'dropped-firewall', DropTableFull: 'dropped-table-full', DropBackup: 'dropped-backup',
  DropInvalid: 'dropped-invalid', DropNat: 'dropped-nat', SynCookie: 'syn-cookies',
};

function badValue(element: string, message: string): NetconfError {
  return new NetconfError('invalid-value', 'application', message, { path: `/${MODULE}:${element}`, info: [{ name: 'bad-element', value: element.split('/').pop() as string }] });
}

function int(v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  return typeof v === 'string' ? Number(v) : (v as number);
}

export class TrafficService implements StateProvider {
  readonly name = 'traffic';
  private nextId = 1;
  private readonly sources = new Map<number, Source>();
  private closed = false;

  constructor(private readonly engine: DataplaneEngine) {}

  /** The three RPCs of tandem-traffic. */
  rpcProviders(): RpcProvider[] {
    return [
      { rpcPath: `/${MODULE}:start-traffic`, invoke: (input) => this.startTraffic(input) },
      { rpcPath: `/${MODULE}:replay-pcap`, invoke: (input) => this.replay(input) },
      { rpcPath: `/${MODULE}:stop-traffic`, invoke: (input) => this.stop(input) },
    ];
  }

  private soft(rpc: string): SoftEngine {
    if (!(this.engine instanceof SoftEngine)) {
      throw new NetconfError('operation-not-supported', 'application',
        `${rpc}: this agent runs the ${this.engine.kind} engine, which forwards real packets only; traffic sources need the soft engine (tandem start --engine soft)`);
    }
    if (this.closed) throw new NetconfError('operation-failed', 'application', `${rpc}: the agent is stopping`);
    return this.engine;
  }

  private liveVrf(engine: SoftEngine, rpc: string, vrf: unknown): string {
    if (typeof vrf !== 'string') throw new NetconfError('missing-element', 'protocol', `${rpc} needs a vrf`, { info: [{ name: 'bad-element', value: 'vrf' }] });
    if (!engine.vrfNames().includes(vrf)) throw badValue(`${rpc}/vrf`, `${rpc}: VRF ${vrf} is not in the dataplane (is it committed?)`);
    return vrf;
  }

  async startTraffic(input: ConfigJson): Promise<ConfigJson> {
    const rpc = 'start-traffic';
    const engine = this.soft(rpc);
    const vrf = this.liveVrf(engine, rpc, input.vrf);
    const mixIn = (input['protocol-mix'] ?? {}) as Record<string, unknown>;
    let mix: Partial<Record<L4Proto, number>> = { tcp: int(mixIn.tcp, 100), udp: int(mixIn.udp, 0), icmp: int(mixIn.icmp, 0) };
    let servers: { address: string; port: number }[] | undefined;
    const vsName = input['virtual-service'];
    if (typeof vsName === 'string') {
      const vs = engine.virtualService(vrf, vsName);
      if (!vs) throw badValue(`${rpc}/virtual-service`, `${rpc}: VRF ${vrf} has no virtual service ${vsName}`);
      servers = [{ address: vs.vip, port: vs.port }];
      mix = { [vs.protocol]: 1 };
    } else if (typeof input['destination-address'] === 'string') {
      servers = [{ address: input['destination-address'], port: int(input['destination-port'], 80) }];
    } else if (input['destination-port'] !== undefined) {
      const port = int(input['destination-port'], 80);
      servers = [1, 2, 3, 4].map((i) => ({ address: `192.0.2.${i}`, port }));
    }
    if (!Object.values(mix).some((w) => (w ?? 0) > 0)) throw badValue(`${rpc}/protocol-mix`, `${rpc}: the protocol mix needs a weight above 0 for tcp, udp or icmp`);
    const prefix = typeof input['source-prefix'] === 'string' ? input['source-prefix'] : '10.0.0.0/16';
    const bits = Number(prefix.split('/')[1]);
    if (!(bits >= 8 && bits <= 32)) throw badValue(`${rpc}/source-prefix`, `${rpc}: source-prefix ${prefix} must be a /8 to /32`);
    const count = input.count === undefined ? undefined : int(input.count, 0);
    const rate = int(input.rate, 100);
    const durationMs = int(input.duration, 60) * 1000;
    const share = int(input['established-share'], 0) / 100;
    const gen = new FlowGenerator(engine, {
      vrf, rate, mix, clients: prefix, servers, maxFlows: count, concurrency: int(input['max-open'], 100_000),
      establishedShare: share, seed: int(input.seed, 1),
    });
    const source = this.add('flow-generator', vrf, (_s, signal) => this.runGenerator(engine, gen, signal, durationMs, count));
    source.generator = gen.stats;
    log.info({ id: source.id, vrf, rate, count, durationMs, mix, share, servers }, 'flow generator started');
    return { id: source.id };
  }

  private async runGenerator(engine: SoftEngine, gen: FlowGenerator, signal: AbortSignal, durationMs: number, count: number | undefined): Promise<void> {
    const clock = engine.clock;
    const end = clock.now() + durationMs;
    while (!signal.aborted) {
      await new Promise<void>((r) => {
        const t = clock.setTimer(Math.min(STEP_MS, Math.max(0, end - clock.now())), r);
        signal.addEventListener('abort', () => { t.cancel(); r(); }, { once: true });
      });
      if (signal.aborted) break;
      await gen.step();
      // Done when the duration is over, or when every flow is opened and only those that stay are left.
      if (clock.now() >= end || (count !== undefined && gen.stats.opened >= count && gen.stats.open === gen.stats.staying)) break;
    }
  }

  async replay(input: ConfigJson): Promise<ConfigJson> {
    const rpc = 'replay-pcap';
    const engine = this.soft(rpc);
    const vrf = this.liveVrf(engine, rpc, input.vrf);
    const file = input.file;
    if (typeof file !== 'string') throw new NetconfError('missing-element', 'protocol', `${rpc} needs a file`, { info: [{ name: 'bad-element', value: 'file' }] });
    if (!isAbsolute(file)) throw badValue(`${rpc}/file`, `${rpc}: file must be an absolute path on the agent's host, got ${file}`);
    try {
      await access(file, constants.R_OK);
    } catch (err) {
      throw badValue(`${rpc}/file`, `${rpc}: cannot read ${file} on the agent's host: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const source = this.add('pcap-replay', vrf, async (s, signal) => {
      s.replay = await replayPcap(engine, vrf, file, {
        signal,
        onProgress: (r) => { s.replay = r; s.format = r.format; },
      });
      s.format = s.replay.format;
    });
    source.file = file;
    log.info({ id: source.id, vrf, file }, 'pcap replay started');
    return { id: source.id };
  }

  async stop(input: ConfigJson): Promise<ConfigJson> {
    this.soft('stop-traffic');
    const id = input.id === undefined ? undefined : int(input.id, 0);
    if (id !== undefined && !this.sources.has(id)) throw badValue('stop-traffic/id', `stop-traffic: no traffic source ${id}`);
    const running = [...this.sources.values()].filter((s) => s.status === 'running' && (id === undefined || s.id === id));
    for (const s of running) s.abort.abort();
    await Promise.all(running.map((s) => s.done));
    return { stopped: running.length };
  }

  /** Registers a source and runs it in the background. */
  private add(kind: Source['kind'], vrf: string, run: (s: Source, signal: AbortSignal) => Promise<void>): Source {
    const abort = new AbortController();
    const s: Source = { id: this.nextId++, kind, vrf, status: 'running', started: new Date(), abort, done: Promise.resolve() };
    this.sources.set(s.id, s);
    s.done = (async () => {
      try {
        await run(s, abort.signal);
        s.status = abort.signal.aborted ? 'stopped' : 'completed';
      } catch (err) {
        s.status = 'failed';
        s.error = err instanceof Error ? err.message : String(err);
        log.warn({ id: s.id, kind, vrf, err: s.error }, 'traffic source failed');
      }
      s.finished = new Date();
      log.info({ id: s.id, kind, vrf, status: s.status }, 'traffic source ended');
      this.forgetOld();
    })();
    return s;
  }

  private forgetOld(): void {
    const finished = [...this.sources.values()].filter((s) => s.status !== 'running');
    for (const s of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.sources.delete(s.id);
  }

  /** For tests and the demo: wait until a source has ended. */
  async waitFor(id: number): Promise<void> {
    await this.sources.get(id)?.done;
  }

  state(): ConfigJson {
    if (this.sources.size === 0) return {};
    const list = [...this.sources.values()].map((s) => {
      const verdicts: Verdicts = s.generator ? { ...emptyVerdicts(), ...(s.generator.verdicts as Partial<Verdicts>) } : s.replay?.verdicts ?? emptyVerdicts();
      const v: Record<string, string> = { packets: String(s.generator?.packets ?? s.replay?.replayed ?? 0) };
      for (const [k, leaf] of Object.entries(VERDICT_LEAVES)) v[leaf] = String(verdicts[k as keyof typeof Verdict] ?? 0);
      const e: Record<string, unknown> = { id: s.id, kind: s.kind, vrf: s.vrf, status: s.status, started: s.started.toISOString(), verdicts: v };
      if (s.error !== undefined) e.error = s.error;
      if (s.finished) e.finished = s.finished.toISOString();
      if (s.file !== undefined) e.file = s.file;
      if (s.format) e.format = s.format;
      if (s.generator) {
        e['flows-opened'] = String(s.generator.opened);
        e['flows-closed'] = String(s.generator.closed);
        e['flows-open'] = String(s.generator.open);
      }
      if (s.kind === 'pcap-replay') {
        e['packets-read'] = String(s.replay?.packets ?? 0);
        e['packets-skipped'] = String(s.replay?.skipped ?? 0);
      }
      return e;
    });
    return { [`${MODULE}:traffic`]: { source: list } };
  }

  /** Stops every running source (agent shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    const running = [...this.sources.values()].filter((s) => s.status === 'running');
    for (const s of running) s.abort.abort();
    await Promise.all(running.map((s) => s.done));
  }
}
