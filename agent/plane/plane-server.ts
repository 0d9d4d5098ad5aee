// The plane side of the bridge: serves the dataplane's commit subsystems, state providers and RPC
// providers to the main thread over a MessagePort, and posts their notifications to it.
import type { MessagePort } from 'node:worker_threads';
import { logger } from '../../core/log.js';
import type { CommitContext, CommitSubsystem, ConfigJson, NotificationSink, RpcProvider, StateProvider } from '../../core/subsystem.js';
import { ConfigReceiver } from './config-shipping.js';
import { fullGc } from '../../core/full-gc.js';
import { getHeapStatistics } from 'node:v8';
import { toWire } from './plane-errors.js';
import { performance } from 'node:perf_hooks';
import type { PhaseMethod, PhaseOutcomeWire, PlaneManifest, PlaneMessage, PlaneRequest, WireCommitContext } from './plane-protocol.js';

const log = logger('plane');

/** What the plane serves (agent/plane/dataplane-parts.ts builds it). */
export interface PlaneParts {
  subsystems: CommitSubsystem[];
  stateProviders: StateProvider[];
  rpcProviders: RpcProvider[];
  attachNotify(sink: NotificationSink): () => void;
  engine: { kind: string; workers: number };
  metrics?: { host: string; port: number };
  close(): Promise<void>;
}

export function manifestOf(parts: PlaneParts): PlaneManifest {
  return {
    subsystems: parts.subsystems.map((s) => ({ name: s.name, owns: [...s.owns], undo: typeof s.undo === 'function' })),
    stateProviders: parts.stateProviders.map((p) => ({ name: p.name, ...(p.paths ? { paths: [...p.paths] } : {}) })),
    rpcProviders: parts.rpcProviders.map((p) => ({ rpcPath: p.rpcPath })),
    engine: { kind: parts.engine.kind, workers: parts.engine.workers },
    ...(parts.metrics ? { metrics: parts.metrics } : {}),
  };
}

export class PlaneServer {
  private readonly configs = new ConfigReceiver();
  private readonly detach: () => void;
  private closing: Promise<void> | undefined;

  /** Starts serving at once and posts the manifest; `onClosed` runs after a close request was answered. */
  constructor(private readonly port: MessagePort, private readonly parts: PlaneParts, private readonly onClosed: () => void = () => {}) {
    this.detach = parts.attachNotify((notification) => this.post({ t: 'notify', notification }));
    port.on('message', (m: PlaneRequest) => void this.handle(m));
    this.post({ t: 'ready', manifest: manifestOf(parts) });
  }

  private post(m: PlaneMessage): void {
    this.port.postMessage(m);
  }

  private context(w: WireCommitContext): CommitContext {
    // Decoded in arrival order, so the version window stays the same as the sender's.
    const { oldConfig, newConfig, ...rest } = w;
    return { ...rest, oldConfig: this.configs.receive(oldConfig), newConfig: this.configs.receive(newConfig) } as CommitContext;
  }

  private async handle(m: PlaneRequest): Promise<void> {
    if (m.t === 'close') {
      await this.close();
      this.post({ t: 'result', id: m.id, value: null });
      this.port.close();
      this.onClosed();
      return;
    }
    let call: () => unknown;
    try {
      call = this.call(m);
    } catch (err) {
      this.post({ t: 'error', id: m.id, error: toWire(err) });
      return;
    }
    try {
      const value = await call();
      this.post({ t: 'result', id: m.id, value: value ?? null });
    } catch (err) {
      this.post({ t: 'error', id: m.id, error: toWire(err) });
    }
  }

  /** The call a request names; its configurations are decoded now, synchronously, in arrival order. */
  private call(m: Exclude<PlaneRequest, { t: 'close' }>): () => unknown {
    switch (m.t) {
      case 'subsystem': {
        const sub = this.parts.subsystems[m.index];
        const ctx = this.context(m.ctx);
        if (!sub) throw new Error(`plane bridge: no subsystem ${m.index}`);
        const fn = sub[m.method] as ((ctx: CommitContext) => unknown) | undefined;
        if (typeof fn !== 'function') throw new Error(`${sub.name}: this subsystem cannot undo an apply`);
        return () => fn.call(sub, ctx);
      }
      case 'phase': {
        const calls = this.phaseCalls(m.calls);
        return () => this.phase(m.method, m.stopOnFailure, calls);
      }
      case 'validate-prepare': {
        const calls = this.phaseCalls(m.calls);
        return async () => {
          const validate = await this.phase('validate', false, calls);
          if (validate.some((o) => 'e' in o || (Array.isArray(o.v) && o.v.length > 0))) return { validate };
          return { validate, prepare: await this.phase('prepare', true, calls) };
        };
      }
      case 'validate-prepare-apply': {
        const calls = this.phaseCalls(m.calls);
        const failed = (outcomes: PhaseOutcomeWire[]): boolean => outcomes.some((o) => 'e' in o || (Array.isArray(o.v) && o.v.length > 0));
        return async () => {
          const validate = await this.phase('validate', false, calls);
          if (failed(validate)) return { validate };
          const prepare = await this.phase('prepare', true, calls);
          if (failed(prepare) || prepare.length < calls.length) return { validate, prepare };
          if (m.progress) this.post({ t: 'progress', id: m.id });
          return { validate, prepare, apply: await this.phase('apply', true, calls) };
        };
      }
      case 'state': {
        const p = this.parts.stateProviders[m.index];
        if (!p) throw new Error(`plane bridge: no state provider ${m.index}`);
        return () => p.state();
      }
      case 'gc':
        return () => {
          const before = getHeapStatistics().total_heap_size;
          fullGc();
          return { heapTotalBefore: before, heapTotalAfter: getHeapStatistics().total_heap_size };
        };
      case 'rpc': {
        const p = this.parts.rpcProviders[m.index];
        if (!p) throw new Error(`plane bridge: no rpc provider ${m.index}`);
        const input: ConfigJson = m.input;
        return () => p.invoke(input);
      }
    }
  }

  /** The subsystems and contexts of a phase request; every context is decoded now, in arrival order, like a single call's. */
  private phaseCalls(calls: { index: number; ctx: WireCommitContext }[]): { sub: CommitSubsystem; ctx: CommitContext }[] {
    return calls.map((c) => {
      const sub = this.parts.subsystems[c.index];
      if (!sub) throw new Error(`plane bridge: no subsystem ${c.index}`);
      return { sub, ctx: this.context(c.ctx) };
    });
  }

  /** A commit phase on several subsystems in order (one round trip instead of one per subsystem). */
  private async phase(method: PhaseMethod, stopOnFailure: boolean, calls: { sub: CommitSubsystem; ctx: CommitContext }[]): Promise<PhaseOutcomeWire[]> {
    const out: PhaseOutcomeWire[] = [];
    for (const { sub, ctx } of calls) {
      const started = performance.now();
      try {
        const v: unknown = await sub[method](ctx);
        out.push({ v: v ?? null, ms: performance.now() - started });
        if (stopOnFailure && Array.isArray(v) && v.length > 0) break;
      } catch (err) {
        out.push({ e: toWire(err), ms: performance.now() - started });
        if (stopOnFailure) break;
      }
    }
    return out;
  }

  /** Detach notifications and close every part (engine, keepalived, sockets). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.detach();
      try {
        await this.parts.close();
      } catch (err) {
        log.error({ err: (err as Error).message }, 'closing the plane failed');
      }
    })();
    return this.closing;
  }
}
