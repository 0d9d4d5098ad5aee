// The VRRP instances of every VRF, run by one keepalived per VRF (in the VRF's namespace), are the
// controllers of their HA groups: MASTER makes the group master, any other state (BACKUP, FAULT,
// STOP, keepalived dead, VRRP disabled) makes it backup (rule 11).
import { mkdtempSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HaRole } from '../../fastpath/engine.js';
import type { SubsystemError } from '../../core/subsystem.js';
import { logger } from '../../core/log.js';
import { removeMasterRules } from '../../fastpath/linux/kernel-role-rules.js';
import { renderKeepalivedConf, vrfPath, type VrfVrrpConfig } from './keepalived-config.js';
import { checkKeepalivedConf, KeepalivedProcess, realtimeSchedulingAllowed, type KeepalivedProcessOptions } from './keepalived-process.js';
import { raiseThreadPriority } from './thread-priority.js';
import { NotifyFifo, type InstanceStateEvent, type VrrpState } from './notify-fifo.js';

const log = logger('vrrp');

/** What the controller needs from the HA groups (ha/ha-groups.ts HaGroups has it). */
export interface VrrpGroupTarget {
  setVrrpState(group: string, state: HaRole | undefined): void;
}

export interface VrrpControllerOptions {
  /** Where per-VRF keepalived.conf, notify FIFO and pid files live (default: a new temp directory). */
  stateDir?: string;
  /** Network namespace of a VRF (default: none for 'main', the VRF's name otherwise). */
  netnsOf?: (vrf: string) => string | undefined;
  /** Called (one call at a time) after VRRP changed group states, so that subscribers such as the sync follow. */
  afterGroupChange?: () => Promise<void>;
  /** Passed to each KeepalivedProcess (binary, backoff, stop timeout). */
  process?: Pick<KeepalivedProcessOptions, 'binary' | 'backoffMinMs' | 'backoffMaxMs' | 'stableMs' | 'stopTimeoutMs' | 'realtime'>;
  /**
   * Nice value for the thread running this controller (it reads the notify FIFO and drives the
   * switch to master), set when the first keepalived starts (thread-priority.ts); undefined: left
   * as it is. createVrrp (the agent's) sets VRRP_THREAD_NICE.
   */
  threadNice?: number;
}

export interface VrrpInstanceEvent extends InstanceStateEvent {
  vrf: string;
}

/** keepalived, FIFO and instance states of one VRF. */
interface RunningVrf {
  cfg: VrfVrrpConfig;
  dir: string;
  confText: string;
  fifo: NotifyFifo;
  process: KeepalivedProcess;
  states: Map<string, VrrpState>;
}

export function defaultNetnsOf(vrf: string): string | undefined {
  return vrf === 'main' ? undefined : vrf;
}

export function groupStateOf(state: VrrpState | undefined): HaRole {
  return state === 'MASTER' ? 'master' : 'backup';
}

export class VrrpController {
  private readonly running = new Map<string, RunningVrf>();
  /** Every VRF's configuration as last applied, including disabled ones (their groups stay backup). */
  private applied: VrfVrrpConfig[] = [];
  private claimed = new Set<string>();
  private stateDir?: string;
  private ownsStateDir = false;
  private followChain: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<(ev: VrrpInstanceEvent) => void>();
  private readonly netnsOf: (vrf: string) => string | undefined;
  /** Whether keepalived may run real-time here; probed once, at the first start. */
  private realtime?: boolean;
  private threadNiceSet = false;

  constructor(
    private readonly groups: VrrpGroupTarget,
    private readonly opts: VrrpControllerOptions = {},
  ) {
    this.netnsOf = opts.netnsOf ?? defaultNetnsOf;
  }

  /** Follow every instance state keepalived reports; returns an unsubscribe function. */
  onInstanceState(fn: (ev: VrrpInstanceEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Last state reported for an instance (undefined before keepalived reported it). */
  instanceState(vrf: string, instance: string): VrrpState | undefined {
    return this.running.get(vrf)?.states.get(instance);
  }

  /** The keepalived of a VRF, while it is configured (tests kill it by PID). */
  keepalived(vrf: string): KeepalivedProcess | undefined {
    return this.running.get(vrf)?.process;
  }

  private baseDir(): string {
    if (!this.stateDir) {
      if (this.opts.stateDir) {
        this.stateDir = this.opts.stateDir;
      } else {
        this.stateDir = mkdtempSync(join(tmpdir(), 'tandem-vrrp-'));
        this.ownsStateDir = true;
      }
    }
    return this.stateDir;
  }

  private vrfDir(vrf: string): string {
    return join(this.baseDir(), vrf);
  }

  private render(cfg: VrfVrrpConfig): string {
    return renderKeepalivedConf(cfg, { notifyFifo: join(this.vrfDir(cfg.vrf), 'notify.fifo') });
  }

  /** Render every active VRF's keepalived.conf and have keepalived check it in its namespace. */
  async check(configs: VrfVrrpConfig[]): Promise<SubsystemError[]> {
    const errors: SubsystemError[] = [];
    for (const cfg of configs) {
      if (!cfg.enabled || cfg.instances.length === 0) continue;
      if (typeof process.getuid === 'function' && process.getuid() !== 0) {
        // keepalived needs root for raw sockets, addresses and namespaces.
        errors.push({ message: `VRRP of VRF ${cfg.vrf} needs the agent to run as root (keepalived)`, path: `${vrfPath(cfg.vrf)}/vrrp/enabled` });
        continue;
      }
      const dir = this.vrfDir(cfg.vrf);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      const file = join(dir, 'keepalived.conf.check');
      try {
        await fs.writeFile(file, this.render(cfg));
        const problem = await checkKeepalivedConf(file, this.netnsOf(cfg.vrf), this.opts.process?.binary);
        if (problem !== undefined) {
          errors.push({ message: `VRRP of VRF ${cfg.vrf} rejected by keepalived: ${problem}`, path: `${vrfPath(cfg.vrf)}/interface/vrrp` });
        }
      } finally {
        await fs.rm(file, { force: true });
      }
    }
    return errors;
  }

  /** Make `configs` live: start, reload or stop each VRF's keepalived and claim the HA groups. */
  async apply(configs: VrfVrrpConfig[]): Promise<void> {
    const active = new Map(configs.filter((c) => c.enabled && c.instances.length > 0).map((c) => [c.vrf, c]));
    // One VRF failing (a full disk, a vanished namespace) must not stop the others: the commit is
    // already decided; the failure is logged and its groups stay backup.
    const guarded = async (vrf: string, what: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        log.error({ vrf, err: (err as Error).message }, `VRRP ${what} failed`);
      }
    };
    for (const [vrf, r] of [...this.running]) {
      if (!active.has(vrf)) await guarded(vrf, 'stop', () => this.stopVrf(vrf, r));
    }
    this.applied = configs;
    for (const cfg of active.values()) {
      const r = this.running.get(cfg.vrf);
      if (r) await guarded(cfg.vrf, 'reload', () => this.updateVrf(r, cfg));
      else await guarded(cfg.vrf, 'start', () => this.startVrf(cfg));
    }
    this.claimGroups();
  }

  private realtimeScheduling(): boolean {
    if (this.realtime !== undefined) return this.realtime;
    this.realtime = this.opts.process?.realtime ?? realtimeSchedulingAllowed();
    if (!this.realtime) {
      log.warn('keepalived runs with normal scheduling (real-time refused here): with sub-second adverts a saturated CPU can delay adverts and cause a false failover');
    }
    return this.realtime;
  }

  private async startVrf(cfg: VrfVrrpConfig): Promise<void> {
    const dir = this.vrfDir(cfg.vrf);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const confText = this.render(cfg);
    const confPath = join(dir, 'keepalived.conf');
    await fs.writeFile(confPath, confText);
    const fifo = new NotifyFifo(join(dir, 'notify.fifo'), { vrf: cfg.vrf });
    await fifo.open();
    if (this.opts.threadNice !== undefined && !this.threadNiceSet) {
      this.threadNiceSet = true;
      raiseThreadPriority(this.opts.threadNice);
    }
    const keepalived = new KeepalivedProcess({ ...this.opts.process, realtime: this.realtimeScheduling(), vrf: cfg.vrf, netns: this.netnsOf(cfg.vrf), confPath, stateDir: dir });
    const r: RunningVrf = { cfg, dir, confText, fifo, process: keepalived, states: new Map() };
    this.running.set(cfg.vrf, r);
    fifo.onState((ev) => this.onInstanceEvent(r, ev));
    // A keepalived that died reports nothing: its instances count as stopped until it is back.
    keepalived.onExit(() => {
      for (const name of r.states.keys()) r.states.set(name, 'STOP');
      // A keepalived killed as master leaves its master rule, which keeps the kernel's backup
      // guard open (fastpath/linux/kernel-role-rules.ts): the group is backup now, so it goes.
      if (r.cfg.instances.some((i) => i.liftsGuard)) {
        void removeMasterRules(this.netnsOf(r.cfg.vrf)).then((removed) => {
          if (removed > 0) log.warn({ vrf: r.cfg.vrf, removed }, 'keepalived died as master: its rule that lifts the backup guard removed');
        }, (err: Error) => log.error({ vrf: r.cfg.vrf, err: err.message }, 'keepalived died: cannot remove its rule that lifts the backup guard'));
      }
      this.groupsChanged();
    });
    keepalived.start();
    log.info({ vrf: cfg.vrf, instances: cfg.instances.map((i) => i.name) }, 'VRRP started');
  }

  private async updateVrf(r: RunningVrf, cfg: VrfVrrpConfig): Promise<void> {
    r.cfg = cfg;
    const names = new Set(cfg.instances.map((i) => i.name));
    for (const name of [...r.states.keys()]) if (!names.has(name)) r.states.delete(name);
    const confText = this.render(cfg);
    if (confText === r.confText) return;
    const confPath = join(r.dir, 'keepalived.conf');
    await fs.writeFile(`${confPath}.next`, confText);
    await fs.rename(`${confPath}.next`, confPath);
    r.confText = confText;
    r.process.reload();
    log.info({ vrf: cfg.vrf, instances: cfg.instances.map((i) => i.name) }, 'VRRP reloaded');
  }

  private async stopVrf(vrf: string, r: RunningVrf): Promise<void> {
    this.running.delete(vrf);
    await r.process.stop();
    await r.fifo.close();
    await fs.rm(r.dir, { recursive: true, force: true });
    log.info({ vrf }, 'VRRP stopped');
  }

  private onInstanceEvent(r: RunningVrf, ev: InstanceStateEvent): void {
    if (this.running.get(r.cfg.vrf) !== r) return;
    const known = r.cfg.instances.some((i) => i.name === ev.instance);
    if (!known) {
      log.warn({ vrf: r.cfg.vrf, instance: ev.instance, state: ev.state }, 'state of an unconfigured VRRP instance ignored');
      return;
    }
    r.states.set(ev.instance, ev.state);
    log.info({ vrf: r.cfg.vrf, instance: ev.instance, state: ev.state, priority: ev.priority }, 'VRRP instance state');
    for (const fn of this.listeners) {
      try {
        fn({ vrf: r.cfg.vrf, ...ev });
      } catch (err) {
        log.error({ err: (err as Error).message }, 'VRRP state subscriber failed');
      }
    }
    this.groupsChanged();
  }

  /** Push every controlled group's state from the instance states; release groups no longer controlled. */
  private claimGroups(): void {
    const now = new Set<string>();
    for (const cfg of this.applied) {
      const r = cfg.enabled ? this.running.get(cfg.vrf) : undefined;
      for (const inst of cfg.instances) {
        if (inst.haGroup === undefined) continue;
        now.add(inst.haGroup);
        this.groups.setVrrpState(inst.haGroup, groupStateOf(r?.states.get(inst.name)));
      }
    }
    for (const g of this.claimed) if (!now.has(g)) this.groups.setVrrpState(g, undefined);
    this.claimed = now;
  }

  private groupsChanged(): void {
    this.claimGroups();
    const follow = this.opts.afterGroupChange;
    if (!follow) return;
    this.followChain = this.followChain.then(follow).catch((err: Error) => log.error({ err: err.message }, 'HA group subscribers could not follow VRRP'));
  }

  /** Stop every keepalived, release the groups, remove the state directory if it was ours. */
  async close(): Promise<void> {
    for (const [vrf, r] of [...this.running]) await this.stopVrf(vrf, r);
    this.applied = [];
    this.claimGroups();
    await this.followChain;
    if (this.ownsStateDir && this.stateDir) await fs.rm(this.stateDir, { recursive: true, force: true });
    this.stateDir = undefined;
  }
}
