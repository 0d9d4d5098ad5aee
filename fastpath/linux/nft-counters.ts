// The firewall's verdicts on the linux engine, from the named counters of table inet tandem
// (nft-ruleset.ts puts one on every rule and on the default action): one `nft -j list counters`
// per read, whatever the number of rules.
import type { SoftVrfConfig } from '../config/vrf-config.js';
import { DEFAULT_ACCEPT_COUNTER, DEFAULT_DROP_COUNTER, readCounters, ruleCounterName } from './nft-ruleset.js';

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

/** Reads the table's counters in one nft call (all zero when the table is absent). */
export async function readFirewallCounters(namespace: string | undefined, cfg: SoftVrfConfig): Promise<FirewallCounters> {
  return firewallCounters(cfg, await readCounters(namespace));
}
