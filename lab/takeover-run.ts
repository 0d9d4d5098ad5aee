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
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { LabAgent } from './lab-agents.js';
import { LabAgentPair, gatewaysHeld, serverConntracks, syncedMarkConntracks, sleep, until } from './lab-agent-pair.js';
import { LabConnections, type WaveResult } from './lab-connections.js';
import { LabTopology, type LabEdges } from './lab-topology.js';

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
  /**
   * An experiment, not a setting of the product: every thread of ha2's agent (and its child
   * processes) gets this nice value just before the kill, to measure how much of the time from
   * keepalived's switch to the guard's removal is the agent waiting for a CPU.
   */
  agentNice?: number;
  /** The lab's switches: the client's and the server's own bridge (default) or a switch namespace (the older lab; lab-topology.ts). */
  edges?: LabEdges;
  /** br_netfilter's hooks on in the bridges' namespaces (the host's default; off unless asked). */
  bridgeNetfilter?: boolean;
  /** Nice value of the lab's client and echo-server processes (they stand for other hosts; absent: not changed). */
  clientNice?: number;
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
  edges: LabEdges;
  bridgeNetfilter: boolean;
  /** The nice value the client and server processes ran at (absent: not changed). */
  clientNice?: number;
  /** The nice value ha2's agent ran at from just before the kill (the experiment's; absent: not changed). */
  agentNice?: number;
  /** TCP conntracks to the server in ha2's kernel before the kill. */
  syncedInKernel: number;
  /** Of those, how many ha2 and ha1 hold in state ESTABLISHED just before the kill (a synced flow in another state, e.g. SYN_SENT, makes ha2 drop its next segment as invalid). */
  syncedEstablished: number;
  masterEstablished: number;
  /** From the kill to ha2 holding both gateway addresses (polled every ~20 ms). */
  takeoverMs: number;
  answered: number;
  /** Flows that answered within 1 s of the takeover (and their share of all). */
  answeredWithin1sOfTakeover: number;
  shareWithin1sOfTakeover: number;
  /**
   * The same with the takeover put at the earliest moment VRRP allows (2 advert intervals after
   * the kill: the last advert left at most one interval before it, and the backup waits 3 intervals
   * plus its skew): a lower bound that does not depend on when the harness's `ip addr` poll, itself
   * waiting for a CPU, saw the gateways move (takeoverMs).
   */
  answeredWithin1sOfEarliestTakeover: number;
  shareWithin1sOfEarliestTakeover: number;
  /** The anchor's share answering within the same time from its wave's start (what the lab allows with no failover). */
  anchorShareWithinSameTime: number;
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
  /** From the kill to ha2 seen holding the lan gateway (client side) and the wan gateway (server side, the return path). */
  lanGatewayMs: number;
  wanGatewayMs: number;
  /** The same wave (same flows, same spread) through the live master just before the kill: what the lab itself takes for it. */
  anchor?: AnchorWave;
  /** softnet (per-CPU backlog) drops of each CPU during the takeover. */
  softnetDropsPerCpu: number[];
  /** Packets the lab's veths could not hand to the receiving side's backlog during the takeover (tx dropped, by namespace/link; nonzero only). */
  linkDrops: Record<string, number>;
  /**
   * Flow by flow, the kill wave's answer (from the wave's start, cutMs after the kill) minus the same flow's answer in the anchor
   * wave (from its start): what the failover added to each flow. A flow whose send went into the
   * dead master needs at least one retransmission, so at least one RTO (clientRtoMedianMs) of it is
   * TCP's; the rest beyond that is the takeover's (detection, switch, losses after it).
   */
  excessOverAnchor?: ExcessOverAnchor;
  /** Where the late flows' time went (C clients only; see classifyLateFlows). */
  lateFlows?: LateFlows;
  /** Per client process, median and max of how long the kill wave's echoes waited to be read (answers are the kernel's arrival times). */
  clientReadLagMedianMs?: number[];
  clientReadLagMaxMs?: number[];
  /** Neighbour entries of the client, the server and ha2 just before the kill and once the waves ended (which namespace resolved what). */
  neighboursBefore: Record<string, string[]>;
  neighboursAfter: Record<string, string[]>;
  loadavg: string;
}

/** Percentiles (ms) of the per-flow excess of the kill wave over the anchor, and what is left beyond one RTO. */
export interface ExcessOverAnchor {
  flows: number;
  p10Ms: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The client's median RTO before the kill (the part of each excess that is TCP's own). */
  rtoMs: number;
  /** Flows whose excess is more than one RTO + 100 ms / + 500 ms. */
  beyondRtoPlus100ms: number;
  beyondRtoPlus500ms: number;
  /** Histogram of the excess, 100 ms buckets (index 0: below 100 ms). */
  per100ms: number[];
}

/** Flow by flow: the kill wave's answer time minus the anchor's (both from their wave's start); flows that did not answer in either are left out. */
export function excessOverAnchor(killPerFlowMs: number[], anchorPerFlowMs: number[], rtoMs: number): ExcessOverAnchor {
  const excess: number[] = [];
  for (let i = 0; i < killPerFlowMs.length; i++) {
    const k = killPerFlowMs[i] as number;
    const a = anchorPerFlowMs[i] ?? -1;
    if (k >= 0 && a >= 0) excess.push(k - a);
  }
  excess.sort((x, y) => x - y);
  return {
    flows: excess.length,
    p10Ms: percentile(excess, 0.1),
    p50Ms: percentile(excess, 0.5),
    p90Ms: percentile(excess, 0.9),
    p99Ms: percentile(excess, 0.99),
    maxMs: excess.length ? (excess[excess.length - 1] as number) : -1,
    rtoMs,
    beyondRtoPlus100ms: excess.filter((e) => e > rtoMs + 100).length,
    beyondRtoPlus500ms: excess.filter((e) => e > rtoMs + 500).length,
    per100ms: histogram(excess, (e) => Math.floor(e / 100)),
  };
}

/** The kill wave's spread through the live master, before the kill: the lab's own time for it. */
export interface AnchorWave {
  answered: number;
  medianAnswerMs: number;
  p90AnswerMs: number;
  lastAnswerMs: number;
  /** Flows answering later than 1 s / 0.6 s after the wave began (with no failover at all). */
  answeredAfter1s: number;
  answeredAfter600ms: number;
  clientLastSendMs: number;
  retransmissions: number;
  softnetDrops: number;
  /** Per client process, the CPU time its send loop took (C clients). */
  clientSendCpuMs?: number[];
  /** Per client process, the longest an echo waited in its socket before being read (answers are arrival times; C clients). */
  clientReadLagMaxMs?: number[];
}

/**
 * The flows that did not answer within 1 s of the takeover, by what the evidence says held them
 * up (C clients: each flow's send time and TCP retransmissions during the wave):
 * - sentAfterDeadline: the client's send left its process after the deadline (takeover + 1 s):
 *   the test client, not the routers;
 * - sentAfterTakeoverNoLoss: sent after both gateways moved, no retransmission beyond those the
 *   dead master explains, and still late: the lab's packet path was slow (CPU, queues);
 * - lostAfterTakeover: more retransmissions than the ones before the takeover explain (a segment
 *   or its echo lost after ha2 held both gateways): where it was lost is in the counters
 *   (softnet / link drops = the host's backlog; ha2's backup_drops / invalid / conntrack drops =
 *   the product; the servers' retransmissions = echoes lost on the return path);
 * - other: sent before the takeover, no extra loss (e.g. a retransmission timer firing late).
 * `retransHistogram[k]`: late flows with k retransmissions during the wave.
 */
export interface LateFlows {
  late: number;
  sentAfterDeadline: number;
  sentAfterTakeoverNoLoss: number;
  lostAfterTakeover: number;
  other: number;
  retransHistogram: number[];
  /** All flows: retransmissions during the wave, histogram. */
  allRetransHistogram: number[];
  /** Late flows by when their send left the client (index: 100 ms after the kill). */
  lateSendPer100ms: number[];
  /** Segments the echo servers retransmitted during the takeover. */
  serverRetransmissions: number;
  clientSendCpuMs: number[];
  clientSendInvoluntarySwitches: number[];
}

function histogram(values: number[], bucket: (v: number) => number): number[] {
  const h: number[] = [];
  for (const v of values) {
    const i = Math.max(0, bucket(v));
    while (h.length <= i) h.push(0);
    h[i]++;
  }
  return h;
}

/**
 * Classifies the late flows of a kill wave. A transmission before ha2 held both gateways is lost
 * by design (the master is dead): with the retransmission timeout `rtoMs`, the sends of a flow
 * sent at s leave at s, s + rto, s + 3 rto, s + 7 rto, ...; each one before `gatewaysAt` explains
 * one retransmission (the one after it). More than that means a loss after the takeover.
 */
export function classifyLateFlows(w: Required<Pick<WaveResult, 'answers' | 'sendTimes' | 'retrans'>> & Pick<WaveResult, 'clientSendCpuMs' | 'clientSendInvoluntarySwitches'>,
  killedAt: number, gatewaysAt: number, deadline: number, rtoMs: number, serverRetransmissions: number): LateFlows {
  const out: LateFlows = {
    late: 0, sentAfterDeadline: 0, sentAfterTakeoverNoLoss: 0, lostAfterTakeover: 0, other: 0,
    retransHistogram: [], allRetransHistogram: histogram(w.retrans, (r) => r), lateSendPer100ms: [],
    serverRetransmissions, clientSendCpuMs: w.clientSendCpuMs ?? [], clientSendInvoluntarySwitches: w.clientSendInvoluntarySwitches ?? [],
  };
  const lateRetrans: number[] = [];
  const lateSends: number[] = [];
  for (let i = 0; i < w.answers.length; i++) {
    const a = w.answers[i] as number;
    if (a >= 0 && a <= deadline) continue;
    out.late++;
    const s = w.sendTimes[i] as number;
    const r = w.retrans[i] as number;
    lateRetrans.push(r);
    lateSends.push(s < 0 ? deadline : s);
    // Sent before the gateways moved: the send itself and every retransmission before then were
    // lost to the dead master, and the first one after it is a retransmission too.
    let explained = s >= 0 && s < gatewaysAt ? 1 : 0;
    for (let k = 1; explained > 0 && s + ((1 << k) - 1) * rtoMs < gatewaysAt && k < 16; k++) explained++;
    if (s < 0 || s > deadline) out.sentAfterDeadline++;
    else if (r > explained) out.lostAfterTakeover++;
    else if (s >= gatewaysAt) out.sentAfterTakeoverNoLoss++;
    else out.other++;
  }
  out.retransHistogram = histogram(lateRetrans, (r) => r);
  out.lateSendPer100ms = histogram(lateSends, (s) => Math.floor((s - killedAt) / 100));
  return out;
}

/**
 * One wave of every flow (sends spread over `spreadMs`) through the live master: what the lab
 * itself takes for the kill wave with no failover at all.
 */
export async function anchorWave(flows: LabConnections, spreadMs: number): Promise<AnchorWave & { perFlowMs: number[] }> {
  const dropsBefore = softnetDrops();
  const aw = await flows.wave(spreadMs, 10_000);
  const perFlowMs = aw.answers.map((a) => (a >= 0 ? a - aw.sentAt : -1));
  const answers = perFlowMs.filter((a) => a >= 0).sort((a, b) => a - b);
  return {
    perFlowMs,
    answered: answers.length,
    medianAnswerMs: percentile(answers, 0.5),
    p90AnswerMs: percentile(answers, 0.9),
    lastAnswerMs: answers.length ? answers[answers.length - 1] : -1,
    answeredAfter1s: answers.filter((a) => a > 1000).length,
    answeredAfter600ms: answers.filter((a) => a > 600).length,
    clientLastSendMs: aw.lastSendMs,
    retransmissions: (aw.retrans ?? []).reduce((sum, r) => sum + r, 0),
    softnetDrops: softnetDrops() - dropsBefore,
    ...(aw.clientSendCpuMs ? { clientSendCpuMs: aw.clientSendCpuMs } : {}),
    ...(aw.clientReadLagMaxMs ? { clientReadLagMaxMs: aw.clientReadLagMaxMs } : {}),
  };
}

const BACKLOG_FILE = '/proc/sys/net/core/netdev_max_backlog';
/**
 * Every packet of the lab crosses veths, which queue it on the host's per-CPU input backlog: with
 * the default 1,000 the kill wave of tens of thousands of flows can overflow it (softnet drops) on
 * the way to the routers, a limit of the lab (one host for all nodes), not of a router.
 * `hostBacklog` sets it for the run (host-wide), restored after. Before the kill the backlog never
 * fills (the anchor wave, the kill wave's spread through the live master, saw 0 drops at 1,000):
 * the bursts that overflow it are the clients' retransmissions after the kill, which one host's
 * timer wheel fires thousands at a time (HZ 250: a timer 0.4-2 s away expires on a 32 ms grain).
 */
function softnetDropsPerCpu(): number[] {
  return readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n')
    .map((line) => parseInt(line.trim().split(/\s+/)[1] ?? '0', 16));
}

function softnetDrops(): number {
  return softnetDropsPerCpu().reduce((sum, d) => sum + d, 0);
}

/** tx_dropped of every link of the lab's namespaces on the data path ("ns/link"): a veth counts there what the peer's backlog refused. */
function linkTxDrops(lab: LabTopology): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of ['client', 'switch', 'ha2', 'server'] as const) {
    if (!lab.ns[name]) continue; // no switch namespace with bridged edges
    const links = JSON.parse(lab.exec(lab.ns[name], 'ip', ['-s', '-j', 'link', 'show'])) as { ifname: string; stats64?: { tx?: { dropped?: number } } }[];
    for (const l of links) out[`${name}/${l.ifname}`] = l.stats64?.tx?.dropped ?? 0;
  }
  return out;
}

/** Sets the nice value of every thread of process `pid` and of its descendants (nice is per thread on Linux). */
function reniceTree(pid: number, nice: number): void {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    for (const task of readdirSync(`/proc/${pids[i]}/task`)) {
      try {
        setPriority(Number(task), nice);
        for (const child of readFileSync(`/proc/${pids[i]}/task/${task}/children`, 'utf8').trim().split(/\s+/)) if (child) pids.push(Number(child));
      } catch {
        continue; // the thread ended meanwhile
      }
    }
  }
}

/**
 * The neighbour (ARP) entries of the client's, the server's and ha2's namespaces, per namespace
 * "dst dev state probes updated-s-ago": the host's arp_cache counters are host-wide, this says in
 * which namespace an address had to be resolved (or failed to be) during the takeover.
 */
function neighbours(lab: LabTopology): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const name of ['client', 'server', 'ha2'] as const) {
    const entries = JSON.parse(lab.exec(lab.ns[name], 'ip', ['-s', '-j', '-4', 'neigh', 'show']) || '[]') as
      { dst: string; dev: string; state?: string[]; probes?: number; updated?: number }[];
    out[name] = entries.map((e) => `${e.dst} ${e.dev} ${(e.state ?? []).join(',')} probes ${e.probes ?? 0} updated ${e.updated ?? -1}s ago`);
  }
  return out;
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
  const lab = new LabTopology(opts.sync ? 'ts' : 'tc', { edges: opts.edges, bridgeNetfilter: opts.bridgeNetfilter });
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
    flows = await LabConnections.open(lab, n, { native, nice: opts.clientNice });
    probes = await LabConnections.open(lab, probeCount, { firstPort: 7900, sources: flows.sources, native, nice: opts.clientNice });
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
    // The anchor: the kill wave's spread through the live master, then one more spread wave so
    // that what the anchor taught TCP about round-trip times does not carry into the kill.
    const { perFlowMs: anchorPerFlowMs, ...anchor } = await anchorWave(flows, spreadMs);
    log(`anchor wave through ha1 (no failover): ${JSON.stringify(anchor)}`);
    const settle = await flows.wave(Math.max(1000, n / 20), 30_000);
    if (settle.answers.some((a) => a < 0)) throw new Error('not every flow answered through ha1 after the anchor wave');
    const p = await probes.wave(200, 10_000);
    if (p.answers.some((a) => a < 0)) throw new Error('not every probe flow answered through ha1');
    if (!opts.sync) {
      await sleep(1000);
      syncedInKernel = serverConntracks(lab, 'ha2');
    }
    log(`${n} flows warm; ha2's kernel holds ${syncedInKernel} conntracks; killing ha1`);
    const rtos = clientRtos(lab);
    const syncedEstablished = serverConntracks(lab, 'ha2', true);
    const masterEstablished = serverConntracks(lab, 'ha1', true);
    const dropsBefore = softnetDropsPerCpu();
    const arpBefore = arpUnresolvedDiscards();
    const neighboursBefore = neighbours(lab);
    const linksBefore = linkTxDrops(lab);
    const ha2Before = routerCounters(lab, 'ha2');
    const serverRetransBefore = await flows.serverRetransmissions();

    if (opts.agentNice !== undefined && pair.ha2.child.pid !== undefined) reniceTree(pair.ha2.child.pid, opts.agentNice);
    // ha1 dies: its links go first (the network sees it dead), then its agent (SIGKILL by PID).
    await opts.beforeKill?.(lab);
    const killedAt = Date.now();
    lab.cutDataLinks('ha1', { sync: true });
    const cutMs = Date.now() - killedAt;
    const flowWave = flows.wave(spreadMs, waitMs);
    const probeWave = probes.wave(probeSpreadMs, waitMs);
    await pair.ha1.stop('SIGKILL');
    let lanAt = 0;
    let wanAt = 0;
    await until(() => {
      const held = gatewaysHeld(lab, 'ha2');
      if (held.lan && lanAt === 0) lanAt = Date.now();
      if (held.wan && wanAt === 0) wanAt = Date.now();
      return lanAt > 0 && wanAt > 0;
    }, 'ha2 to take both gateway addresses (VRRP)', 15_000, 20);
    const takeoverAt = Math.max(lanAt, wanAt);
    const [fw, pw] = await Promise.all([flowWave, probeWave]);
    const unreleasedWhenAnswered = opts.sync ? syncedMarkConntracks(lab, 'ha2') : 0;
    const dropsAfter = softnetDropsPerCpu();
    const softnetPerCpu = dropsAfter.map((d, i) => d - (dropsBefore[i] ?? 0));
    const softnet = softnetPerCpu.reduce((sum, d) => sum + d, 0);
    const arpDiscards = arpUnresolvedDiscards() - arpBefore;
    const neighboursAfter = neighbours(lab);
    const linksAfter = linkTxDrops(lab);
    const linkDrops: Record<string, number> = {};
    for (const [link, d] of Object.entries(linksAfter)) if (d - (linksBefore[link] ?? 0) > 0) linkDrops[link] = d - (linksBefore[link] ?? 0);
    const serverRetransAfter = await flows.serverRetransmissions();
    const ha2After = routerCounters(lab, 'ha2');
    // What happened during the takeover: counters as deltas from just before the kill.
    const ha2Counters: Record<string, number> = {};
    for (const [k, v] of Object.entries(ha2After)) ha2Counters[k] = v - (ha2Before[k] ?? 0);
    const answeredAt = fw.answers.filter((a) => a >= 0).sort((a, b) => a - b);
    const probeAnswers = pw.answers.filter((a) => a >= 0).sort((a, b) => a - b);
    const within = answeredAt.filter((a) => a <= takeoverAt + 1000).length;
    const earliestMs = 2 * (opts.advertIntervalCs ?? 10) * 10 + 1000;
    const withinEarliest = answeredAt.filter((a) => a <= killedAt + earliestMs).length;
    // The anchor with the same budget, from its wave's start (the kill wave started cutMs after the kill).
    const anchorWithin = anchorPerFlowMs.filter((a) => a >= 0 && a <= earliestMs - (fw.sentAt - killedAt)).length;
    const result: TakeoverResult = {
      connections: n,
      sync: opts.sync,
      advertIntervalCs: opts.advertIntervalCs ?? 10,
      client: opts.client ?? 'c',
      hostBacklog: Number(readFileSync(BACKLOG_FILE, 'utf8').trim()),
      edges: lab.edges,
      bridgeNetfilter: lab.bridgeNetfilter,
      ...(opts.clientNice !== undefined ? { clientNice: opts.clientNice } : {}),
      ...(opts.agentNice !== undefined ? { agentNice: opts.agentNice } : {}),
      syncedInKernel,
      syncedEstablished,
      masterEstablished,
      takeoverMs: takeoverAt - killedAt,
      answered: answeredAt.length,
      answeredWithin1sOfTakeover: within,
      shareWithin1sOfTakeover: Math.round((within / n) * 10_000) / 10_000,
      answeredWithin1sOfEarliestTakeover: withinEarliest,
      shareWithin1sOfEarliestTakeover: Math.round((withinEarliest / n) * 10_000) / 10_000,
      anchorShareWithinSameTime: Math.round((anchorWithin / n) * 10_000) / 10_000,
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
      lanGatewayMs: lanAt - killedAt,
      wanGatewayMs: wanAt - killedAt,
      anchor,
      excessOverAnchor: excessOverAnchor(fw.answers.map((a) => (a >= 0 ? a - fw.sentAt : -1)), anchorPerFlowMs, percentile(rtos, 0.5)),
      softnetDropsPerCpu: softnetPerCpu,
      linkDrops,
      ...(fw.sendTimes && fw.retrans ? {
        lateFlows: classifyLateFlows({ ...fw, sendTimes: fw.sendTimes, retrans: fw.retrans }, killedAt, takeoverAt, takeoverAt + 1000,
          percentile(rtos, 0.5), (serverRetransAfter ?? 0) - (serverRetransBefore ?? 0)),
      } : {}),
      ...(fw.clientReadLagMaxMs ? { clientReadLagMedianMs: fw.clientReadLagMedianMs, clientReadLagMaxMs: fw.clientReadLagMaxMs } : {}),
      neighboursBefore,
      neighboursAfter,
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
