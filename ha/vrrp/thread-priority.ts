// The agent thread that reacts to keepalived runs at a raised CPU priority while VRRP runs.
// keepalived moves the gateway address (and sends its gratuitous ARP) before it writes the notify
// FIFO; until this thread reads the FIFO and removes the backup guard, the new master drops the
// traffic that now reaches it (`backup_drops`). Under load that wait is the thread waiting for a
// CPU: in the takeover benchmark at load 15-18 the guard dropped 9,924-33,345 packets per takeover
// at nice 0 and 1,379 at nice -10 (docs/linux-engine.md § Takeover). keepalived itself runs
// real-time; this thread only needs to win against ordinary processes and ksoftirqd, so a nice
// value, not a real-time class (a JS thread busy in a commit must not starve the host).
import { getPriority, setPriority } from 'node:os';
import { logger } from '../../core/log.js';

const log = logger('vrrp');

/** The nice value the agent's VRRP thread runs at (the host's other processes: 0). */
export const VRRP_THREAD_NICE = -10;

/**
 * Sets the nice value of the calling thread only (Linux keeps it per thread: setpriority of
 * "process 0" is the caller), never raising a value already lower. Returns the value in effect;
 * a refusal (no CAP_SYS_NICE) is logged and leaves it as it was.
 */
export function raiseThreadPriority(nice: number): number {
  const before = getPriority();
  if (before <= nice) return before;
  try {
    setPriority(nice);
    log.info({ nice, before }, 'VRRP thread priority raised: it removes the backup guard when keepalived switches');
    return nice;
  } catch (err) {
    log.warn({ nice, err: (err as Error).message }, 'cannot raise the VRRP thread priority: under load the switch to master may wait for a CPU');
    return before;
  }
}
