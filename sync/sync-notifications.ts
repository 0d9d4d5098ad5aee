// Sync events as the YANG notifications of tandem-ha-fp-conntrack (RFC 7951 JSON).
import type { ConfigJson } from '../core/subsystem.js';
import type { ServiceNotification } from './sync-service.js';

const HFC = 'tandem-ha-fp-conntrack';

export function toYangNotification(n: ServiceNotification): ConfigJson {
  switch (n.kind) {
    case 'connection-up':
      return { [`${HFC}:sync-connection-up`]: { vrf: n.vrf, peer: n.peer, client: n.client } };
    case 'connection-down':
      return { [`${HFC}:sync-connection-down`]: { vrf: n.vrf, peer: n.peer, client: n.client, reason: n.reason } };
    case 'full-resync-complete':
      return {
        [`${HFC}:full-resync-complete`]: {
          vrf: n.vrf, peer: n.peer, time: n.summary.time, duration: n.summary.duration, count: String(n.summary.count),
        },
      };
    case 'manual-synchronization-complete':
      return {
        [`${HFC}:manual-synchronization-complete`]: {
          vrf: n.vrf, count: String(n.count), duration: n.duration,
          acknowledged: String(n.acknowledged), 'peer-refused': String(n.peerRefused), complete: n.complete,
        },
      };
    case 'peer-configuration-mismatch':
      return {
        [`${HFC}:peer-configuration-mismatch`]: { vrf: n.vrf, peer: n.peer, 'local-fingerprint': n.local, 'peer-fingerprint': n.remote, difference: n.differences },
      };
    case 'divergence-repaired':
      return {
        [`${HFC}:ha-fp-conntrack-divergence-repaired`]: {
          vrf: n.vrf, peer: n.peer, client: n.client, ranges: n.ranges,
          added: String(n.added), updated: String(n.updated), removed: String(n.removed), refused: String(n.refused),
        },
      };
  }
}
