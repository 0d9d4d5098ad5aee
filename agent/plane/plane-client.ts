// The main-thread side of the bridge: CommitSubsystem, StateProvider and RpcProvider proxies whose
// calls run in the plane, with errors carried back in their class (plane-errors.ts) and
// configurations shipped once per version (config-shipping.ts).
import type { MessagePort } from 'node:worker_threads';
import type { CommitContext, CommitSubsystem, ConfigJson, NotificationSink, RpcProvider, StateProvider, SubsystemError } from '../../core/subsystem.js';
import { ConfigSender } from './config-shipping.js';
import { fromWire } from './plane-errors.js';
import type { PhaseOutcomeWire, PlaneManifest, PlaneMessage, PlaneRequest, SubsystemMethod, WireCommitContext } from './plane-protocol.js';
import type { BatchableSubsystem, PhaseBatch, PhaseOutcome } from '../transaction/phase-batch.js';

type Pending = { resolve(v: unknown): void; reject(e: Error): void; progress?: () => void };
type RequestBody = PlaneRequest extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never;

function fromWireOutcome(o: PhaseOutcomeWire): PhaseOutcome {
  return 'e' in o ? { error: fromWire(o.e), ms: o.ms } : { value: o.v, ms: o.ms };
}

export class PlaneClient {
  readonly subsystems: CommitSubsystem[];
  readonly stateProviders: StateProvider[];
  readonly rpcProviders: RpcProvider[];
  private readonly configs = new ConfigSender();
  private readonly pending = new Map<number, Pending>();
  private readonly sinks = new Set<NotificationSink>();
  private nextId = 1;
  private gone: Error | undefined;
  /** Index in the plane of each subsystem proxy. */
  private readonly indexOf = new Map<CommitSubsystem, number>();
  /** The commit transaction runs a phase of all the plane's subsystems in one round trip. */
  private readonly batch: PhaseBatch = {
    run: async (method, calls, stopOnFailure) => {
      const outcomes = await this.request({ t: 'phase', method, stopOnFailure, calls: this.wireCalls(calls) }) as PhaseOutcomeWire[];
      return outcomes.map(fromWireOutcome);
    },
    validateThenPrepare: async (calls) => {
      const r = await this.request({ t: 'validate-prepare', calls: this.wireCalls(calls) }) as { validate: PhaseOutcomeWire[]; prepare?: PhaseOutcomeWire[] };
      return { validate: r.validate.map(fromWireOutcome), ...(r.prepare ? { prepare: r.prepare.map(fromWireOutcome) } : {}) };
    },
    validatePrepareApply: async (calls, prepared) => {
      const r = await this.request({ t: 'validate-prepare-apply', calls: this.wireCalls(calls), progress: !!prepared }, prepared) as
        { validate: PhaseOutcomeWire[]; prepare?: PhaseOutcomeWire[]; apply?: PhaseOutcomeWire[] };
      return {
        validate: r.validate.map(fromWireOutcome),
        ...(r.prepare ? { prepare: r.prepare.map(fromWireOutcome) } : {}),
        ...(r.apply ? { apply: r.apply.map(fromWireOutcome) } : {}),
      };
    },
  };

  private wireCalls(calls: { sub: CommitSubsystem; ctx: CommitContext }[]): { index: number; ctx: WireCommitContext }[] {
    return calls.map(({ sub, ctx }) => {
      const index = this.indexOf.get(sub);
      if (index === undefined) throw new Error(`plane bridge: ${sub.name} is not a subsystem of this plane`);
      return { index, ctx: this.wireContext(ctx) };
    });
  }

  constructor(private readonly port: MessagePort, readonly manifest: PlaneManifest) {
    port.on('message', (m: PlaneMessage) => this.receive(m));
    this.subsystems = manifest.subsystems.map((s, index) => this.subsystem(s, index));
    this.stateProviders = manifest.stateProviders.map((p, index) => ({
      name: p.name,
      ...(p.paths ? { paths: p.paths } : {}),
      state: () => this.request({ t: 'state', index }) as Promise<ConfigJson>,
    }));
    this.rpcProviders = manifest.rpcProviders.map((p, index) => ({
      rpcPath: p.rpcPath,
      invoke: (input: ConfigJson) => this.request({ t: 'rpc', index, input }) as Promise<ConfigJson>,
    }));
  }

  /** Configurations cloned and named by reference so far (see ConfigSender). */
  get shippingStats(): ConfigSender['stats'] {
    return this.configs.stats;
  }

  /** Notifications the plane raises go to `sink`; returns a detach function. */
  attachNotify(sink: NotificationSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  /** A full GC of the plane's isolate; its heap size before and after. */
  collectGarbage(): Promise<{ heapTotalBefore: number; heapTotalAfter: number }> {
    return this.request({ t: 'gc' }) as Promise<{ heapTotalBefore: number; heapTotalAfter: number }>;
  }

  /** Every call in flight and every later one fails with `err` (the plane ended). */
  fail(err: Error): void {
    this.gone ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Ask the plane to close its parts; resolves when it has. */
  async close(): Promise<void> {
    if (this.gone) return;
    await this.request({ t: 'close' });
    this.fail(new Error('the dataplane plane is closed'));
  }

  private subsystem(s: PlaneManifest['subsystems'][number], index: number): CommitSubsystem {
    const call = (method: SubsystemMethod, ctx: CommitContext) => this.request({ t: 'subsystem', index, method, ctx: this.wireContext(ctx) });
    const proxy: BatchableSubsystem = {
      name: s.name,
      owns: s.owns,
      batch: this.batch,
      validate: (ctx) => call('validate', ctx) as Promise<SubsystemError[]>,
      prepare: (ctx) => call('prepare', ctx) as Promise<SubsystemError[]>,
      apply: async (ctx) => { await call('apply', ctx); },
      abort: async (ctx) => { await call('abort', ctx); },
      ...(s.undo ? { undo: async (ctx: CommitContext) => { await call('undo', ctx); } } : {}),
    };
    this.indexOf.set(proxy, index);
    return proxy;
  }

  private wireContext(ctx: CommitContext): WireCommitContext {
    const { oldConfig, newConfig, ...rest } = ctx;
    // Shipped in posting order: the plane decodes in arrival order (same version window).
    const o = this.configs.ship(oldConfig);
    const n = this.configs.ship(newConfig);
    return { ...rest, oldConfig: o, newConfig: n };
  }

  /** `progress` runs when the plane posts that the request passed a step (validate-prepare-apply). */
  private request(body: RequestBody, progress?: () => void): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...(progress ? { progress } : {}) });
      try {
        this.port.postMessage({ ...body, id } as PlaneRequest);
      } catch (err) {
        // Not posted (data that cannot be cloned): the plane did not see the versions shipped for it.
        this.configs.reset();
        this.pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  private receive(m: PlaneMessage): void {
    switch (m.t) {
      case 'result':
      case 'error': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.t === 'result') p.resolve(m.value);
        else p.reject(fromWire(m.error));
        return;
      }
      case 'progress':
        this.pending.get(m.id)?.progress?.();
        return;
      case 'notify':
        for (const s of this.sinks) s(m.notification);
        return;
      default:
        return;
    }
  }
}
