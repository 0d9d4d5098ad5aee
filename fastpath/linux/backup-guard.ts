// The backup guard of a VRF's nftables table (SPEC rule 4): a raw-priority prerouting chain that
// drops every packet not addressed to the node itself, before conntrack sees it, so no traffic
// uses (or refreshes) synced conntracks. A role switch adds or removes only this chain, in one nft
// transaction whose size does not depend on the configuration (a whole-table replace renders and
// loads every rule, and resets the table's counters): the new master forwards as soon as it lands.
import type { HaRole } from '../engine.js';

export const BACKUP_GUARD_CHAIN = 'backup_guard';

/** The chain's lines inside `table inet <table> { ... }` (what renderRuleset puts in a backup's table). */
const HOOK = 'type filter hook prerouting priority raw - 10; policy accept;';

export function backupGuardLines(): string[] {
  return [
    `  chain ${BACKUP_GUARD_CHAIN} {`,
    `    ${HOOK}`,
    '    fib daddr type { local, broadcast, multicast } accept',
    '    counter name backup_drops drop',
    '  }',
  ];
}

/**
 * The nft script that puts an existing table (rendered for the other role) in `role`: a backup
 * gets the guard chain, a master loses it. Adding the chain first makes both forms safe whether
 * or not it is there already.
 */
export function renderRoleSwitch(table: string, role: HaRole): string {
  const lines = [`table inet ${table} {`, `  chain ${BACKUP_GUARD_CHAIN} { ${HOOK} }`, '}', `flush chain inet ${table} ${BACKUP_GUARD_CHAIN}`];
  if (role === 'backup') lines.push(`table inet ${table} {`, ...backupGuardLines(), '}');
  else lines.push(`delete chain inet ${table} ${BACKUP_GUARD_CHAIN}`);
  return `${lines.join('\n')}\n`;
}
