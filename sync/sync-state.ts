// State data of sync (RFC 7951 JSON; uint64 counters and gauges are strings): per VRF the peers with one client per worker, the local node, synced/pending counts, the last
// full resync, and whether each undefined-grace-period has an effect.
import type { ConfigJson, StateProvider } from '../core/subsystem.js';
import type { L4Proto } from '../fastpath/engine.js';
import type { SyncService } from './sync-service.js';
import type { VrfSync } from './vrf-sync.js';

type Json = Record<string, unknown>;
const PROTOS: readonly L4Proto[] = ['tcp', 'udp', 'icmp'];

function haDelaysState(vs: VrfSync): Json {
  const out: Json = {};
  const t = vs.config.timeouts;
  for (const p of PROTOS) {
    const grace = vs.config.delays[p].grace;
    const established = p === 'tcp' ? t.tcpEstablished : p === 'udp' ? t.udp : t.icmp;
    if (grace === undefined) {
      out[p] = { 'grace-period-status': 'not set: unused conntracks live their whole current timeout after a failover' };
      continue;
    }
    const effective = grace <= established;
    out[p] = {
      'undefined-grace-period-effective': effective,
      'grace-period-status': effective
        ? `effective: unused conntracks may be dropped from ${grace} s after a failover`
        : `no effect: ${grace} s is above the ${p} established timeout (${established} s)`,
    };
  }
  return out;
}

function vrfState(vs: VrfSync): Json {
  const clients = vs.clientStats();
  const ha: Json = {
    peer: vs.peers.map((p) => ({
      name: p.name,
      client: clients.filter((c) => c.peer === p.name).map((c) => ({
        name: c.client,
        statistics: {
          transmit: String(c.stats.transmit),
          'transmit-error': String(c.stats.transmitError),
          'build-error': String(c.stats.buildError),
        },
        'connection-status': c.status,
      })),
      'config-fingerprint': p.fingerprint,
      ...(p.differences.length ? { 'config-difference': p.differences } : {}),
    })),
    'local-node': {
      ...(vs.config.peers[0] ? { address: vs.config.peers[0].source } : {}),
      statistics: { receive: String(vs.receive), 'receive-error': String(vs.receiveError) },
    },
    conntracks: {
      synced: String(vs.syncedCount()),
      pending: String(vs.pendingCount()),
      'in-flight': String(vs.inFlightCount()),
      'peer-refused': String(vs.peerRefusedCount()),
      'events-lost': String(vs.eventsLost),
      'event-loss-resyncs': String(vs.eventLossResyncs),
      'delta-resyncs': String(vs.deltaResyncs),
    },
    'anti-entropy': vs.antiEntropyState(),
  };
  if (vs.lastFullResync) {
    ha['last-full-resync'] = {
      time: vs.lastFullResync.time,
      duration: vs.lastFullResync.duration,
      count: String(vs.lastFullResync.count),
    };
  }
  return {
    name: vs.vrf,
    'tandem-ha-fp-conntrack:ha-fp-conntrack': ha,
    'tandem-conntrack:network-stack': { 'fast-path': { conntrack: { 'ha-delays': haDelaysState(vs) } } },
  };
}

export class SyncStateProvider implements StateProvider {
  readonly name = 'sync';
  readonly paths = [
    '/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack',
    '/tandem-vrf:vrf/tandem-conntrack:network-stack/fast-path/conntrack/ha-delays',
  ];

  constructor(private readonly service: SyncService) {}

  state(): ConfigJson {
    const out: ConfigJson = {};
    const vrfs = [...this.service.vrfs.values()].map(vrfState);
    if (vrfs.length > 0) out['tandem-vrf:vrf'] = vrfs;
    return out;
  }
}
