// The kernel's own view of the VRRP role, as the backup guard reads it (backup-guard.ts): policy
// routing for packets carrying GUARD_MARK.
//  - BACKUP rule (the agent keeps it in the VRF's namespace, both families): `fwmark GUARD_MARK
//    unreachable` at BACKUP_RULE_PREFERENCE: a lookup with the mark finds no route.
//  - MASTER rule and route (keepalived's `virtual_rules` / `virtual_routes` of the instance that
//    drives the VRF's HA group, keepalived.conf): `fwmark GUARD_MARK table GUARD_TABLE` at
//    MASTER_RULE_PREFERENCE, in front of it, and a default route in GUARD_TABLE (both families) via
//    the instance's link, so that the lookup succeeds for any destination (also a NAT pool's
//    address, which the main table does not route before un-NAT). keepalived adds them when the
//    instance becomes master (after the virtual addresses, before its gratuitous ARP) and removes
//    them when it leaves master (before releasing the addresses).
// The guard sets the mark, asks the FIB (`fib daddr . mark oif`) and accepts when a route exists:
// the guard lifts in keepalived's own switch, without waiting for the agent to hear of it.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The skb mark bit the guard sets for its lookup (and clears again on the packets it accepts). */
export const GUARD_MARK = 0x20000000;
export const MASTER_RULE_PREFERENCE = 1000;
export const BACKUP_RULE_PREFERENCE = 1001;
const FWMARK = `0x${GUARD_MARK.toString(16)}/0x${GUARD_MARK.toString(16)}`;
const FAMILIES = ['-4', '-6'] as const;

/** The routing table that holds keepalived's default routes for marked lookups (nothing else uses it). */
export const GUARD_TABLE = 25200;

/** The entries of keepalived's `virtual_rules` block that say "this node is master" to the guard. */
export function masterRuleLines(): string[] {
  return [
    `from all fwmark ${FWMARK} table ${GUARD_TABLE} preference ${MASTER_RULE_PREFERENCE}`,
    `from all fwmark ${FWMARK} table ${GUARD_TABLE} preference ${MASTER_RULE_PREFERENCE} inet6`,
  ];
}

/**
 * The entries of keepalived's `virtual_routes` block: a default route of each family in GUARD_TABLE
 * via `link` (the instance's interface; a route via lo would do for IPv4, but the kernel turns an
 * IPv6 route via lo into a reject route).
 */
export function masterRouteLines(link: string): string[] {
  return [`0.0.0.0/0 dev ${link} table ${GUARD_TABLE}`, `::/0 dev ${link} table ${GUARD_TABLE}`];
}

async function ip(namespace: string | undefined, args: string[]): Promise<string> {
  const full = namespace === undefined ? args : ['-n', namespace, ...args];
  const { stdout } = await run('ip', full, { timeout: 10_000 });
  return stdout;
}

async function rulesAt(namespace: string | undefined, family: string, preference: number): Promise<unknown[]> {
  return JSON.parse((await ip(namespace, ['-j', family, 'rule', 'show', 'pref', String(preference)])) || '[]') as unknown[];
}

/**
 * Puts the BACKUP rule in `namespace` for both families when it is missing (checked first: `ip
 * rule add` would add a duplicate). Throws when it cannot: the guard must then not trust the FIB.
 */
export async function ensureBackupRules(namespace: string | undefined): Promise<void> {
  for (const family of FAMILIES) {
    if ((await rulesAt(namespace, family, BACKUP_RULE_PREFERENCE)).length > 0) continue;
    await ip(namespace, [family, 'rule', 'add', 'pref', String(BACKUP_RULE_PREFERENCE), 'fwmark', FWMARK, 'unreachable']);
  }
}

/** Removes the BACKUP rules (the VRF's dataplane goes away); absent ones count as removed. */
export async function removeBackupRules(namespace: string | undefined): Promise<void> {
  for (const family of FAMILIES) {
    for (let i = 0; i < 4 && (await rulesAt(namespace, family, BACKUP_RULE_PREFERENCE)).length > 0; i++) {
      await ip(namespace, [family, 'rule', 'del', 'pref', String(BACKUP_RULE_PREFERENCE)]);
    }
  }
}

/** Whether a MASTER rule is in `namespace` (either family): what the kernel currently says. */
export async function masterRulePresent(namespace: string | undefined): Promise<boolean> {
  for (const family of FAMILIES) if ((await rulesAt(namespace, family, MASTER_RULE_PREFERENCE)).length > 0) return true;
  return false;
}

/**
 * Removes the MASTER rules a keepalived left behind (SIGKILLed, it removes nothing: its rules and
 * addresses stay until a restarted keepalived clears them as backup): one `ip rule del` per family,
 * in parallel (keepalived adds one per family); an absent rule counts as removed. Returns how many
 * were there.
 */
export async function removeMasterRules(namespace: string | undefined): Promise<number> {
  const results = await Promise.allSettled(FAMILIES.map((family) => ip(namespace, [family, 'rule', 'del', 'pref', String(MASTER_RULE_PREFERENCE)])));
  let removed = 0;
  for (const r of results) {
    if (r.status === 'fulfilled') removed++;
    else if (!/No such file or directory/.test(String((r.reason as { stderr?: string }).stderr ?? r.reason))) throw r.reason as Error;
  }
  return removed;
}
