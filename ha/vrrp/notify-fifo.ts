// The notify FIFO of a keepalived: one line per state change, `INSTANCE "name" MASTER 100`.
// The agent creates the FIFO before keepalived starts (so no early line is lost) and holds it open
// read-write: a read-only FIFO would see end-of-file each time keepalived restarts.
import { execFile } from 'node:child_process';
import { constants, openSync, promises as fs } from 'node:fs';
import { Socket } from 'node:net';
import { createInterface, type Interface } from 'node:readline';
import { promisify } from 'node:util';
import { logger } from '../../core/log.js';

const log = logger('vrrp-notify');
const run = promisify(execFile);

/** The VRRP states keepalived reports for an instance. */
export type VrrpState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP' | 'DELETED';

const STATES: ReadonlySet<string> = new Set<VrrpState>(['MASTER', 'BACKUP', 'FAULT', 'STOP', 'DELETED']);

export interface InstanceStateEvent {
  instance: string;
  state: VrrpState;
  priority: number;
}

/** Line types keepalived writes that are not about a VRRP instance; skipped without a warning. */
const OTHER_TYPES = new Set(['GROUP', 'VS', 'RS', 'MASTER_RX_LOWER_PRI']);

const INSTANCE_LINE = /^INSTANCE "([^"]+)" ([A-Z_]+) (\d{1,3})$/;

/**
 * One FIFO line: an InstanceStateEvent, `null` for a well-formed line about something else
 * (a sync group, a virtual server), or an Error saying what is wrong with the line.
 */
export function parseNotifyLine(line: string): InstanceStateEvent | null | Error {
  const text = line.trim();
  const type = text.split(' ', 1)[0] ?? '';
  if (OTHER_TYPES.has(type)) return null;
  const m = INSTANCE_LINE.exec(text);
  if (!m) return new Error(`not a keepalived notify line: ${JSON.stringify(line.slice(0, 200))}`);
  const [, instance, state, prio] = m as unknown as [string, string, string, string];
  if (!STATES.has(state)) return new Error(`unknown VRRP state ${state} for instance ${instance}`);
  const priority = Number(prio);
  if (priority > 255) return new Error(`priority ${priority} out of range for instance ${instance}`);
  return { instance, state: state as VrrpState, priority };
}

export class NotifyFifo {
  private socket?: Socket;
  private lines?: Interface;
  private readonly listeners = new Set<(ev: InstanceStateEvent) => void>();

  constructor(
    readonly path: string,
    private readonly context: Record<string, unknown> = {},
  ) {}

  /** Follow every instance state line; returns an unsubscribe function. */
  onState(fn: (ev: InstanceStateEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Create the FIFO (replacing any file at the path) and start reading it. */
  async open(): Promise<void> {
    if (this.socket) return;
    await fs.rm(this.path, { force: true });
    // Node has no mkfifo(3); coreutils' mkfifo is on every Debian.
    await run('mkfifo', ['-m', '0600', this.path]);
    // A plain descriptor, not a FileHandle (which would close it when garbage-collected); opening
    // a FIFO non-blocking never waits.
    const fd = openSync(this.path, constants.O_RDWR | constants.O_NONBLOCK);
    // The net.Socket owns the descriptor from here (libuv reads the FIFO as a pipe).
    const socket = new Socket({ fd, readable: true, writable: false });
    socket.on('error', (err) => log.error({ ...this.context, fifo: this.path, err: err.message }, 'notify FIFO read failed'));
    this.socket = socket;
    this.lines = createInterface({ input: socket, crlfDelay: Infinity });
    this.lines.on('line', (line) => this.onLine(line));
  }

  private onLine(line: string): void {
    if (line.trim() === '') return;
    const parsed = parseNotifyLine(line);
    if (parsed instanceof Error) {
      log.warn({ ...this.context, fifo: this.path, err: parsed.message }, 'ignored notify FIFO line');
      return;
    }
    if (parsed === null) return;
    log.debug({ ...this.context, ...parsed }, 'VRRP notify');
    for (const fn of this.listeners) {
      try {
        fn(parsed);
      } catch (err) {
        log.error({ ...this.context, err: (err as Error).message }, 'VRRP notify subscriber failed');
      }
    }
  }

  /** Stop reading and remove the FIFO. */
  async close(): Promise<void> {
    this.lines?.close();
    this.socket?.destroy();
    this.lines = undefined;
    this.socket = undefined;
    await fs.rm(this.path, { force: true });
  }
}
