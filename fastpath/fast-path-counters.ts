// State data of tandem-fast-path-counters: per VRF, the dataplane counters in total and per
// worker. The soft engine keeps every counter live in its workers (reading them never walks a
// conntrack table); the linux engine gives what nftables counts cheaply (firewall and backup
// drops) and names the rest in not-supported rather than showing a made-up zero.
import type { ConfigJson, StateProvider } from '../core/subsystem.js';
import type { DataplaneEngine, TcpState } from './engine.js';
import type { SoftCounters } from './soft/messages.js';
import { SoftEngine } from './soft/soft-engine.js';
import { STATES_PER_PROTO } from './soft/conntrack-table.js';
import type { CounterDetail } from './soft/vrf-dataplane.js';
import { TCP_STATES } from './soft/vrf-dataplane.js';

const MODULE = 'tandem-fast-path-counters';
const PROTOS = ['tcp', 'udp', 'icmp'] as const;

/** What the linux engine supports: nft counters of the firewall and of the backup's drop rule. */
const LINUX_SUPPORTED = ['dropped-firewall', 'dropped-backup'];
const ALL_COUNTERS = ['conntracks', 'synced', 'conntracks-by-state', 'created', 'destroyed', 'dropped-backup', 'dropped-table-full',
  'dropped-firewall', 'dropped-invalid', 'syn-cookies', 'nat-port-blocks-in-use', 'nat-allocation-failures', 'conntrack-events-lost', 'firewall'];

type Json = Record<string, unknown>;

function stateName(proto: typeof PROTOS[number], state: number): string {
  if (proto === 'tcp') return TCP_STATES[state] as TcpState;
  return state === 2 ? 'replied' : 'unreplied';
}

function sumDetails(details: CounterDetail[]): CounterDetail {
  const byState = new Array<number>(4 * STATES_PER_PROTO).fill(0);
  const rules = new Map<string, [number, number]>();
  const firewallDefault = { accepted: 0, dropped: 0 };
  let natBlocksInUse = 0;
  for (const d of details) {
    d.byState.forEach((n, i) => { byState[i] = (byState[i] as number) + n; });
    for (const [name, a, dr] of d.firewallRules) {
      const r = rules.get(name) ?? [0, 0];
      rules.set(name, [r[0] + a, r[1] + dr]);
    }
    firewallDefault.accepted += d.firewallDefault.accepted;
    firewallDefault.dropped += d.firewallDefault.dropped;
    natBlocksInUse += d.natBlocksInUse;
  }
  return { byState, firewallRules: [...rules].map(([n, [a, d]]) => [n, a, d]), firewallDefault, natBlocksInUse };
}

/** The counters grouping of the module as RFC 7951 JSON (uint64 as strings). */
function softCounters(c: SoftCounters, d: CounterDetail): Json {
  const byState: Json[] = [];
  PROTOS.forEach((proto, row) => {
    for (let s = 0; s < STATES_PER_PROTO; s++) {
      const n = d.byState[row * STATES_PER_PROTO + s] ?? 0;
      if (n > 0) byState.push({ protocol: proto, state: stateName(proto, s), count: String(n) });
    }
  });
  const out: Json = {
    conntracks: String(c.conntracks),
    synced: String(c.synced),
    created: String(c.created),
    destroyed: String(c.destroyed),
    'dropped-backup': String(c.dropsBackup),
    'dropped-table-full': String(c.dropsTableFull),
    'dropped-firewall': String(c.dropsFirewall),
    'dropped-invalid': String(c.dropsInvalid),
    'syn-cookies': String(c.synCookies),
    'nat-port-blocks-in-use': String(d.natBlocksInUse),
    'nat-allocation-failures': String(c.natAllocFailures),
    // The soft engine's workers wait for the main thread's ack of every event batch: none is lost.
    'conntrack-events-lost': '0',
    firewall: {
      'default-action': { accepted: String(d.firewallDefault.accepted), dropped: String(d.firewallDefault.dropped) },
      ...(d.firewallRules.length ? { rule: d.firewallRules.map(([name, a, dr]) => ({ name, accepted: String(a), dropped: String(dr) })) } : {}),
    },
  };
  if (byState.length) out['conntracks-by-state'] = byState;
  return out;
}

export class FastPathCountersState implements StateProvider {
  readonly name = 'fast-path-counters';

  constructor(private readonly engine: DataplaneEngine & { vrfNames?(): string[]; refreshCounters?(vrf: string): Promise<unknown> }) {}

  async state(): Promise<ConfigJson> {
    const vrfs: Json[] = [];
    for (const vrf of this.engine.vrfNames?.() ?? []) {
      vrfs.push({ name: vrf, [`${MODULE}:fast-path-counters`]: await this.vrfCounters(vrf) });
    }
    return vrfs.length ? { 'tandem-vrf:vrf': vrfs } : {};
  }

  /** The fast-path-counters container of one VRF. */
  async vrfCounters(vrf: string): Promise<Json> {
    const engine = this.engine;
    if (engine instanceof SoftEngine) {
      const perWorker = await engine.workerCounters(vrf);
      // The total includes the cumulative counters of replaced workers (engine.counters keeps them).
      const total = engine.counters(vrf);
      return {
        engine: 'soft',
        total: softCounters(total, sumDetails(perWorker.map((w) => w.detail))),
        worker: perWorker.map((w) => ({ index: w.worker, ...softCounters(w.counters, w.detail) })),
      };
    }
    const c = engine.refreshCounters ? await engine.refreshCounters(vrf) as ReturnType<DataplaneEngine['counters']> : engine.counters(vrf);
    return {
      engine: engine.kind,
      'not-supported': ALL_COUNTERS.filter((k) => !LINUX_SUPPORTED.includes(k)),
      total: { 'dropped-firewall': String(c.dropsFirewall), 'dropped-backup': String(c.dropsBackup) },
    };
  }
}
