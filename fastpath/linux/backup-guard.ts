// The backup guard of a VRF's nftables table (SPEC rule 4): a raw-priority prerouting chain that
// drops every packet not addressed to the node itself, before conntrack sees it, so no traffic
// uses (or refreshes) synced conntracks. A role switch adds or removes only this chain, in one nft
// transaction whose size does not depend on the configuration (a whole-table replace renders and
// loads every rule, and resets the table's counters): the new master forwards as soon as it lands.
//
// The guard follows the kernel's view of the role (kernel-role-rules.ts): it sets GUARD_MARK,
// looks the destination up in the FIB with that mark, and lets the packet pass when a route is
// found, i.e. when keepalived's master rule is in place. keepalived adds that rule in the same
// switch in which it takes the gateway addresses, before its gratuitous ARP: no packet can reach
// a node that holds the gateway and still meet the guard, whenever the agent hears of it. The
// agent's removal of the chain stays as the second lock (and the only one where no keepalived of
// the VRF drives its HA group). Without the agent's BACKUP rule a marked lookup would find the
// ordinary routes: the engine puts that rule in first, and renders the `unconditional` form
// (drop whatever the FIB says) when it could not.
import type { HaRole } from '../engine.js';
import { GUARD_MARK } from './kernel-role-rules.js';

export const BACKUP_GUARD_CHAIN = 'backup_guard';

/** `kernel`: lifted by keepalived's master rule; `unconditional`: only the agent lifts it. */
export type GuardForm = 'kernel' | 'unconditional';

const HOOK = 'type filter hook prerouting priority raw - 10; policy accept;';

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

/** The chain's lines inside `table inet <table> { ... }` (what renderRuleset puts in a backup's table). */
export function backupGuardLines(form: GuardForm = 'kernel'): string[] {
  const kernelRole = form === 'kernel'
    ? [
        `    meta mark set meta mark | ${hex(GUARD_MARK)}`,
        // A route with the mark exists only while keepalived's master rule is there; the mark goes
        // again so that nothing after the guard (routing, the ruleset) sees it.
        `    fib daddr . mark oif != 0 meta mark set meta mark & ${hex(~GUARD_MARK)} accept`,
      ]
    : [];
  return [
    `  chain ${BACKUP_GUARD_CHAIN} {`,
    `    ${HOOK}`,
    '    fib daddr type { local, broadcast, multicast } accept',
    ...kernelRole,
    '    counter name backup_drops drop',
    '  }',
  ];
}

/**
 * The nft script that puts an existing table (rendered for the other role) in `role`: a backup
 * gets the guard chain, a master loses it. Adding the chain first makes both forms safe whether
 * or not it is there already.
 */
export function renderRoleSwitch(table: string, role: HaRole, form: GuardForm = 'kernel'): string {
  const lines = [`table inet ${table} {`, `  chain ${BACKUP_GUARD_CHAIN} { ${HOOK} }`, '}', `flush chain inet ${table} ${BACKUP_GUARD_CHAIN}`];
  if (role === 'backup') lines.push(`table inet ${table} {`, ...backupGuardLines(form), '}');
  else lines.push(`delete chain inet ${table} ${BACKUP_GUARD_CHAIN}`);
  return `${lines.join('\n')}\n`;
}
