// The kernel's drop counter of a conntrack event socket, followed for both event readers (on the
// loop, conntrack-events.ts; in a thread, conntrack-event-thread.ts): each increase is an overrun,
// logged and reported to the caller, which resynchronises from a dump.
import { logger } from '../../core/log.js';

const log = logger('conntrack-events');

export class EventDropCounter {
  private dropped = 0;
  private overrunCount = 0;
  /** Drops of the sockets this counter followed before the current one (a restarted reader opens a new socket). */
  private base = 0;

  constructor(
    private readonly namespace: string | undefined,
    private readonly onOverrun: (dropped: number) => void,
  ) {}

  /** Overruns seen: times the kernel dropped events for this reader. */
  get overruns(): number {
    return this.overrunCount;
  }

  /** Events the kernel dropped for lack of buffer room since the start. */
  get total(): number {
    return this.dropped;
  }

  /** The reader now reads a new socket, whose kernel drop counter starts at 0: the total goes on from here. */
  newSocket(): void {
    this.base = this.dropped;
  }

  /** Takes the counter's current value (receiveDrops of the socket); an increase is reported. */
  update(socketDrops: number): number {
    const drops = this.base + socketDrops;
    if (drops <= this.dropped) return this.dropped;
    const dropped = drops - this.dropped;
    this.dropped = drops;
    this.overrunCount++;
    log.warn({ namespace: this.namespace, dropped, total: drops }, 'conntrack events dropped (receive buffer overrun)');
    try {
      this.onOverrun(dropped);
    } catch (err) {
      log.error({ err: String(err) }, 'overrun handler failed');
    }
    return this.dropped;
  }
}
