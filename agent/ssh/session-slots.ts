// Who may open one more NETCONF session: at most `maxSessions` in all, at most
// `maxSessionsPerUser` for one ordinary user, and the last `reservedSessions` slots (at most a tenth
// of all) only for
// privileged users (group `admin`, or the recovery user), so that one user holding every session
// cannot lock the administrator out.
import type { UsersFile } from './user-store.js';

export interface SlotLimits {
  maxSessions: number;
  maxSessionsPerUser: number;
  reservedSessions: number;
}

/**
 * A user is privileged when its record has `groups` including 'admin' or `recovery: true`. Read
 * defensively: those fields come from the NACM user model, and a file without them means nobody is.
 */
export function isPrivileged(users: UsersFile, name: string): boolean {
  const rec = users.users[name] as { groups?: unknown; recovery?: unknown } | undefined;
  if (!rec) return false;
  return rec.recovery === true || (Array.isArray(rec.groups) && rec.groups.includes('admin'));
}

/** Why a new session of this user is refused; undefined when it may open. */
export function sessionRefusal(limits: SlotLimits, total: number, ofUser: number, privileged: boolean): string | undefined {
  if (total >= limits.maxSessions) return `session limit (${limits.maxSessions}) reached`;
  if (privileged) return undefined;
  if (ofUser >= limits.maxSessionsPerUser) return `per-user session limit (${limits.maxSessionsPerUser}) reached`;
  const reserved = reservedSlots(limits);
  if (total >= limits.maxSessions - reserved) {
    return `the last ${reserved} of ${limits.maxSessions} sessions are kept for admin and recovery users`;
  }
  return undefined;
}

/** Slots kept for privileged users: reservedSessions, but at most a tenth of maxSessions. */
export function reservedSlots(limits: SlotLimits): number {
  return Math.min(limits.reservedSessions, Math.floor(limits.maxSessions / 10));
}
