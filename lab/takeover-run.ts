// One takeover at scale, measured per flow (bench/takeover.ts, issue 11 items 1 and 5): the
// agent-failover-run.ts set-up (two `tandem start --engine linux` agents configured over NETCONF,
// VRRP, drop-invalid firewall, CG-NAT, ha-fp-conntrack over the sync link), with
//  - `connections` long-lived NATed TCP flows (client processes of at most 15,000 descriptors);
//  - `probes` more flows that each send once after the kill, probe i at i*probeSpreadMs/probes:
//    the first probe sent after forwarding resumed answers at once (no TCP back-off in the way),
//    so their earliest answer is the first data through the new master;
//  - before the kill, warm-up rounds with spread sends: TCP's retransmission timeout follows the
//    round-trip times it measured, and one burst of every flow at once would inflate them;
//  - at the kill (data links of ha1 cut, sync link cut, agent SIGKILLed), every flow sends once,
//    the sends spread over `spreadMs`, and the time of each flow's answer is recorded.
// Figures: the share of the flows answering within 1 s of the takeover (ha2 holding the gateway
// addresses), first data after the kill, resets; with `sync: false` the control run.
import { readFileSync, writeFileSync } from 'node:fs';
import type { LabAgent } from './lab-agents.js';
import { LabAgentPair, holdsGateways, serverConntracks, syncedMarkConntracks, sleep, until } from './lab-agent-pair.js';
import { LabConnections } from './lab-connections.js';
import { LabTopology } from './lab-topology.js';

export interface TakeoverOptions {
  sync: boolean;
  connections: number;
  /** Flows that send once each after the kill, spread over probeSpreadMs (default 100 over 1000 ms). */
  probes?: number;
  probeSpreadMs?: number;
  /** The sends of all flows at the kill are spread over this (default 100 ms). */
  spreadMs?: number;
  /** How long answers are awaited after the kill (default 20 s with sync, 5 s without). */
  waitMs?: number;
  log?: (line: string) => void;
  /** VRRP advert-interval of the pair, centiseconds (default 10). */
  advertIntervalCs?: number;
  /** The host's netdev_max_backlog during the run (default: left as it is). */
  hostBacklog?: number;
  /** The test clients and echo servers: the C tool (default; lab/tcp-load.c) or the node.js one. */
  client?: 'c' | 'node';
  /** Called with the topology just before the kill (diagnostics: captures). */
  beforeKill?: (lab: LabTopology) => void | Promise<void>;
}

export interface TakeoverResult {
  connections: number;
  sync: boolean;
  advertIntervalCs: number;
  client: 'c' | 'node';
  /** The host's netdev_max_backlog during the run. */
  hostBacklog: number;
  /** TCP conntracks to the server in ha2's kernel before the kill. */
  syncedInKernel: number;
  /** From the kill to ha2 holding both gateway addresses (polled every ~20 ms). */
  takeoverMs: number;
  answered: number;
  /** Flows that answered within 1 s of the takeover (and their share of all). */
  answeredWithin1sOfTakeover: number;
  shareWithin1sOfTakeover: number;
  /** From the kill to the median / last answer of the flows (-1: none). */
  medianAnswerMs: number;
  lastAnswerMs: number;
  /** From the kill to the first answer of a probe (first data through the new master; -1: none). */
  firstDataMs: number;
  probesAnswered: number;
  resets: number;
  /** Conntracks of ha2 still carrying the synced mark once all had answered (the release runs after forwarding). */
  unreleasedWhenAnswered: number;
  /** Packets the kernel's per-CPU input queues dropped during the takeover (all namespaces: the lab's veths). */
  softnetDrops: number;
  /** Packets dropped while waiting for ARP to resolve (host-wide /proc/net/stat/arp_cache, during the takeover). */
  arpUnresolvedDiscards: number;
  /** The client's TCP retransmission timeouts just before the kill (ms; `ss -ti`): median and max. */
  clientRtoMedianMs: number;
  clientRtoMaxMs: number;
  /** ha2's nftables counters and `conntrack -S` sums (invalid, drop, insert_failed, ...) once all answered. */
  ha2Counters: Record<string, number>;
  /** Flows answering in each 0.5 s after the kill (index 0: 0-0.5 s, ...). */
  answersPerHalfSecond: number[];
  /** How long cutting ha1's links took (the kill wave is issued after it). */
  cutMs: number;
  /** From the kill to the last flow's send leaving its client process (spreadMs if the clients keep up). */
  clientLastSendMs: number;
  /** When ha1 was killed (ISO time, to read the agents' logs against). */
  killedAt: string;
  loadavg: string;
}

const BACKLOG_FILE = '/proc/sys/net/core/netdev_max_backlog';
/**
 * Every packet of the lab crosses veths, which queue it on the host's per-CPU input backlog: with
 * the default 1,000 the kill wave of tens of thousands of flows can overflow it (softnet drops) on
 * the way to the routers, a limit of the lab (one host for all nodes), not of a router.
 * `hostBacklog` raises it for the run (host-wide), restored after. Not the default: a deep backlog
 * also delays the VRRP adverts queued behind a wave (false failovers were seen at load 29-33).
 */
function softnetDrops(): number {
  return readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n')
    .reduce((sum, line) => sum + parseInt(line.trim().split(/\s+/)[1] ?? '0', 16), 0);
}

function arpUnresolvedDiscards(): number {
  const [header, ...rows] = readFileSync('/proc/net/stat/arp_cache', 'utf8').trim().split('\n');
  const column = (header ?? '').trim().split(/\s+/).indexOf('unresolved_discards');
  return column < 0 ? 0 : rows.reduce((sum, row) => sum + parseInt(row.trim().split(/\s+/)[column] ?? '0', 16), 0);
}

/** The retransmission timeouts (ms) of the client's TCP connections, sorted. */
function clientRtos(lab: LabTopology): number[] {
  const text = lab.exec(lab.ns.client, 'sh', ['-c', "ss -tin state established | grep -o 'rto:[0-9.]*' | cut -d: -f2"]);
  return text.trim().split('\n').map(Number).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
}

/** The router's named nft counters (packets) and the per-CPU sums of `conntrack -S`. */
function routerCounters(lab: LabTopology, router: 'ha1' | 'ha2'): Record<string, number> {
  const out: Record<string, number> = {};
  const nft = lab.exec(lab.ns[router], 'nft', ['list', 'counters', 'table', 'inet', 'tandem']);
  for (const m of nft.matchAll(/counter (\w+) \{\s*packets (\d+)/g)) out[m[1] as string] = Number(m[2]);
  const stats = lab.exec(lab.ns[router], 'conntrack', ['-S']);
  for (const m of stats.matchAll(/(\w+)=(\d+)/g)) {
    if (m[1] !== 'cpu') out[`ct_${m[1]}`] = (out[`ct_${m[1]}`] ?? 0) + Number(m[2]);
  }
  return out;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? -1 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

export async function takeoverRun(opts: TakeoverOptions): Promise<TakeoverResult> {
  const log = opts.log ?? (() => undefined);
  const n = opts.connections;
  const probeCount = opts.probes ?? 100;
  const spreadMs = opts.spreadMs ?? 100;
  const probeSpreadMs = opts.probeSpreadMs ?? 1000;
  const waitMs = opts.waitMs ?? (opts.sync ? 20_000 : 5_000);
  const lab = new LabTopology(opts.sync ? 'ts' : 'tc');
  const agents: LabAgent[] = [];
  const backlogBefore = readFileSync(BACKLOG_FILE, 'utf8').trim();
  if (opts.hostBacklog !== undefined) writeFileSync(BACKLOG_FILE, String(opts.hostBacklog));
  let flows: LabConnections | undefined;
  let probes: LabConnections | undefined;
  try {
    lab.build();
    const pair = await LabAgentPair.start(lab, { sync: opts.sync, advertIntervalCs: opts.advertIntervalCs }, agents);
    log(`agents configured; opening ${n} flows and ${probeCount} probe flows client -> ha1 -> server`);
    const native = (opts.client ?? 'c') === 'c';
    flows = await LabConnections.open(lab, n, { native });
    probes = await LabConnections.open(lab, probeCount, { firstPort: 7900, sources: flows.sources, native });
    const total = n + probeCount;
    let syncedInKernel = 0;
    if (opts.sync) {
      await until(() => (syncedInKernel = serverConntracks(lab, 'ha2')) >= total,
        () => `ha2's kernel to hold the ${total} synchronised conntracks (has ${syncedInKernel})`, 60_000 + total, 250);
    }
    // Warm-up: TCP learns small round-trip times (so a small retransmission timeout).
    for (let round = 0; round < 3; round++) {
      const w = await flows.wave(Math.max(1000, n / 20), 30_000);
      const ok = w.answers.filter((a) => a >= 0).length;
      if (ok !== n) throw new Error(`warm-up round ${round}: only ${ok} of ${n} flows answered through ha1`);
    }
    const p = await probes.wave(200, 10_000);
    if (p.answers.some((a) => a < 0)) throw new Error('not every probe flow answered through ha1');
    if (!opts.sync) {
      await sleep(1000);
      syncedInKernel = serverConntracks(lab, 'ha2');
    }
    log(`${n} flows warm; ha2's kernel holds ${syncedInKernel} conntracks; killing ha1`);
    const rtos = clientRtos(lab);
    const dropsBefore = softnetDrops();
    const arpBefore = arpUnresolvedDiscards();

    // ha1 dies: its links go first (the network sees it dead), then its agent (SIGKILL by PID).
    await opts.beforeKill?.(lab);
    const killedAt = Date.now();
    lab.cutDataLinks('ha1', { sync: true });
    const cutMs = Date.now() - killedAt;
    const flowWave = flows.wave(spreadMs, waitMs);
    const probeWave = probes.wave(probeSpreadMs, waitMs);
    await pair.ha1.stop('SIGKILL');
    await until(() => holdsGateways(lab, 'ha2'), 'ha2 to take both gateway addresses (VRRP)', 15_000, 20);
    const takeoverAt = Date.now();
    const [fw, pw] = await Promise.all([flowWave, probeWave]);
    const unreleasedWhenAnswered = opts.sync ? syncedMarkConntracks(lab, 'ha2') : 0;
    const softnet = softnetDrops() - dropsBefore;
    const arpDiscards = arpUnresolvedDiscards() - arpBefore;
    const ha2Counters = routerCounters(lab, 'ha2');
    const answeredAt = fw.answers.filter((a) => a >= 0).sort((a, b) => a - b);
    const probeAnswers = pw.answers.filter((a) => a >= 0).sort((a, b) => a - b);
    const within = answeredAt.filter((a) => a <= takeoverAt + 1000).length;
    const result: TakeoverResult = {
      connections: n,
      sync: opts.sync,
      advertIntervalCs: opts.advertIntervalCs ?? 10,
      client: opts.client ?? 'c',
      hostBacklog: Number(readFileSync(BACKLOG_FILE, 'utf8').trim()),
      syncedInKernel,
      takeoverMs: takeoverAt - killedAt,
      answered: answeredAt.length,
      answeredWithin1sOfTakeover: within,
      shareWithin1sOfTakeover: Math.round((within / n) * 10_000) / 10_000,
      medianAnswerMs: answeredAt.length ? percentile(answeredAt, 0.5) - killedAt : -1,
      lastAnswerMs: answeredAt.length ? answeredAt[answeredAt.length - 1] - killedAt : -1,
      firstDataMs: probeAnswers.length ? probeAnswers[0] - killedAt : -1,
      probesAnswered: probeAnswers.length,
      resets: fw.reset + pw.reset,
      unreleasedWhenAnswered,
      softnetDrops: softnet,
      arpUnresolvedDiscards: arpDiscards,
      clientRtoMedianMs: percentile(rtos, 0.5),
      clientRtoMaxMs: rtos.length ? rtos[rtos.length - 1] : -1,
      ha2Counters,
      answersPerHalfSecond: answeredAt.reduce<number[]>((h, a) => {
        const i = Math.floor((a - killedAt) / 500);
        while (h.length <= i) h.push(0);
        h[i]++;
        return h;
      }, []),
      cutMs,
      clientLastSendMs: fw.sentAt - killedAt + fw.lastSendMs,
      killedAt: new Date(killedAt).toISOString(),
      loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    };
    log(`takeover: ${JSON.stringify(result)}`);
    return result;
  } finally {
    flows?.close();
    probes?.close();
    for (const agent of agents) await agent.stop().catch(() => undefined);
    await lab.teardown();
    if (opts.hostBacklog !== undefined) writeFileSync(BACKLOG_FILE, backlogBefore);
  }
}
