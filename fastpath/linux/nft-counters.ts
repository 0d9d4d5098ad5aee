// The firewall's verdicts on the linux engine, from the named counters of table inet tandem
// (nft-ruleset.ts puts one on every rule and on the default action): one netlink dump per read
// (nft-counter-socket.ts), whatever the number of rules.
import type { SoftVrfConfig } from '../config/vrf-config.js';
import { logger } from '../../core/log.js';
import type { NftCounterSocket } from './nft-counter-socket.js';
import { DEFAULT_ACCEPT_COUNTER, DEFAULT_DROP_COUNTER, readCounters, ruleCounterName } from './nft-ruleset.js';

const log = logger('nft-counters');

export interface FirewallCounters {
  /** Per configured rule, in configuration order: [name, accepted, dropped] (new connections). */
  rules: [string, number, number][];
  defaultAction: { accepted: number; dropped: number };
  /** Rules' and default action's drops together (dropped-firewall). */
  dropsFirewall: number;
  /** Invalid packets and mid-stream TCP segments of unknown connections (drop-invalid). */
  dropsInvalid: number;
  /** Packets the backup guard dropped. */
  dropsBackup: number;
}

/** Sorts the table's counters (name -> packets) into the firewall's verdicts for this configuration. */
export function firewallCounters(cfg: SoftVrfConfig, packets: Record<string, number>): FirewallCounters {
  const rules: [string, number, number][] = cfg.firewall.rules.map((r) => {
    const n = packets[ruleCounterName(r.name)] ?? 0;
    return r.action === 'drop' ? [r.name, 0, n] : [r.name, n, 0];
  });
  const defaultAction = { accepted: packets[DEFAULT_ACCEPT_COUNTER] ?? 0, dropped: packets[DEFAULT_DROP_COUNTER] ?? 0 };
  return {
    rules,
    defaultAction,
    dropsFirewall: rules.reduce((sum, r) => sum + r[2], 0) + defaultAction.dropped,
    dropsInvalid: packets.invalid_drops ?? 0,
    dropsBackup: packets.backup_drops ?? 0,
  };
}

/**
 * Reads the table's counters (all zero when the table is absent): one nf_tables netlink dump on
 * the VRF's counter socket, or one `nft -j list counters` when there is no socket or it failed.
 */
export async function readFirewallCounters(namespace: string | undefined, cfg: SoftVrfConfig, socket?: NftCounterSocket): Promise<FirewallCounters> {
  if (socket) {
    try {
      return firewallCounters(cfg, await socket.read());
    } catch (err) {
      log.warn({ namespace, err: (err as Error).message }, 'nf_tables counter dump failed; reading with nft');
    }
  }
  return firewallCounters(cfg, await readCounters(namespace));
}
