// One failover through the REAL agents and the REAL sync: on a fresh lab topology, `tandem start
// --engine linux` runs inside ha1's and ha2's namespaces, each configured over NETCONF (ncclient)
// as a user would (lab-pair-config.ts: VRRP on both data links driving HA group g1, firewall,
// CG-NAT to the shared pool, ha-fp-conntrack over the sync link with a shared secret). Long-lived
// TCP connections go client -> ha1 -> server; once ha2 holds them all (its kernel conntrack table,
// then its agent's `<get>` of ha-fp-conntrack state), ha1 dies: its data and sync links go down
// and its agent is SIGKILLed (keepalived dies with it through its pdeathsig). ha2's keepalived
// takes the gateway addresses, its agent makes the dataplane master, and every connection is
// pinged again. With `sync: false` (ha-fp-conntrack enabled false) it is the control run.
// With `virtualService` the connections go to a virtual service (VIP, DNAT to the server) whose
// tcp-fast-path profile has `connection-mirror` true or false: only mirrored flows are synced, and
// the tcpstat counters of both agents are read before the kill.
// Used by test/lab/agent-failover.test.ts and `npm run bench -- linux-failover` (TANDEM_BENCH_AGENTS=1).
import type { LabAgent } from './lab-agents.js';
import { LabAgentPair, holdsGateways, serverConntracks, sleep, until } from './lab-agent-pair.js';
import { LabConnections } from './lab-connections.js';
import { LAB_VS, SYNC_STATE_FILTER, VS_STATE_FILTER, leafText } from './lab-pair-config.js';
import { LAB, LabTopology } from './lab-topology.js';

export interface AgentFailoverResult {
  before: number;
  after: number;
  resets: number;
  /** TCP conntracks to the server in ha2's kernel table before the kill. */
  syncedInKernel: number;
  /** Before the kill, from the agents' `<get>` of ha-fp-conntrack state ('' when not reported):
   *  ha1's `conntracks/synced` (sent and alive) and ha2's `local-node/statistics/receive`. */
  ha1SyncedReported: string;
  ha2ReceiveReported: string;
  /** From all connections open to ha2's kernel holding them all (-1: not waited for, the control run). */
  syncMs: number;
  /** From the kill of ha1 to ha2 holding both gateway addresses (VRRP's election). */
  takeoverMs: number;
  /** From the kill to the first / last answer of the data sent at the kill (-1: none answered). */
  outageMs: number;
  allAnsweredMs: number;
  /** One ping round over all connections before the kill (the time to answer them all at all). */
  pingRoundMs: number;
  /** ha2's HA group g1 after the failover, from its agent (`current-state`). */
  ha2GroupState: string;
  /** Packets ha2's backup guard dropped from just before the kill to the end of the ping after it (nft counter backup_drops). */
  ha2BackupDrops: number;
  /** With freezeHa2Agent (and no freezeHa2AgentMs): whether ha2's backup guard chain was still loaded when the frozen agent was resumed. */
  ha2GuardChainWhileFrozen?: boolean;
  /** With a virtual service, before the kill: ha1's tcpstat/mirror-conn-list-on-active and ha2's
   *  tcpstat/mirrored-connections-on-standby ('' when not reported). */
  mirrorOnActive?: string;
  mirroredOnStandby?: string;
}

export interface AgentFailoverOptions {
  sync: boolean;
  connections: number;
  virtualService?: { mirror: boolean };
  log?: (line: string) => void;
  /**
   * SIGSTOP ha2's agent just before ha1 is killed and SIGCONT it only after the ping after the
   * kill returned (and `observe.after` ran): whatever forwards then is ha2's kernel following its
   * keepalived, not its agent (the backup guard that keepalived lifts, backup-guard.ts).
   */
  freezeHa2Agent?: boolean;
  /** With freezeHa2Agent: SIGCONT this many ms after ha2 was seen holding both gateways instead (an agent that is late, not stopped). */
  freezeHa2AgentMs?: number;
  /** Called with the topology just before ha1 is killed and once the ping after it returned (diagnostics). */
  observe?: { beforeKill?: (lab: LabTopology) => void | Promise<void>; after?: (lab: LabTopology) => void | Promise<void> };
}

export async function agentFailoverRun(opts: AgentFailoverOptions): Promise<AgentFailoverResult> {
  const log = opts.log ?? (() => undefined);
  const n = opts.connections;
  const vs = opts.virtualService;
  const lab = new LabTopology(vs ? (vs.mirror ? 'vm' : 'vn') : opts.sync ? 'as' : 'ac');
  // Conntracks are counted by their original destination: the server, or the VIP.
  const destination = vs ? LAB_VS.vip : LAB.server;
  // Synchronised: everything with sync on, except virtual-service flows without connection-mirror.
  const expectSynced = opts.sync && (vs?.mirror ?? true);
  const agents: LabAgent[] = [];
  let conns: LabConnections | undefined;
  let frozen: number | undefined;
  try {
    lab.build();
    log(`topology up (namespaces ${lab.prefix}-*); starting tandem --engine linux in ha1 and ha2`);
    const pair = await LabAgentPair.start(lab, { sync: opts.sync, virtualService: vs }, agents);
    const { ha1, ha2 } = pair;
    log('both agents configured over NETCONF; VRRP: ha1 master with the gateways, ha2 backup');

    log(`opening ${n} connections client -> ha1 -> ${vs ? `virtual service ${LAB_VS.vip}:${LAB_VS.port} (connection-mirror ${vs.mirror}) -> ` : ''}server`);
    conns = await LabConnections.open(lab, n, vs ? { firstPort: LAB_VS.memberPort, connectTo: { address: LAB_VS.vip, port: LAB_VS.port } } : {});
    // Sync runs while they open (each conntrack is sent as it becomes established).
    const openedAt = Date.now();
    let syncMs = -1;
    let syncedInKernel = 0;
    if (expectSynced) {
      await until(() => (syncedInKernel = serverConntracks(lab, 'ha2', false, destination)) >= n,
        () => `ha2's kernel to hold the ${n} synchronised conntracks (has ${syncedInKernel})`, 30_000 + n, 100);
      syncMs = Date.now() - openedAt;
    }
    const pingStarted = Date.now();
    const before = (await conns.ping(10_000 + n)).ok;
    const pingRoundMs = Date.now() - pingStarted;
    if (before !== n) throw new Error(`only ${before} of ${n} connections carry data through ha1 before the failover`);
    if (!expectSynced) {
      await sleep(1000); // what sync would have had to do its work: nothing must arrive
      syncedInKernel = serverConntracks(lab, 'ha2', false, destination);
    }
    const ha1SyncedReported = leafText(await ha1.get(SYNC_STATE_FILTER), 'synced') ?? '';
    const ha2ReceiveReported = leafText(await ha2.get(SYNC_STATE_FILTER), 'receive') ?? '';
    let mirrorOnActive: string | undefined;
    let mirroredOnStandby: string | undefined;
    if (vs) {
      mirrorOnActive = leafText(await ha1.get(VS_STATE_FILTER), 'mirror-conn-list-on-active') ?? '';
      mirroredOnStandby = leafText(await ha2.get(VS_STATE_FILTER), 'mirrored-connections-on-standby') ?? '';
      log(`virtual service tcpstat: ha1 mirror-conn-list-on-active ${mirrorOnActive || '-'}, ha2 mirrored-connections-on-standby ${mirroredOnStandby || '-'}`);
    }
    log(`${before} connections carry data; ha2's kernel holds ${syncedInKernel} of them (agents: ha1 synced ${ha1SyncedReported || '-'}, ha2 received ${ha2ReceiveReported || '-'}); killing ha1`);

    await opts.observe?.beforeKill?.(lab);
    const dropsBefore = backupDrops(lab);
    frozen = opts.freezeHa2Agent ? ha2.child.pid : undefined;
    if (frozen !== undefined) {
      process.kill(frozen, 'SIGSTOP');
      log(`ha2's agent (pid ${frozen}) stopped: its keepalived runs on, the agent hears nothing`);
    }
    let ha2GuardChainWhileFrozen: boolean | undefined;
    // ha1 dies: links down, agent SIGKILLed by PID (its keepalived follows by pdeathsig).
    const killedAt = Date.now();
    let resume: NodeJS.Timeout | undefined;
    lab.cutDataLinks('ha1');
    lab.setSyncLink(false);
    await ha1.stop('SIGKILL');
    // Every connection sends at once; TCP retransmits until a router forwards again. The control
    // run needs no long wait: retransmissions within a few seconds show the losses.
    const afterPing = conns.ping(expectSynced ? 15_000 + n : 5_000);
    await until(() => holdsGateways(lab, 'ha2'), 'ha2 to take both gateway addresses (VRRP)', 15_000, 20);
    const takeoverMs = Date.now() - killedAt;
    if (frozen !== undefined && opts.freezeHa2AgentMs !== undefined) {
      resume = setTimeout(() => { process.kill(frozen!, 'SIGCONT'); frozen = undefined; }, opts.freezeHa2AgentMs);
    }
    let after: Awaited<typeof afterPing>;
    try {
      after = await afterPing;
      await opts.observe?.after?.(lab);
      if (frozen !== undefined) ha2GuardChainWhileFrozen = lab.exec(lab.ns.ha2, 'nft', ['list', 'table', 'inet', 'tandem']).includes('chain backup_guard');
    } finally {
      clearTimeout(resume);
      if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
      frozen = undefined;
    }
    const ha2BackupDrops = backupDrops(lab) - dropsBefore;
    const ha2GroupState = await pair.groupState('ha2');
    const outageMs = after.firstMs < 0 ? -1 : after.sentAt - killedAt + after.firstMs;
    const allAnsweredMs = after.lastMs < 0 ? -1 : after.sentAt - killedAt + after.lastMs;
    log(`after the failover ${after.ok} of ${n} answered (${after.reset} reset): first ${outageMs} ms, all ${allAnsweredMs} ms after the kill; ha2's g1 ${ha2GroupState}`);
    return { before, after: after.ok, resets: after.reset, syncedInKernel, ha1SyncedReported, ha2ReceiveReported, syncMs, takeoverMs, outageMs, allAnsweredMs, pingRoundMs, ha2GroupState,
      ha2BackupDrops, ...(ha2GuardChainWhileFrozen !== undefined ? { ha2GuardChainWhileFrozen } : {}),
      ...(vs ? { mirrorOnActive, mirroredOnStandby } : {}) };
  } finally {
    if (frozen !== undefined) process.kill(frozen, 'SIGCONT'); // again if a step failed while it was stopped
    conns?.close();
    for (const agent of agents) await agent.stop().catch(() => undefined);
    await lab.teardown();
  }
}

/** ha2's backup_drops counter (packets); 0 while its table has none. */
function backupDrops(lab: LabTopology): number {
  const out = lab.exec(lab.ns.ha2, 'nft', ['list', 'counters', 'table', 'inet', 'tandem']);
  return Number(/counter backup_drops \{\s*packets (\d+)/.exec(out)?.[1] ?? 0);
}
