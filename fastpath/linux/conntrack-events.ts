// Conntrack events (new, update, destroy) of one namespace, from the ctnetlink multicast groups, on
// a socket of their own with a large receive buffer and reliable delivery (NETLINK_BROADCAST_ERROR).
// Overruns cannot be raised as socket errors (see netlink-socket-options.ts), so the kernel's drop
// counter is polled: any increase is reported, and the caller resynchronises from a dump.
import type { RawNetlinkSocket } from 'netlink';
import { logger } from '../../core/log.js';
import {
  NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, UnsupportedProtocolError, type ConntrackNotification,
} from './ctnetlink-codec.js';
import { forEachEvent } from './conntrack-event-decoder.js';
import { openNetfilterSocket } from './conntrack-netlink.js';
import { NETLINK_BROADCAST_ERROR, receiveDrops, setNetlinkFlag } from './netlink-socket-options.js';
import { EventDropCounter } from './event-drop-counter.js';
import { guardNetlinkCallback } from './netlink-callback-guard.js';

const log = logger('conntrack-events');

// Room for ~200,000 events (the kernel charges about 1 KB each); memory is used only while events wait.
const DEFAULT_RECEIVE_BUFFER = 256 << 20;
const DROP_POLL_MS = 100;

export interface ConntrackEventStreamOptions {
  /** `ip netns` name; undefined: the agent's own namespace. */
  namespace?: string;
  receiveBufferBytes?: number;
}

export class ConntrackEventStream {
  private readonly dropCounter: EventDropCounter;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly socket: RawNetlinkSocket,
    private readonly fd: number,
    readonly namespace: string | undefined,
    onOverrun: (dropped: number) => void,
  ) {
    this.dropCounter = new EventDropCounter(namespace, onOverrun);
    this.timer = setInterval(() => this.checkDrops(), DROP_POLL_MS);
    this.timer.unref();
  }

  /** Overruns seen: times the kernel dropped events for this reader (resynchronise from a dump). */
  get overruns(): number {
    return this.dropCounter.overruns;
  }

  /** Events the kernel dropped for lack of buffer room since the start. */
  get droppedEvents(): number {
    return this.dropCounter.total;
  }

  /** Subscribes; every event after this returns is reported (or counted as dropped). */
  static start(
    listener: (n: ConntrackNotification) => void,
    onOverrun: (dropped: number) => void,
    options: ConntrackEventStreamOptions = {},
  ): ConntrackEventStream {
    const { socket, fd } = openNetfilterSocket(options.namespace, options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER);
    try {
      setNetlinkFlag(fd, NETLINK_BROADCAST_ERROR);
      for (const group of [NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY]) socket.addMembership(group);
    } catch (err) {
      socket.close();
      throw err;
    }
    const stream = new ConntrackEventStream(socket, fd, options.namespace, onOverrun);
    const notHandled = (err: unknown): void => {
      if (!(err instanceof UnsupportedProtocolError)) log.error({ err: String(err) }, 'conntrack event not handled');
    };
    // Thrown errors must not reach the addon's native callback (it would abort the process). A
    // datagram not handled is an event lost: reported as such (the engine repairs from a dump).
    socket.on('message', guardNetlinkCallback('conntrack-events', (datagram: Buffer) => {
      // Decoded at offsets of the datagram (conntrack-event-decoder.ts): this is the hot path of a burst.
      forEachEvent(datagram, (event) => {
        try {
          listener(event);
        } catch (err) {
          notHandled(err);
        }
      }, notHandled);
    }, () => onOverrun(1)));
    socket.on('error', guardNetlinkCallback('conntrack-events', (err: Error) => {
      log.error({ err: err.message, namespace: options.namespace }, 'conntrack event socket error');
    }, () => undefined));
    return stream;
  }

  /** Reads the kernel's drop counter; reports an overrun when it grew. Also called by the poll timer. */
  checkDrops(): number {
    if (this.closed) return this.dropCounter.total;
    return this.dropCounter.update(receiveDrops(this.fd));
  }


  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.socket.close();
  }
}
