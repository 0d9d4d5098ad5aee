// Everything sync on one node: one VrfSync per VRF with ha-fp-conntrack, the listeners its peers
// connect to, and the routing of dataplane events. Each VRF's sync follows the VRF's HA role, which
// ha/ decides and hands over through core's VrfRoles. The commit subsystem calls prepareSync /
// applySync with whole configurations; state providers and the RPC read from here.
import { hostname } from 'node:os';
import type { ConntrackEvent, DataplaneEngine, HaRole, L4Proto } from '../fastpath/engine.js';
import { type Clock, RealClock } from '../fastpath/clock.js';
import { logger } from '../core/log.js';
import { ALWAYS_MASTER, type VrfRoles } from '../core/ha-role.js';
import type { ManualSyncResult } from './sync-sender.js';
import { readSyncConfigs, sameConnections, type VrfSyncConfig } from './sync-config.js';
import { SyncListener } from './sync-listener.js';
import { type SyncNotification, type SyncTuning, VrfSync } from './vrf-sync.js';

const log = logger('sync-service');

export interface SyncServiceOptions {
  /** Clock of conntrack time (delays, activity ages); the engine's clock. Default: real time. */
  clock?: Clock;
  /** Clock of network timers (keepalive, reconnect backoff). Default: real time. */
  netClock?: Clock;
  nodeId?: string;
  /** Messages queued per connection before it is marked out of sync (default 65536). */
  queueLimit?: number;
  keepaliveMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Anti-entropy hash ranges per worker (default 64). */
  antiEntropyRanges?: number;
  /** The HA role of each VRF (ha/'s HaService). Default: every VRF master. */
  roles?: VrfRoles;
}

export type ServiceNotification = SyncNotification;

type Json = Record<string, unknown>;

const PROTOS: readonly L4Proto[] = ['tcp', 'udp', 'icmp'];

export class SyncService {
  readonly vrfs = new Map<string, VrfSync>();
  readonly roles: VrfRoles;
  private listeners = new Map<string, SyncListener>();
  private unfollowRoles: () => void;
  private readonly clock: Clock;
  private readonly netClock: Clock;
  private readonly tuning: SyncTuning;
  private sinks = new Set<(n: ServiceNotification) => void>();
  private unsubscribe: () => void;
  private lastConfig: Json = {};

  constructor(
    readonly engine: DataplaneEngine,
    opts: SyncServiceOptions = {},
  ) {
    this.clock = opts.clock ?? new RealClock();
    this.netClock = opts.netClock ?? new RealClock();
    this.tuning = {
      nodeId: opts.nodeId ?? hostname(),
      queueLimit: opts.queueLimit ?? 65536,
      keepaliveMs: opts.keepaliveMs ?? 1000,
      backoffMinMs: opts.backoffMinMs ?? 100,
      backoffMaxMs: opts.backoffMaxMs ?? 5000,
      ...(opts.antiEntropyRanges === undefined ? {} : { antiEntropyRanges: opts.antiEntropyRanges }),
    };
    this.unsubscribe = engine.onEvent((ev: ConntrackEvent) => this.vrfs.get(ev.entry.vrf)?.onEvent(ev));
    this.roles = opts.roles ?? ALWAYS_MASTER;
    // Rule 11: a VRF's sync follows the role its dataplane just took.
    this.unfollowRoles = this.roles.onVrfRole((vrf, role) => this.vrfs.get(vrf)?.setRole(role as HaRole));
  }

  get nodeId(): string {
    return this.tuning.nodeId;
  }

  onNotification(fn: (n: ServiceNotification) => void): () => void {
    this.sinks.add(fn);
    return () => this.sinks.delete(fn);
  }

  private emit(n: ServiceNotification): void {
    for (const fn of this.sinks) fn(n);
  }

  /** Listener sockets bound by prepareSync for the next applySync, by "address|port". */
  private staged = new Map<string, SyncListener>();

  /** "address|port" of every listener a configuration needs. */
  private listenerKeys(wanted: Map<string, VrfSyncConfig>): Map<string, { vrf: string; peer: string }> {
    const out = new Map<string, { vrf: string; peer: string }>();
    for (const cfg of wanted.values()) {
      if (!cfg.enabled) continue;
      for (const p of cfg.peers) if (!out.has(`${p.source}|${p.port}`)) out.set(`${p.source}|${p.port}`, { vrf: cfg.vrf, peer: p.name });
    }
    return out;
  }

  /**
   * Prepare of a commit: bind every listener socket `config` needs that is not open yet, so that a
   * port already taken or a source address that is not local refuses the commit. Throws an Error
   * with a `path` of the peer whose source cannot be bound; binds nothing then.
   */
  async prepareSync(config: Json): Promise<void> {
    await this.abortSync();
    const wanted = readSyncConfigs(config, this.engine.workers);
    const ports = new Set([...this.listeners.values()].map((l) => l.port));
    for (const [key, owner] of this.listenerKeys(wanted)) {
      if (this.listeners.has(key)) continue;
      const [address, port] = key.split('|') as [string, string];
      // One of our own listeners holds this port on another address: it may be closed by this very
      // commit, so the new one can only be bound at apply (and retries there).
      if (ports.has(Number(port))) continue;
      const l = new SyncListener(address, Number(port), this.netClock, this.tuning.keepaliveMs);
      try {
        await l.bind();
      } catch (err) {
        await this.abortSync();
        const e = new Error(`cannot listen for peer ${owner.peer} on ${address} port ${port}: ${(err as Error).message}`) as Error & { path?: string };
        e.path = `/tandem-vrf:vrf[name='${owner.vrf}']/tandem-ha-fp-conntrack:ha-fp-conntrack/peer[name='${owner.peer}']/source`;
        throw e;
      }
      this.staged.set(key, l);
    }
  }

  /** Close what prepareSync bound (the commit was refused). */
  async abortSync(): Promise<void> {
    const staged = [...this.staged.values()];
    this.staged.clear();
    for (const l of staged) await l.close();
  }

  /** Make every VRF's ha-fp-conntrack (and ha-delays) of `config` live. */
  async applySync(config: Json): Promise<void> {
    this.lastConfig = config;
    const wanted = readSyncConfigs(config, this.engine.workers);
    for (const [name, vs] of [...this.vrfs]) {
      const next = wanted.get(name);
      if (next && sameConnections(vs.config, next)) continue;
      await this.removeVrf(name, false);
    }
    for (const [name, cfg] of wanted) {
      const existing = this.vrfs.get(name);
      if (existing) {
        existing.update(cfg);
      } else {
        this.addVrf(cfg);
      }
      this.engine.setFailoverPolicy?.(name, { graceSeconds: this.graceOf(cfg) });
    }
    await this.closeUnusedListeners();
    await this.abortSync(); // staged listeners no VRF took (none, unless the configuration changed since prepare)
    for (const [name, vs] of this.vrfs) vs.setRole(this.roles.roleOf(name) as HaRole);
  }

  private graceOf(cfg: VrfSyncConfig): Partial<Record<L4Proto, number>> {
    const out: Partial<Record<L4Proto, number>> = {};
    for (const p of PROTOS) {
      const g = cfg.delays[p].grace;
      if (g !== undefined) out[p] = g;
    }
    return out;
  }

  private addVrf(cfg: VrfSyncConfig): void {
    const vs = new VrfSync(cfg, this.engine, this.clock, this.netClock, this.tuning, (n) => this.emit(n));
    this.vrfs.set(cfg.vrf, vs);
    if (cfg.enabled) {
      for (const key of new Set(cfg.peers.map((p) => `${p.source}|${p.port}`))) {
        const [address, port] = key.split('|') as [string, string];
        let l = this.listeners.get(key);
        if (!l) {
          l = this.staged.get(key);
          this.staged.delete(key);
          if (!l) {
            l = new SyncListener(address, Number(port), this.netClock, this.tuning.keepaliveMs);
            l.start();
          }
          this.listeners.set(key, l);
        }
        l.attach(cfg.vrf, (hello, remote) => vs.accept(hello, remote), cfg.peers.map((p) => p.address));
      }
    }
    vs.start();
    log.info({ vrf: cfg.vrf, peers: cfg.peers.map((p) => p.name), workers: cfg.workers }, 'ha-fp-conntrack configured');
  }

  /** Stop a VRF's sync; its listeners are closed when no VRF uses them any more (now, or by the caller). */
  private async removeVrf(name: string, closeListeners = true): Promise<void> {
    const vs = this.vrfs.get(name);
    if (!vs) return;
    this.vrfs.delete(name);
    await vs.stop();
    for (const l of this.listeners.values()) l.detach(name);
    if (closeListeners) await this.closeUnusedListeners();
    log.info({ vrf: name }, 'ha-fp-conntrack removed');
  }

  private async closeUnusedListeners(): Promise<void> {
    for (const [key, l] of [...this.listeners]) {
      if (l.attachedCount() === 0) {
        this.listeners.delete(key);
        await l.close();
      }
    }
  }

  /** The ha-fp-conntrack-synchronization RPC (rule 8). */
  manualSync(vrf: string): Promise<ManualSyncResult> {
    const vs = this.vrfs.get(vrf);
    if (!vs) return Promise.reject(new Error(`VRF ${vrf} has no ha-fp-conntrack configured`));
    return vs.manualSync();
  }

  /** Listeners are up and every connection of every VRF is established. */
  ready(): boolean {
    return [...this.listeners.values()].every((l) => l.listening) && [...this.vrfs.values()].every((v) => !v.config.enabled || v.allEstablished());
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.unfollowRoles();
    for (const name of [...this.vrfs.keys()]) await this.removeVrf(name);
    for (const l of this.listeners.values()) await l.close();
    this.listeners.clear();
    await this.abortSync();
  }

  /** The configuration last applied (state data reads VRF names from it). */
  config(): Json {
    return this.lastConfig;
  }
}
