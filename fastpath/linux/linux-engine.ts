// The linux engine: the kernel forwards real packets. Each VRF is a network namespace (`main` is
// the agent's own, any other VRF the namespace of the same name); its firewall, CG-NAT and virtual
// services are the nftables table `inet tandem` (nft-ruleset.ts; a commit that changes only
// firewall rules edits those rules in place, in one nf_tables batch: nft-rule-edit.ts,
// nft-rule-batch.ts), its conntracks are read and written through ctnetlink (conntrack-netlink.ts,
// conntrack-events.ts; synced conntracks by writer threads, conntrack-writer-pool.ts).
//
// HA (SPEC rules 4 and 5), on the kernel:
//  - backup: the table gets a raw-priority guard that drops every packet not addressed to the node,
//    before conntrack sees it, so no traffic uses (or refreshes) synced conntracks (keepalived's
//    master rule lifts it in the kernel before the agent hears of the switch, backup-guard.ts); synced
//    conntracks are written with a timeout of BACKUP_TIMEOUT_S (the kernel has no "never expire",
//    its cap is INT_MAX jiffies) and re-armed every BACKUP_REFRESH_MS; their real timeout rides in
//    the conntrack mark (bit 31 = synced, bits 0-30 = timeout in seconds).
//  - switch to master (docs/linux-engine.md § Takeover): the guard goes in one nft transaction and
//    setRole returns: from then on the kernel forwards every synced flow, since the forwarding rules
//    depend on the conntrack state only, never on its mark or timeout. Only after that, in the
//    background and in slices, every synced conntrack gets its real timeout counted from now (or a
//    random point after the grace period when undefined-grace-period is shorter) and its mark
//    cleared (release). No per-conntrack work gates forwarding, whatever the size of the table.
import type {
  ConntrackEntry, ConntrackEvent, DataplaneEngine, EngineCounters, FailoverPolicy, FlowTuple, HaRole, L4Proto, PackedConntrackBatch,
  UpsertIPv4Options, VrfDataplaneConfig,
} from '../engine.js';
import { logger } from '../../core/log.js';
import { RealClock, type Clock, type TimerHandle } from '../clock.js';
import { ownerWorker } from '../tuple-hash.js';
import { VrfConfigError, parseFirewallDefaults, parseFirewallRule, parseNetworkProfiles, parseVrfConfig, type SoftVrfConfig } from '../config/vrf-config.js';
import { applyRuleDelta } from '../config/rule-delta.js';
import type { VirtualServiceStats } from '../soft/vrf-dataplane.js';
import { ConntrackNetlink } from './conntrack-netlink.js';
import { BatchPipe } from './batch-pipe.js';
import { KernelDumpBatch, type DumpBatchContext } from './kernel-dump-batch.js';
import { Held, WrittenConntracks } from './written-conntracks.js';
import { PROTO_INDEX, parseIPv4 } from '../ipv4-tuple-table.js';
import { ConntrackEventStream } from './conntrack-events.js';
import { ConntrackEventThread, type ConntrackEventThreadOptions } from './conntrack-event-thread.js';
import { ConntrackWriterPool } from './conntrack-writer-pool.js';
import { errnoCounts, type UpsertResult } from './conntrack-upsert.js';
import { NatBlockLogger, type LinuxNatBlockLog } from './nat-block-log.js';
import {
  IPS_EXPECTED, IPV4_RECORD_BYTES, recordOrig, recordOrigInto, recordState, type ConntrackNotification, type ConntrackWrite, type KernelConntrack,
} from './ctnetlink-codec.js';
import { TABLE, applyRuleset, checkRuleset, renderRemoval, renderRuleset, runNft } from './nft-ruleset.js';
import { handlesAfter, insertedHandles, parseRuleHandles, renderRuleEdit, type RuleEdit, type RuleHandles } from './nft-rule-edit.js';
import { NftRuleEditSocket } from './nft-rule-batch.js';
import { renderRoleSwitch, type GuardForm } from './backup-guard.js';
import { ensureBackupRules, removeBackupRules } from './kernel-role-rules.js';
import { PrimedNft } from './primed-nft.js';
import { GuardRemovalSocket } from './guard-removal-socket.js';
import { firewallCounters, readFirewallCounters, type FirewallCounters } from './nft-counters.js';
import { NftCounterSocket } from './nft-counter-socket.js';
import { ConntrackLiveCounts, type CountedConntrack, type CountedVirtualService } from './conntrack-live-counts.js';
import { U32Map } from '../u32-map.js';
import { applySysctls, conntrackSysctls } from './conntrack-sysctls.js';
import { applyTableSize } from './conntrack-table-size.js';
import { namespaceExists } from './network-namespace.js';
import { isLoopback } from './ip-address.js';

const log = logger('linux-engine');
const natLog = logger('cg-nat');

export const SYNCED_MARK = 0x80000000;
const MARK_TIMEOUT_MASK = 0x7fffffff;
/** Timeout of synced conntracks on a backup: ~23 days, below INT_MAX jiffies at HZ=1000. */
export const BACKUP_TIMEOUT_S = 2_000_000;
const BACKUP_REFRESH_MS = 12 * 3600 * 1000;
const COUNTER_REFRESH_MS = 1000;
/** Synced conntracks re-timed per step after a switch to master. */
const RELEASE_SLICE = 2048;
/**
 * The release waits this long after forwarding started: the first packets of every flow (TCP's
 * retransmissions, which come in bursts after an outage) meet a CPU that is not busy with it.
 * Flows that carry packets need no release (each packet re-arms the kernel's own timeout); the
 * timeouts it writes are shortened by the time waited, so they still count from the switch.
 */
const RELEASE_DELAY_MS = 1000;
/**
 * Test hook (test/lab/takeover-release.test.ts): the release of synced conntracks after a switch to
 * master waits this long, so a test can show that flows are forwarded before any of them is touched.
 */
const RELEASE_HOLD_MS = Number(process.env.TANDEM_TEST_RELEASE_HOLD_MS ?? 0);
const DEFAULT_CONNTRACK_MAX = 1048576;
/** Conntracks per batch of dumpPacked (sync sends a batch while the kernel dumps the next). */
const DUMP_BATCH = 1000;

export interface LinuxEngineOptions {
  /** The namespace of a VRF: default `main` -> the agent's own, any other -> the namespace of that name. */
  namespaceOf?: (vrf: string) => string | undefined;
  workers?: number;
  clock?: Clock;
  /**
   * Threads writing synced conntracks into the kernel (each on a socket of its own); default 1:
   * ctnetlink creates run one at a time under the subsystem's mutex, so a second thread adds no
   * kernel parallelism, spins on that mutex (CPU the encoding thread needs) and lets consecutive
   * chunks of a stream reach the kernel out of order (docs/linux-engine.md § Writer throughput).
   */
  writerThreads?: number;
  /** Receive buffer of the conntrack event socket (conntrack-events.ts has the default; tests make it small to lose events). */
  eventBufferBytes?: number;
  /**
   * Who reads the conntrack events: `thread` (default), a thread of their own
   * (conntrack-event-thread.ts); `loop`, the engine's event loop (conntrack-events.ts), as before.
   * Default from TANDEM_EVENT_READER (benchmarks compare both).
   */
  eventReader?: 'thread' | 'loop';
}

interface Staged {
  config: SoftVrfConfig;
  namespace: string | undefined;
  /** A firewall rule edit done in place on the live chain (nft-rule-edit.ts), checked against `base`/`handles`. */
  edit?: { base: SoftVrfConfig; handles: RuleHandles; edit: RuleEdit; via: 'netlink' | 'nft' };
}

interface LiveVrf {
  name: string;
  namespace: string | undefined;
  config: SoftVrfConfig;
  /** Kernel handles of the forward chain's rules (absent: unknown, the next firewall edit loads the table whole). */
  ruleHandles?: RuleHandles;
  role: HaRole;
  policy: FailoverPolicy;
  netlink: ConntrackNetlink;
  /** Bulk writes of synced conntracks, on writer threads. */
  writers: ConntrackWriterPool;
  /** Open while master only: a backup forwards nothing, and its own writes need no events. */
  events?: ConntrackEventStream | ConntrackEventThread;
  /** Netlink port of the last release's socket: its events may still be on their way from the event thread. */
  releasedPort?: number;
  /** Kernel conntrack id -> engine-clock ms it was first seen established (packed: no object per conntrack). */
  established: U32Map;
  counters: EngineCounters;
  countersReadAt: number;
  refresh?: TimerHandle;
  /** CG-NAT port block logs (master only). */
  natBlocks: NatBlockLogger;
  /** Conntracks by protocol/state and per virtual service, kept live (conntrack-live-counts.ts). */
  live: ConntrackLiveCounts;
  /** The firewall's nft counters as last read. */
  firewall?: FirewallCounters;
  /** nf_tables netlink socket the counters are read on (absent: read with the nft command). */
  nftCounters?: NftCounterSocket;
  /** Dumps of the kernel table this engine made (state reads make none). */
  tableDumps: number;
  /** What this node wrote, as backup, of each synced IPv4 conntrack (written-conntracks.ts); empty on a master. */
  written: WrittenConntracks;
  /** Full resync records not written again (identical to what the kernel holds). */
  resyncUnchanged: number;
  /** Re-seeds of the live counts from a dump (after lost events, a new set of virtual services, a switch to backup). */
  reseeds: number;
  /** Conntrack events the kernel dropped for this VRF's reader, and those a failed event thread took with it. */
  eventsLost: number;
  /** Times this VRF's event thread failed and was started again (events of the gap lost: a repair follows). */
  eventReaderRestarts: number;
  reseeding?: Promise<void>;
  reseedAgain?: boolean;
  /** On a backup: an nft process waiting for the switch to master (primed-nft.ts). */
  primed?: PrimedNft;
  /** On a backup: the nf_tables socket the switch to master deletes the guard with (guard-removal-socket.ts). */
  guardRemoval?: GuardRemovalSocket;
  /** The release of synced conntracks that follows a switch to master, while it runs. */
  release?: Release;
}

/** The release of synced conntracks after a switch to master (see setRole). */
interface Release {
  promise: Promise<number>;
  cancelled: boolean;
  /** Netlink port of its own ctnetlink socket while open (its updates are ours: no events out). */
  port?: number;
}

/** What the linux engine counts beyond EngineCounters (tandem-fast-path-counters). */
export interface LinuxCounterDetail {
  counters: EngineCounters;
  /** Conntracks per protocol row and state, laid out as the soft engine's ConntrackTable.byState. */
  byState: number[];
  firewall: FirewallCounters;
  eventsLost: number;
  eventReaderRestarts: number;
  tableDumps: number;
  reseeds: number;
  /** Full resync records a backup did not write again: its kernel held them as they were (written-conntracks.ts). */
  resyncUnchanged: number;
}

function countedVirtualServices(config: SoftVrfConfig): CountedVirtualService[] {
  return config.virtualServices.map((vs) => ({ name: vs.name, vip: vs.vip, port: vs.port, protocol: vs.protocol, mirror: vs.mirror }));
}

function counted(ct: KernelConntrack): CountedConntrack {
  return { orig: ct.orig, state: ct.state, alg: (ct.status & IPS_EXPECTED) !== 0, synced: (ct.mark & SYNCED_MARK) !== 0 };
}

function emptyCounters(): EngineCounters {
  return { conntracks: 0, synced: 0, created: 0, destroyed: 0, dropsTableFull: 0, dropsFirewall: 0, dropsBackup: 0, natAllocFailures: 0 };
}

function isEstablished(ct: KernelConntrack): boolean {
  return ct.state === 'established';
}

export class LinuxEngine implements DataplaneEngine {
  readonly kind = 'linux' as const;
  private workerCount: number;
  /** The limits/conntrack/max the host table was last sized for (conntrack-table-size.ts). */
  private tableSizedFor: number | undefined;
  private readonly clock: Clock;
  private readonly namespaceOf: (vrf: string) => string | undefined;
  /** Namespaces ('' the agent's own) where the guard's BACKUP routing rule was put (kernel-role-rules.ts). */
  private readonly backupRulesIn = new Set<string>();
  private readonly vrfs = new Map<string, LiveVrf>();
  private readonly staged = new Map<string, Staged>();
  private readonly listeners = new Set<(ev: ConntrackEvent) => void>();
  private readonly lossListeners = new Set<(vrf: string, dropped: number) => void>();
  /** nf_tables sockets of in-place rule edits by namespace ('' the agent's own), kept between commits. */
  private readonly ruleEditSockets = new Map<string, NftRuleEditSocket>();
  private readonly natListeners = new Set<(l: LinuxNatBlockLog) => void>();
  private readonly writerThreads: number;
  private readonly eventBufferBytes: number | undefined;
  private readonly eventReader: 'thread' | 'loop';
  private closed = false;

  constructor(options: LinuxEngineOptions = {}) {
    this.workerCount = options.workers ?? 2;
    this.clock = options.clock ?? new RealClock();
    this.namespaceOf = options.namespaceOf ?? ((vrf) => (vrf === 'main' ? undefined : vrf));
    this.writerThreads = options.writerThreads ?? 1;
    this.eventBufferBytes = options.eventBufferBytes;
    this.eventReader = options.eventReader ?? (process.env.TANDEM_EVENT_READER === 'loop' ? 'loop' : 'thread');
  }

  get workers(): number {
    return this.workerCount;
  }

  async setWorkers(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`workers must be an integer >= 1, got ${n}`);
    this.workerCount = n; // the kernel has no worker pool: n only spreads events over sync connections
  }

  // ---- configuration ----

  private parse(config: VrfDataplaneConfig): SoftVrfConfig {
    try {
      return parseVrfConfig(config.json, parseNetworkProfiles(config.networkProfiles), config.conntrackMax ?? DEFAULT_CONNTRACK_MAX);
    } catch (err) {
      if (err instanceof VrfConfigError) throw err;
      throw new VrfConfigError(`vrf ${config.name}: ${(err as Error).message}`, `/tandem-vrf:vrf[name='${config.name}']`);
    }
  }

  async prepareVrf(config: VrfDataplaneConfig): Promise<void> {
    const namespace = this.namespaceOf(config.name);
    if (namespace !== undefined && !namespaceExists(namespace)) {
      throw new VrfConfigError(`vrf ${config.name}: network namespace ${namespace} does not exist (create it with ip netns add ${namespace})`,
        `/tandem-vrf:vrf[name='${config.name}']`);
    }
    const live = this.vrfs.get(config.name);
    const edit = live && this.stageRuleEdit(config, live);
    if (edit) {
      try {
        // The kernel checks the batch against the live chain (its handles included) without applying it.
        const via = await this.checkRuleEdit(config.name, namespace, edit.edit);
        this.staged.set(config.name, { config: edit.config, namespace, edit: { base: edit.base, handles: edit.handles, edit: edit.edit, via } });
        return;
      } catch (err) {
        // A chain changed behind the engine's back (stale handles) must not block the commit: the whole load below is checked too.
        log.warn({ vrf: config.name, err: (err as Error).message }, 'nft refused the in-place rule edit; checking a whole load of the table instead');
      }
    }
    const parsed = this.parse(config);
    const role = live?.role ?? 'master';
    // Renders (refuses what cannot be rendered) and lets nft check it.
    await checkRuleset(namespace, renderRuleset(parsed, role, live?.config));
    this.staged.set(config.name, { config: parsed, namespace });
  }

  /**
   * A commit that changed only this VRF's firewall rules (config.ruleDelta) on a VRF whose chain
   * handles are known: the configuration after it (the live one with the delta applied, no whole
   * parse) and the in-place nft batch; undefined when the table must be loaded whole (see
   * renderRuleEdit), or the delta does not give the committed rule order (it is only ever an
   * optimisation).
   */
  private stageRuleEdit(config: VrfDataplaneConfig, live: LiveVrf): { config: SoftVrfConfig; base: SoftVrfConfig; handles: RuleHandles; edit: RuleEdit } | undefined {
    const d = config.ruleDelta;
    const handles = live.ruleHandles;
    const base = live.config;
    if (!d || !handles || (config.conntrackMax ?? DEFAULT_CONNTRACK_MAX) !== base.conntrackMax) return undefined;
    const fwPath = `/tandem-vrf:vrf[name='${config.name}']/tandem-firewall:firewall`;
    const placed = d.placed.map(({ after, rule }) => ({ after, rule: parseFirewallRule(rule, `${fwPath}/rule[name='${String(rule.name)}']`) }));
    let rules: SoftVrfConfig['firewall']['rules'];
    try {
      rules = applyRuleDelta(base.firewall.rules, (r) => r.name, { removed: d.removed, placed });
    } catch {
      return undefined;
    }
    const fw = config.json['tandem-firewall:firewall'] as { rule?: { name?: unknown }[] } | undefined;
    const expected = fw?.rule ?? [];
    if (expected.length !== rules.length || rules.some((r, i) => r.name !== expected[i]?.name)) {
      log.warn({ vrf: config.name }, 'rule delta does not give the committed rule order; loading the table whole');
      return undefined;
    }
    const next: SoftVrfConfig = { ...base, firewall: { ...parseFirewallDefaults(d.leaves, fwPath), rules } };
    const touched = new Set([...d.removed, ...placed.map((p) => p.rule.name)]);
    const edit = renderRuleEdit(base, next, touched, handles);
    return edit && { config: next, base, handles, edit };
  }

  /**
   * Checks an in-place edit: on the nf_tables netlink socket (nft-rule-batch.ts: no rule cache to
   * load, whatever the number of rules), or with `nft -c` when no such socket can be opened.
   */
  private async checkRuleEdit(vrf: string, namespace: string | undefined, edit: RuleEdit): Promise<'netlink' | 'nft'> {
    if (edit.ops.length === 0) return 'netlink';
    // Test hook (test/linux/nft-rule-edit.test.ts): the nft fallback, as if no socket could be opened.
    if (process.env.TANDEM_TEST_RULE_EDIT_WITH_NFT) {
      await checkRuleset(namespace, edit.script);
      return 'nft';
    }
    try {
      await this.ruleEditSocket(namespace).send(edit.ops, 'check');
      return 'netlink';
    } catch (err) {
      if (/^nf_tables refused/.test((err as Error).message)) throw err;
      log.warn({ vrf, err: (err as Error).message }, 'no nf_tables socket for the rule edit; checking it with nft');
    }
    await checkRuleset(namespace, edit.script);
    return 'nft';
  }

  /** The kept nf_tables socket for in-place rule edits in `namespace` (opened at its first edit). */
  private ruleEditSocket(namespace: string | undefined): NftRuleEditSocket {
    const key = namespace ?? '';
    let socket = this.ruleEditSockets.get(key);
    if (!socket) this.ruleEditSockets.set(key, socket = new NftRuleEditSocket(namespace));
    return socket;
  }

  /** Applies a staged in-place rule edit: one transaction; the handles of the rules it inserted are echoed back. */
  private async applyRuleEdit(live: LiveVrf, staged: Staged & { edit: NonNullable<Staged['edit']> }): Promise<void> {
    const { edit, handles, via } = staged.edit;
    const added = via === 'netlink'
      ? await this.ruleEditSocket(staged.namespace).send(edit.ops, 'apply')
      : insertedHandles(edit.script ? await runNft(staged.namespace, ['-e', '-a', '-f', '-'], edit.script) : '');
    live.config = staged.config;
    try {
      live.ruleHandles = handlesAfter(handles, edit, added);
    } catch (err) {
      live.ruleHandles = undefined; // applied, but the next firewall edit loads the table whole
      log.warn({ vrf: live.name, err: (err as Error).message }, 'handles of the edited rules unknown; the next firewall edit loads the table whole');
    }
    log.info({ vrf: live.name, rules: staged.config.firewall.rules.length, deleted: edit.deleted.length, inserted: edit.inserted.length, via },
      'firewall rules edited in place');
  }

  /** The forward chain's rule handles as the kernel has them now (undefined when they cannot be read). */
  private async readRuleHandles(name: string, namespace: string | undefined): Promise<RuleHandles | undefined> {
    try {
      return parseRuleHandles(await runNft(namespace, ['-j', '-a', 'list', 'chain', 'inet', TABLE, 'forward']));
    } catch (err) {
      log.warn({ vrf: name, err: (err as Error).message }, 'cannot read the forward chain\'s rule handles; the next firewall edit loads the table whole');
      return undefined;
    }
  }

  async abortVrf(name: string): Promise<void> {
    this.staged.delete(name);
  }

  async applyVrf(name: string, config: VrfDataplaneConfig | undefined): Promise<void> {
    if (config === undefined) {
      await this.removeVrf(name);
      return;
    }
    const staged = this.staged.get(name) ?? { config: this.parse(config), namespace: this.namespaceOf(name) };
    this.staged.delete(name);
    const live = this.vrfs.get(name);
    if (live && staged.edit && live.config === staged.edit.base && live.ruleHandles === staged.edit.handles) {
      await this.applyRuleEdit(live, { ...staged, edit: staged.edit });
      return;
    }
    const role = live?.role ?? 'master';
    // A backup's table carries the guard in the form keepalived lifts: its BACKUP rule first.
    if (role === 'backup') await this.guardForm(name, staged.namespace, true);
    // Whole load: first load, or anything but firewall rules and default action changed, or the
    // chain's handles are unknown. Counters of unchanged rules keep counting; those of removed or
    // edited rules go (nft-ruleset.ts).
    await applyRuleset(staged.namespace, renderRuleset(staged.config, role, live?.config));
    // Every rule got a new handle (the table is one transaction: on failure the old ones hold).
    const ruleHandles = await this.readRuleHandles(name, staged.namespace);
    if (live) live.ruleHandles = ruleHandles;
    await applySysctls(staged.namespace, conntrackSysctls(staged.config.timeouts, staged.config.firewall.dropInvalid));
    // Only a VRF in the agent's own namespace makes the agent the owner of the host table.
    if (staged.namespace === undefined && staged.config.conntrackMax !== this.tableSizedFor) {
      applyTableSize(staged.config.conntrackMax);
      this.tableSizedFor = staged.config.conntrackMax;
    }
    if (live) {
      live.config = staged.config;
      // Counts restart with the new blocks: conntracks of before are no longer logged at their end.
      live.natBlocks = this.natBlockLogger(name, staged.config);
      const services = countedVirtualServices(staged.config);
      if (!live.live.classifiesLike(services)) {
        // Conntracks are counted per virtual service: a new set of them needs one dump.
        live.live = new ConntrackLiveCounts(services);
        await this.reseed(live);
      }
      log.info({ vrf: name }, 'vrf configuration applied');
      return;
    }
    const netlink = new ConntrackNetlink({ namespace: staged.namespace });
    let writers: ConntrackWriterPool;
    try {
      writers = await ConntrackWriterPool.start(staged.namespace, this.writerThreads);
    } catch (err) {
      netlink.close();
      throw err;
    }
    const vrf: LiveVrf = {
      name,
      namespace: staged.namespace,
      config: staged.config,
      ruleHandles,
      role,
      policy: { graceSeconds: {} },
      netlink,
      writers,
      established: new U32Map(),
      counters: emptyCounters(),
      countersReadAt: 0,
      natBlocks: this.natBlockLogger(name, staged.config),
      live: new ConntrackLiveCounts(countedVirtualServices(staged.config)),
      tableDumps: 0,
      written: new WrittenConntracks(),
      resyncUnchanged: 0,
      reseeds: 0,
      eventsLost: 0,
      eventReaderRestarts: 0,
    };
    try {
      if (role === 'master') this.startEvents(vrf);
    } catch (err) {
      netlink.close();
      await writers.close();
      throw err;
    }
    this.vrfs.set(name, vrf);
    try {
      vrf.nftCounters = new NftCounterSocket(staged.namespace);
    } catch (err) {
      log.warn({ vrf: name, err: (err as Error).message }, 'no nf_tables socket for the counters; they are read with nft');
    }
    // Start from what the table already holds (the agent may restart under live traffic).
    await this.dumpTable(vrf, (batch) => {
      for (const ct of batch) {
        vrf.live.set(ct.orig, counted(ct));
        vrf.counters.conntracks++;
        if (ct.mark & SYNCED_MARK) vrf.counters.synced++;
        if (isEstablished(ct)) vrf.established.set(ct.id, this.clock.now());
        if (role === 'master') vrf.natBlocks.add(ct, 'existing', this.clock.now());
      }
    });
    log.info({ vrf: name, namespace: staged.namespace ?? '(agent)', conntracks: vrf.counters.conntracks }, 'vrf dataplane started');
  }

  private async removeVrf(name: string): Promise<void> {
    const vrf = this.vrfs.get(name);
    if (!vrf) return;
    this.vrfs.delete(name);
    await this.stopVrf(vrf);
    await applyRuleset(vrf.namespace, renderRemoval());
    this.backupRulesIn.delete(vrf.namespace ?? '');
    await removeBackupRules(vrf.namespace).catch((err: Error) => log.warn({ vrf: name, err: err.message }, 'cannot remove the guard\'s BACKUP routing rules'));
    log.info({ vrf: name }, 'vrf dataplane removed');
  }

  private async stopVrf(vrf: LiveVrf): Promise<void> {
    vrf.refresh?.cancel();
    vrf.primed?.discard();
    vrf.primed = undefined;
    vrf.guardRemoval?.close();
    vrf.guardRemoval = undefined;
    if (vrf.release) {
      vrf.release.cancelled = true;
      await vrf.release.promise; // its netlink socket closes below
    }
    const events = vrf.events;
    vrf.events = undefined;
    events?.close();
    if (events instanceof ConntrackEventThread) await events.stopped; // its socket closed, its thread gone
    vrf.nftCounters?.close();
    this.ruleEditSockets.get(vrf.namespace ?? '')?.close();
    this.ruleEditSockets.delete(vrf.namespace ?? '');
    vrf.netlink.close();
    await vrf.writers.close();
  }

  private startEvents(vrf: LiveVrf): void {
    if (vrf.events) return;
    const reader = this.eventReader === 'thread' ? ConntrackEventThread : ConntrackEventStream;
    const lost = (dropped: number): void => {
      vrf.eventsLost += dropped;
      log.warn({ vrf: vrf.name, dropped, repairers: this.lossListeners.size }, 'conntrack events lost; the peer is resynchronised now');
      for (const listener of this.lossListeners) listener(vrf.name, dropped);
      // The live counts missed them too: counted again from a dump.
      void this.reseed(vrf);
    };
    const options: ConntrackEventThreadOptions = {
      namespace: vrf.namespace,
      receiveBufferBytes: this.eventBufferBytes,
      // A failed event thread was replaced: what it took with it and the gap are a loss like an overrun.
      onReaderRestart: (dropped) => {
        vrf.eventReaderRestarts++;
        lost(dropped);
      },
    };
    vrf.events = reader.start((n) => this.onKernelEvent(vrf, n), lost, options);
  }

  /** Every dump of a kernel table goes through here (counted: state reads must make none). */
  private dumpTable(vrf: LiveVrf, batch: (cts: KernelConntrack[]) => void | Promise<void>): Promise<number> {
    vrf.tableDumps++;
    return vrf.netlink.dump(batch);
  }

  /**
   * Counts the table again from one dump. Keys: the conntrack id while events are read (master),
   * the original tuple otherwise (a backup's own writes return no id). One at a time; requests
   * during a re-seed make one more after it.
   */
  private reseed(vrf: LiveVrf): Promise<void> {
    if (vrf.reseeding) {
      vrf.reseedAgain = true;
      return vrf.reseeding;
    }
    const run = async (): Promise<void> => {
      do {
        vrf.reseedAgain = false;
        vrf.reseeds++;
        vrf.live.clear();
        await this.dumpTable(vrf, (cts) => {
          for (const ct of cts) vrf.live.set(ct.orig, counted(ct));
        });
      } while (vrf.reseedAgain && this.vrfs.get(vrf.name) === vrf);
    };
    vrf.reseeding = run().catch((err: Error) => {
      log.error({ vrf: vrf.name, err: err.message }, 'cannot count the conntrack table');
    }).finally(() => { vrf.reseeding = undefined; });
    return vrf.reseeding;
  }

  private live(vrf: string): LiveVrf {
    const v = this.vrfs.get(vrf);
    if (!v) throw new Error(`vrf ${vrf} is not configured in the linux engine`);
    return v;
  }

  // ---- conntracks ----

  private toEntry(vrf: LiveVrf, ct: KernelConntrack, now = this.clock.now()): ConntrackEntry {
    const vs = vrf.config.virtualServices.find((v) => v.vip === ct.orig.dst && v.port === ct.orig.dport && v.protocol === ct.orig.proto);
    const entry: ConntrackEntry = {
      vrf: vrf.name,
      orig: ct.orig,
      reply: ct.reply,
      state: ct.state,
      timeout: ct.mark & SYNCED_MARK ? ct.mark & MARK_TIMEOUT_MASK : ct.timeout,
      alg: (ct.status & IPS_EXPECTED) !== 0,
      establishedAt: vrf.established.get(ct.id) ?? 0,
      lastActivity: now,
    };
    if (vs) {
      entry.virtualService = vs.name;
      if (!vs.mirror) entry.noSync = true;
    }
    // Connections over the namespace's loopback (the agent's own NETCONF and sync sessions) end on
    // this node: a peer cannot carry them, so they are never synced (conntrackd's usual
    // `Address Ignore 127.0.0.1`). Synced, they would sit on the backup and fight anti-entropy.
    if (isLoopback(ct.orig.src) || isLoopback(ct.orig.dst)) entry.noSync = true;
    if (ct.mark & SYNCED_MARK) entry.synced = true;
    return entry;
  }

  private onKernelEvent(vrf: LiveVrf, n: ConntrackNotification): void {
    const ct = n.conntrack;
    const now = this.clock.now(); // once per event: read for every stage below
    // Changes caused by our own upsert/remove are not reported (as in the soft engine).
    const ours = n.portId !== 0 && (n.portId === vrf.netlink.port || vrf.writers.ports.has(n.portId) || n.portId === vrf.release?.port || n.portId === vrf.releasedPort);
    const worker = ownerWorker(ct.orig, this.workerCount);
    // Keyed by the original tuple, unique in a zone: the kernel's conntrack id is a 32-bit hash
    // that two live conntracks can share (test/linux/conntrack-id-collision.test.ts).
    if (n.kind === 'destroy') vrf.live.delete(ct.orig);
    else vrf.live.setState(ct.orig, ct.state, (ct.status & IPS_EXPECTED) !== 0, (ct.mark & SYNCED_MARK) !== 0);
    if (n.kind === 'destroy') {
      vrf.counters.conntracks = Math.max(0, vrf.counters.conntracks - 1);
      vrf.counters.destroyed++;
      if (ct.mark & SYNCED_MARK) vrf.counters.synced = Math.max(0, vrf.counters.synced - 1);
      const entry = this.toEntry(vrf, ct, now);
      vrf.established.delete(ct.id);
      vrf.natBlocks.remove(ct, now);
      if (!ours) this.emit({ kind: 'destroy', entry, worker });
      return;
    }
    if (n.kind === 'new') {
      vrf.counters.conntracks++;
      vrf.counters.created++;
      if (ct.mark & SYNCED_MARK) vrf.counters.synced++;
      vrf.natBlocks.add(ct, 'new', now);
    }
    // The kernel's conntrack id is a 32-bit hash (nf_ct_get_id), not a unique name: two live
    // conntracks share one about once per 10^5. A new conntrack has no past, so what is recorded
    // under its id is another's and must not hide its establishment (it was never synced: the
    // 1-2 per 10^5 of issue #11). A twin's later transition the sender catches (SyncSender.onUpdate).
    if (n.kind === 'new') vrf.established.delete(ct.id);
    const becameEstablished = isEstablished(ct) && !vrf.established.has(ct.id);
    if (becameEstablished) vrf.established.set(ct.id, now);
    if (ours) return;
    // One entry for the 'new' and 'established' of one kernel event (a burst's conntracks come
    // established): listeners only read entries.
    const entry = this.toEntry(vrf, ct, now);
    if (n.kind === 'new') this.emit({ kind: 'new', entry, worker });
    if (becameEstablished) this.emit({ kind: 'established', entry, worker });
    else if (n.kind === 'update') this.emit({ kind: 'update', entry, worker });
  }

  private emit(ev: ConntrackEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(ev);
      } catch (err) {
        log.error({ err: String(err) }, 'conntrack event listener failed');
      }
    }
  }

  onEvent(listener: (ev: ConntrackEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** CG-NAT port block logs (also written to the log, component `cg-nat`). */
  onNatLog(listener: (l: LinuxNatBlockLog) => void): () => void {
    this.natListeners.add(listener);
    return () => this.natListeners.delete(listener);
  }

  private natBlockLogger(vrf: string, config: SoftVrfConfig): NatBlockLogger {
    return new NatBlockLogger(vrf, config, (l) => {
      natLog.info({ ...l }, `port block ${l.event}`);
      for (const listener of this.natListeners) listener(l);
    });
  }

  onEventsLost(listener: (vrf: string, dropped: number) => void): () => void {
    this.lossListeners.add(listener);
    return () => this.lossListeners.delete(listener);
  }

  /** The VRFs the engine runs (walked by the virtual-service tcpstat state provider). */
  vrfNames(): string[] {
    return [...this.vrfs.keys()];
  }

  /**
   * tcpstat of each virtual service of a VRF, from the live counts (no dump): every conntrack of
   * the VIP; with connection-mirror, on a master its established non-ALG flows (what sync
   * mirrors), on a backup the synchronised ones it holds.
   */
  async virtualServiceStats(vrfName: string): Promise<Map<string, VirtualServiceStats>> {
    const vrf = this.live(vrfName);
    return vrf.live.virtualServiceStats(vrf.role);
  }

  async dump(vrf: string, batch: (entries: ConntrackEntry[]) => void | Promise<void>): Promise<void> {
    const v = this.live(vrf);
    await this.dumpTable(v, (cts) => batch(cts.map((ct) => this.toEntry(v, ct))));
  }

  /**
   * dump() without an object per plain IPv4 conntrack (DataplaneEngine.dumpPacked): the kernel's
   * messages are decoded into typed columns (kernel-dump-batch.ts) and handed over in batches of
   * DUMP_BATCH while the kernel still dumps, one batch at a time.
   */
  async dumpPacked(vrf: string, batch: (b: PackedConntrackBatch) => void | Promise<void>): Promise<void> {
    const v = this.live(vrf);
    v.tableDumps++;
    const vips = new Set<number>();
    for (const vs of v.config.virtualServices) {
      const vip = parseIPv4(vs.vip);
      const proto = PROTO_INDEX[vs.protocol as L4Proto];
      if (vip >= 0 && proto !== undefined) vips.add((vip * 65536 + vs.port) * 4 + proto);
    }
    const ctx: DumpBatchContext = {
      isVirtualService: (proto, dst, dport) => vips.size > 0 && vips.has((dst * 65536 + dport) * 4 + proto),
      establishedAt: (id) => v.established.get(id) ?? 0,
      now: this.clock.now(),
      syncedMark: SYNCED_MARK,
      markTimeoutMask: MARK_TIMEOUT_MASK,
      toEntry: (ct) => this.toEntry(v, ct),
    };
    let undecodable = 0;
    let current = new KernelDumpBatch(DUMP_BATCH, ctx);
    const pipe = new BatchPipe<KernelDumpBatch>(async (b) => {
      ctx.now = this.clock.now();
      await batch(b);
    });
    try {
      await v.netlink.dumpRaw((buf, from, to) => {
        if (!current.add(buf, from, to)) return;
        if (!current.full) return;
        undecodable += current.undecodable;
        pipe.push(current);
        current = new KernelDumpBatch(DUMP_BATCH, ctx);
      });
    } catch (err) {
      await pipe.cancel();
      throw err;
    }
    undecodable += current.undecodable;
    if (current.count > 0) pipe.push(current);
    if (undecodable > 0) log.warn({ vrf, undecodable }, 'conntracks skipped in a dump (cannot decode)');
    await pipe.end();
  }

  /**
   * Writes synced conntracks into the kernel table (on a backup: held without expiry); returns how
   * many the kernel took, after retrying refusals in the other form (conntrack-upsert.ts).
   */
  async upsert(entries: ConntrackEntry[]): Promise<number> {
    const byVrf = new Map<string, ConntrackEntry[]>();
    for (const e of entries) {
      const list = byVrf.get(e.vrf) ?? [];
      list.push(e);
      byVrf.set(e.vrf, list);
    }
    let written = 0;
    for (const [name, list] of byVrf) {
      const vrf = this.live(name);
      const writes: ConntrackWrite[] = list.map((e) => ({
        orig: e.orig,
        reply: e.reply,
        state: e.state,
        timeout: vrf.role === 'backup' ? BACKUP_TIMEOUT_S : e.timeout,
        mark: (SYNCED_MARK | Math.min(Math.max(0, Math.round(e.timeout)), MARK_TIMEOUT_MASK)) >>> 0,
      }));
      if (vrf.written.size > 0) for (const w of writes) vrf.written.forget(w.orig);
      const result = await vrf.writers.upsert(writes);
      if (!vrf.events) {
        // No events on a backup: its own writes keep the live counts, keyed by original tuple.
        const failed = new Set(result.failures.map((f) => f.index));
        list.forEach((e, i) => {
          if (!failed.has(i)) vrf.live.set(e.orig, { orig: e.orig, state: e.state, alg: e.alg === true, synced: true });
        });
        // No event reader on a backup: count here what the events would have counted.
        vrf.counters.conntracks += result.created;
        vrf.counters.created += result.created;
        vrf.counters.synced += result.created;
      }
      // The caller (sync) counts refusals in receive-error: written < entries.
      this.noteUpsert(vrf, result, (i) => writes[i]?.orig);
      written += result.written;
    }
    return written;
  }

  /**
   * upsert() of packed IPv4 sync records (DataplaneEngine.upsertIPv4Records): the writer threads
   * encode ctnetlink straight from the records' bytes, the same messages upsert() sends for the
   * entries they describe (same timeout and mark), with no object per conntrack on the way.
   */
  async upsertIPv4Records(vrfName: string, all: Uint8Array, options?: UpsertIPv4Options): Promise<number> {
    const vrf = this.live(vrfName);
    // A backup remembers what it wrote; a full resync's records identical to it are left as the
    // kernel holds them (a full resync after a short outage rewrote the whole table before).
    const remember = vrf.role === 'backup' && !vrf.events;
    const total = all.length / IPV4_RECORD_BYTES;
    let records = all;
    let skipped = 0;
    if (remember && vrf.written.size > 0) {
      const skip = options?.unchangedMayBeSkipped === true;
      const changed = new Int32Array(total);
      let rebound: FlowTuple[] | undefined;
      let n = 0;
      for (let i = 0; i < total; i++) {
        const held = vrf.written.compare(all, i);
        if (held === Held.Same && skip) continue;
        if (held === Held.Rebound) (rebound ??= []).push(recordOrig(all, i));
        changed[n++] = i;
      }
      // A new NAT binding of the same original tuple (ended and created again on the master while
      // the link was down): an update cannot change the reply tuple of a kernel conntrack.
      if (rebound) await this.remove(vrfName, rebound);
      skipped = total - n;
      if (skipped > 0) {
        vrf.resyncUnchanged += skipped;
        if (n === 0) return total;
        records = new Uint8Array(n * IPV4_RECORD_BYTES);
        for (let j = 0; j < n; j++) {
          const o = (changed[j] as number) * IPV4_RECORD_BYTES;
          records.set(all.subarray(o, o + IPV4_RECORD_BYTES), j * IPV4_RECORD_BYTES);
        }
      }
    }
    const result = await vrf.writers.upsertIPv4Records(records, {
      timeout: vrf.role === 'backup' ? BACKUP_TIMEOUT_S : undefined,
      mark: (timeout) => (SYNCED_MARK | Math.min(timeout, MARK_TIMEOUT_MASK)) >>> 0,
    });
    const count = records.length / IPV4_RECORD_BYTES;
    if (!vrf.events) {
      // As upsert(): a backup's own writes keep its live counts, keyed by original tuple.
      const origWords = new Uint32Array(5);
      let f = 0;
      for (let i = 0; i < count; i++) {
        if (f < result.failures.length && result.failures[f]?.index === i) {
          f++;
          if (remember) vrf.written.forgetRecord(records, i);
          continue;
        }
        // Counted from the record's numbers: no tuple object or address text per synced conntrack.
        recordOrigInto(records, i, origWords);
        vrf.live.setIPv4(origWords, recordState(records, i), false, true);
        if (remember && vrf.role === 'backup') vrf.written.record(records, i);
      }
      vrf.counters.conntracks += result.created;
      vrf.counters.created += result.created;
      vrf.counters.synced += result.created;
    }
    this.noteUpsert(vrf, result, (i) => recordOrig(records, i));
    return result.written + skipped;
  }

  /** Logs and counts what an upsert could not write (the caller, sync, counts it in receive-error). */
  private noteUpsert(vrf: LiveVrf, result: UpsertResult, origOf: (index: number) => FlowTuple | undefined): void {
    if (result.retried > 0) log.debug({ vrf: vrf.name, retried: result.retried }, 'synced conntracks written again in the other form (create/update)');
    if (result.failures.length > 0) {
      vrf.counters.dropsTableFull += result.failures.filter((f) => f.errno === 12 /* ENOMEM: table full */).length;
      const first = origOf(result.failures[0]?.index ?? 0);
      log.warn({ vrf: vrf.name, failed: result.failures.length, errno: errnoCounts(result.failures), first }, 'synced conntracks refused by the kernel');
    }
  }

  async remove(vrf: string, tuples: FlowTuple[]): Promise<number> {
    const v = this.live(vrf);
    if (v.written.size > 0) for (const t of tuples) v.written.forget(t);
    const removed = (await v.netlink.delete(tuples)).written;
    if (!v.events) {
      for (const t of tuples) v.live.delete(t);
      v.counters.conntracks = Math.max(0, v.counters.conntracks - removed);
      v.counters.synced = Math.max(0, v.counters.synced - removed);
      v.counters.destroyed += removed;
    }
    return removed;
  }

  // ---- HA ----

  role(vrf: string): HaRole {
    return this.live(vrf).role;
  }

  setFailoverPolicy(vrf: string, policy: FailoverPolicy): void {
    this.live(vrf).policy = policy;
  }

  /**
   * The form of a backup guard in `namespace`: `kernel` (lifted by keepalived's master rule) once
   * the BACKUP routing rule is in place (kernel-role-rules.ts; put there once per namespace), else
   * `unconditional` — or, with `strict`, the error (a whole load must not install a guard that a
   * FIB lookup without the BACKUP rule would let everything through).
   */
  private async guardForm(vrf: string, namespace: string | undefined, strict = false): Promise<GuardForm> {
    const key = namespace ?? '';
    if (this.backupRulesIn.has(key)) return 'kernel';
    try {
      await ensureBackupRules(namespace);
      this.backupRulesIn.add(key);
      return 'kernel';
    } catch (err) {
      if (strict) throw new Error(`vrf ${vrf}: cannot add the backup guard's routing rule: ${(err as Error).message}`, { cause: err });
      log.error({ vrf, err: (err as Error).message }, 'cannot add the backup guard\'s routing rule: the guard drops until the agent lifts it');
      return 'unconditional';
    }
  }

  async setRole(vrf: string, role: HaRole): Promise<void> {
    const v = this.live(vrf);
    if (v.role === role) return;
    const started = this.clock.now();
    v.role = role;
    // As master the kernel changes its conntracks by itself: what was written is no longer known.
    v.written.clear();
    if (v.release) {
      // A release still running stops at its next slice (and writes nothing once backup).
      v.release.cancelled = true;
      await v.release.promise;
    }
    if (role === 'master') this.startEvents(v); // before traffic flows: no event may be missed
    const eventsMs = this.clock.now() - started;
    const form = role === 'backup' ? await this.guardForm(vrf, v.namespace) : 'kernel';
    // Only the guard chain changes: a transaction whose size does not grow with the configuration.
    // To master: one netlink batch from this process on a socket opened while backup; else (and
    // to backup) an nft process started while backup when there is one; else nft the ordinary way.
    const primed = v.primed;
    v.primed = undefined;
    const guardRemoval = v.guardRemoval;
    v.guardRemoval = undefined;
    let by = 'netlink';
    let sentMs: number | undefined;
    try {
      if (role !== 'master' || !guardRemoval) throw new Error('no guard removal socket');
      const removing = guardRemoval.remove();
      await removing.finally(() => { if (guardRemoval.sentAt !== undefined) sentMs = Math.round(guardRemoval.sentAt - started); });
      primed?.discard();
    } catch (err) {
      guardRemoval?.close();
      if (role === 'master' && guardRemoval) log.warn({ vrf, err: (err as Error).message }, 'guard removal over netlink failed; applying the role switch with nft');
      by = 'nft';
      if (primed?.ready) {
        try {
          await primed.run(renderRoleSwitch(TABLE, role, form));
        } catch (err2) {
          log.warn({ vrf, err: (err2 as Error).message }, 'primed nft failed; applying the role switch again');
          await applyRuleset(v.namespace, renderRoleSwitch(TABLE, role, form));
        }
      } else {
        primed?.discard();
        await applyRuleset(v.namespace, renderRoleSwitch(TABLE, role, form));
      }
    }
    if (role === 'backup') {
      v.primed = new PrimedNft(v.namespace);
      try {
        v.guardRemoval = new GuardRemovalSocket(v.namespace, TABLE);
      } catch (err) {
        log.warn({ vrf, err: (err as Error).message }, 'no nf_tables socket for the switch to master; it will run nft');
      }
      v.events?.close();
      v.events = undefined;
      v.natBlocks.clear();
      void this.reseed(v); // from now on counted by tuple, from this node's own writes
      v.refresh = this.clock.setInterval(BACKUP_REFRESH_MS, () => {
        void this.rearmSynced(v).catch((err: Error) => log.error({ vrf, err: err.message }, 'cannot re-arm synced conntracks'));
      });
      log.info({ vrf, ms: this.clock.now() - started }, 'dataplane is backup: forwarding blocked, synced conntracks held');
      return;
    }
    v.refresh?.cancel();
    v.refresh = undefined;
    const forwardingAt = this.clock.now();
    log.info({ vrf, ms: forwardingAt - started, eventsMs, sentMs, by }, 'dataplane is master: guard removed, synced flows forwarded');
    // After forwarding started, never before it: per-conntrack work at the switch.
    const release: Release = { cancelled: false, promise: Promise.resolve(0) };
    release.promise = this.releaseSynced(v, release).then((released) => {
      if (release.cancelled) log.info({ vrf, released }, 'release of synced conntracks stopped: the role changed again');
      else log.info({ vrf, synced: released, ms: this.clock.now() - forwardingAt }, 'synced conntracks released: they age from the switch');
      return released;
    }, (err: Error) => {
      log.error({ vrf, err: err.message }, 'cannot release synced conntracks (they keep their backup timeout until the next switch)');
      return 0;
    }).finally(() => {
      if (v.release === release) v.release = undefined;
    });
    v.release = release;
  }

  /**
   * Resolves once the release that follows the last switch to master is over (at once when none
   * runs): the number of synced conntracks it released.
   */
  async releasedSynced(vrf: string): Promise<number> {
    const release = this.live(vrf).release;
    return release ? release.promise : 0;
  }

  /**
   * Rule 5: synced conntracks get their real timeout, counted from now, and become ordinary. Runs
   * while the kernel already forwards their packets: in slices, yielding between them (every update
   * also comes back as an event to this node's own event reader, ignored but drained).
   */
  private async releaseSynced(v: LiveVrf, release: Release): Promise<number> {
    const switchedAt = this.clock.now();
    if (RELEASE_HOLD_MS > 0) log.warn({ vrf: v.name, ms: RELEASE_HOLD_MS }, 'release of synced conntracks held back (TANDEM_TEST_RELEASE_HOLD_MS, a test hook)');
    const until = Date.now() + RELEASE_DELAY_MS + RELEASE_HOLD_MS;
    while (Date.now() < until && !release.cancelled && !this.closed) await new Promise((resolve) => setTimeout(resolve, Math.min(50, until - Date.now())));
    if (release.cancelled || this.closed) return 0;
    const waitedS = Math.floor((this.clock.now() - switchedAt) / 1000);
    // A socket of its own: a netlink socket runs one dump at a time, and sync's resync of the peer
    // (told of the new role at once) dumps on the VRF's socket meanwhile.
    const netlink = new ConntrackNetlink({ namespace: v.namespace });
    release.port = netlink.port;
    v.releasedPort = netlink.port;
    try {
      return await this.releaseOn(v, release, netlink, waitedS);
    } finally {
      netlink.close();
      release.port = undefined;
    }
  }

  private async releaseOn(v: LiveVrf, release: Release, netlink: ConntrackNetlink, waitedS: number): Promise<number> {
    const writes: ConntrackWrite[] = [];
    v.live.clear(); // counted again, now that events are read
    v.tableDumps++;
    v.counters.conntracks = await netlink.dump((cts) => {
      for (const ct of cts) {
        v.live.set(ct.orig, counted(ct));
        if (isEstablished(ct) && !v.established.has(ct.id)) v.established.set(ct.id, this.clock.now());
        // Blocks of the synchronised conntracks are this node's now: logged, and released at their end.
        v.natBlocks.add(ct, ct.mark & SYNCED_MARK ? 'inherited' : 'existing', this.clock.now());
        if (!(ct.mark & SYNCED_MARK)) continue;
        const timeout = ct.mark & MARK_TIMEOUT_MASK;
        const grace = v.policy.graceSeconds[ct.orig.proto];
        const effective = grace !== undefined && grace < timeout ? grace + Math.floor(Math.random() * (timeout - grace)) : timeout;
        writes.push({ orig: ct.orig, reply: ct.reply, state: ct.state, timeout: Math.max(1, effective - waitedS), mark: 0 });
      }
    });
    let written = 0;
    const failures: { index: number; errno: number }[] = [];
    for (let i = 0; i < writes.length; i += RELEASE_SLICE) {
      if (release.cancelled || this.closed) break;
      const result = await netlink.update(writes.slice(i, i + RELEASE_SLICE));
      written += result.written;
      failures.push(...result.failures);
      await new Promise((resolve) => setImmediate(resolve));
    }
    // ENOENT: ended meanwhile (nothing to release); anything else stays synced until the next switch.
    if (failures.length > 0) log.warn({ vrf: v.name, synced: writes.length, failed: failures.length, errno: errnoCounts(failures) }, 'synced conntracks the kernel refused to release');
    if (!release.cancelled && !this.closed) v.counters.synced = 0;
    return written;
  }

  /** On a backup: synced conntracks get BACKUP_TIMEOUT_S again (the kernel cannot hold them forever). */
  private async rearmSynced(v: LiveVrf): Promise<void> {
    const writes: ConntrackWrite[] = [];
    await this.dumpTable(v, (cts) => {
      for (const ct of cts) {
        if (ct.mark & SYNCED_MARK) writes.push({ orig: ct.orig, reply: ct.reply, state: ct.state, timeout: BACKUP_TIMEOUT_S, mark: ct.mark });
      }
    });
    await v.netlink.update(writes);
  }

  counters(vrf: string): EngineCounters {
    const v = this.live(vrf);
    // nft counters are read in the background at most once a second (this call is synchronous).
    if (this.clock.now() - v.countersReadAt >= COUNTER_REFRESH_MS) {
      v.countersReadAt = this.clock.now();
      readFirewallCounters(v.namespace, v.config, v.nftCounters).then((c) => this.tookFirewallCounters(v, c),
        (err: Error) => log.warn({ vrf, err: err.message }, 'cannot read the nftables counters'));
    }
    return { ...v.counters };
  }

  private tookFirewallCounters(v: LiveVrf, c: FirewallCounters): void {
    v.firewall = c;
    v.counters.dropsFirewall = c.dropsFirewall;
    v.counters.dropsBackup = c.dropsBackup;
  }

  /** Reads the nft counters now (what counters() shows after its next background read). */
  async refreshCounters(vrf: string): Promise<EngineCounters> {
    const v = this.live(vrf);
    this.tookFirewallCounters(v, await readFirewallCounters(v.namespace, v.config, v.nftCounters));
    v.countersReadAt = this.clock.now();
    return { ...v.counters };
  }

  /**
   * Everything tandem-fast-path-counters shows for a VRF: one nft call for the firewall's
   * counters, the rest from live counts (no dump, whatever the table holds).
   */
  async counterDetail(vrf: string): Promise<LinuxCounterDetail> {
    const counters = await this.refreshCounters(vrf);
    const v = this.live(vrf);
    return {
      counters,
      byState: [...v.live.byState],
      firewall: v.firewall ?? firewallCounters(v.config, {}),
      eventsLost: v.eventsLost,
      eventReaderRestarts: v.eventReaderRestarts,
      tableDumps: v.tableDumps,
      reseeds: v.reseeds,
      resyncUnchanged: v.resyncUnchanged,
    };
  }

  /** Stops reading and writing; the kernel keeps forwarding with the tables as they are. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const vrf of this.vrfs.values()) await this.stopVrf(vrf);
    this.vrfs.clear();
    for (const socket of this.ruleEditSockets.values()) socket.close();
    this.ruleEditSockets.clear();
    this.listeners.clear();
    this.lossListeners.clear();
    this.natListeners.clear();
  }
}
