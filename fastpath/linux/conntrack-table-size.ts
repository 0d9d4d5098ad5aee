// The size of the kernel's conntrack table, from system/fast-path/limits/conntrack/max. The table
// (nf_conntrack_max, and the hash buckets of nf_conntrack's hashsize) is one for the whole host:
// only a process in the host's network namespace may set it. When the agent runs there and a VRF's
// dataplane is in that same namespace, the agent owns the table and sizes it
// (buckets = max / 4, a power of two: with the default buckets a table of 10^6 fills at half the
// rate); elsewhere (the agent inside a namespace, as in the lab) it says what the host should set.
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { logger } from '../../core/log.js';

const log = logger('linux-engine');

const MAX_FILE = '/proc/sys/net/netfilter/nf_conntrack_max';
const BUCKETS_FILE = '/sys/module/nf_conntrack/parameters/hashsize';

export interface TableSize {
  max: number;
  buckets: number;
}

/** The table size for `max` conntracks: buckets a power of two, at least max / 4. */
export function tableSizeFor(max: number): TableSize {
  return { max, buckets: 2 ** Math.ceil(Math.log2(Math.max(1024, max / 4))) };
}

/**
 * Whether this process may size the host's table: the kernel shows nf_conntrack_max read-only in
 * every network namespace but the host's, so writability is the test (PID 1's namespace may not be
 * readable inside a container).
 */
export function inHostNetworkNamespace(): boolean {
  try {
    accessSync(MAX_FILE, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function readNumber(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/**
 * Sizes the host's table for `max` where the agent owns it: sets nf_conntrack_max, and raises the
 * buckets (never lowers them: a rehash to fewer buckets only slows lookups). Returns what holds.
 */
export function applyTableSize(max: number): { applied: boolean; size: TableSize; current: Partial<TableSize> } {
  const size = tableSizeFor(max);
  const current = { max: readNumber(MAX_FILE), buckets: readNumber(BUCKETS_FILE) };
  if (!inHostNetworkNamespace()) {
    if (current.max !== undefined && current.max < max) {
      log.warn({ configured: max, host: current.max, set: `sysctl -w net.netfilter.nf_conntrack_max=${max}; echo ${size.buckets} > ${BUCKETS_FILE}` },
        'the host conntrack table is smaller than limits/conntrack/max and the agent is not in the host namespace to size it');
    }
    return { applied: false, size, current };
  }
  try {
    if (current.max !== max) writeFileSync(MAX_FILE, String(max));
    if (current.buckets === undefined || current.buckets < size.buckets) writeFileSync(BUCKETS_FILE, String(size.buckets));
  } catch (err) {
    log.warn({ configured: max, err: (err as Error).message }, 'cannot size the host conntrack table');
    return { applied: false, size, current };
  }
  log.info({ max, buckets: Math.max(size.buckets, current.buckets ?? 0) }, 'host conntrack table sized');
  return { applied: true, size, current: { max: readNumber(MAX_FILE), buckets: readNumber(BUCKETS_FILE) } };
}
