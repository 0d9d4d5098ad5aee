// State data of tandem-fast-path-counters: per VRF, the dataplane counters in total and per
// worker. The soft engine keeps every counter live in its workers (reading them never walks a
// conntrack table); the linux engine keeps its conntrack counts live from the conntrack events
// (conntrack-live-counts.ts), reads the firewall's per-rule counters from nftables (one nft call),
// and names what the kernel does not count in not-supported rather than showing a made-up zero.
import type { ConfigJson, StateProvider } from '../core/subsystem.js';
import type { DataplaneEngine, TcpState } from './engine.js';
import type { SoftCounters } from './soft/messages.js';
import type { LinuxCounterDetail } from './linux/linux-engine.js';
import { SoftEngine } from './soft/soft-engine.js';
import { STATES_PER_PROTO } from './soft/conntrack-table.js';
import type { CounterDetail } from './soft/vrf-dataplane.js';
import { TCP_STATES } from './soft/vrf-dataplane.js';

const MODULE = 'tandem-fast-path-counters';
const PROTOS = ['tcp', 'udp', 'icmp'] as const;

/**
 * What the linux engine does not count: SYN cookies are the kernel's (not per VRF table), port
 * blocks are fixed per subscriber (nftables maps, nothing is allocated), and a SNAT that finds no
 * free port in the block is not counted by nftables.
 */
const LINUX_NOT_SUPPORTED = ['syn-cookies', 'nat-port-blocks-in-use', 'nat-allocation-failures'];

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
    'conntrack-event-reader-restarts': '0',
    firewall: {
      'default-action': { accepted: String(d.firewallDefault.accepted), dropped: String(d.firewallDefault.dropped) },
      ...(d.firewallRules.length ? { rule: d.firewallRules.map(([name, a, dr]) => ({ name, accepted: String(a), dropped: String(dr) })) } : {}),
    },
  };
  if (byState.length) out['conntracks-by-state'] = byState;
  return out;
}

/** The linux engine's counters grouping: the same leaves as the soft engine's, minus LINUX_NOT_SUPPORTED. */
function linuxCounters(d: LinuxCounterDetail): Json {
  const all = softCounters({ ...d.counters, dropsInvalid: d.firewall.dropsInvalid, synCookies: 0 }, {
    byState: d.byState,
    // Listed once matched at least once, as on the soft engine.
    firewallRules: d.firewall.rules.filter(([, a, dr]) => a + dr > 0),
    firewallDefault: d.firewall.defaultAction,
    natBlocksInUse: 0,
  });
  for (const k of LINUX_NOT_SUPPORTED) delete all[k];
  all['conntrack-events-lost'] = String(d.eventsLost);
  all['conntrack-event-reader-restarts'] = String(d.eventReaderRestarts);
  return all;
}

export class FastPathCountersState implements StateProvider {
  readonly name = 'fast-path-counters';

  // A <get> whose filter selects other state (ha-fp-conntrack, tcpstat) does not run the nft read.
  readonly paths = ['/tandem-vrf:vrf/tandem-fast-path-counters:fast-path-counters'];

  constructor(private readonly engine: DataplaneEngine & { vrfNames?(): string[]; counterDetail?(vrf: string): Promise<LinuxCounterDetail> }) {}

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
    if (!engine.counterDetail) throw new Error(`the ${engine.kind} engine keeps no fast-path counters`);
    return { engine: engine.kind, 'not-supported': LINUX_NOT_SUPPORTED, total: linuxCounters(await engine.counterDetail(vrf)) };
  }
}
