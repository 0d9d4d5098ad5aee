// ctnetlink access to one network namespace's conntrack table: dump, and create / update / delete
// in batches (many messages per datagram, one acknowledgement per datagram). Events are read by
// conntrack-events.ts. At most DATAGRAMS_IN_FLIGHT datagrams are unacknowledged at a time, so the
// kernel's answers (acks and per-message errors) always fit the receive buffer: an overrun there
// would lose answers (and the `netlink` addon does not survive it, see conntrack-events.ts).
import { constants as osConstants } from 'node:os';
import { threadId } from 'node:worker_threads';
import { RawNetlinkSocket } from 'netlink';
import { guardNetlinkCallback } from './netlink-callback-guard.js';
import type { FlowTuple } from '../engine.js';
import { logger } from '../../core/log.js';
import {
  NETLINK_NETFILTER, NLMSG_DONE, NLMSG_ERROR,
  NLMSG_OVERRUN, NLM_F_ACK, MessageBuilder, UnsupportedProtocolError, decodeError,
  encodeDumpRequest, splitMessages, writeCreate, writeDelete, writeUpdate,
  type ConntrackWrite, type KernelConntrack, type NetlinkMessage,
} from './ctnetlink-codec.js';
import { inNamespace } from './network-namespace.js';
import { NETLINK_NO_ENOBUFS, findNetlinkFds, forceReceiveBuffer, receiveDrops, setNetlinkFlag } from './netlink-socket-options.js';
import { UpsertOrder, upsertConntracks, type UpsertResult } from './conntrack-upsert.js';
import { decodeConntrackAt } from './conntrack-event-decoder.js';
import { BatchPipe } from './batch-pipe.js';

const log = logger('conntrack-netlink');

const ENOENT = 2;
/** A datagram carries at most this many messages (and gets one acknowledgement). */
const MESSAGES_PER_DATAGRAM = 256;
/** Datagrams sent before waiting for the oldest one's acknowledgement. */
const DATAGRAMS_IN_FLIGHT = 4;
const COMMAND_RECEIVE_BUFFER = 8 << 20;
/**
 * Bytes read per datagram, without peeking at its size first. The kernel sizes a dump's datagrams
 * after the reader's buffer (netlink_recvmsg's max_recvmsg_len, capped just below 32 KiB): peeking
 * read each 1-byte, so the dump came in ~4 KiB datagrams (6,667 for 10^5 conntracks, two system
 * calls each); with 32 KiB, 741. Acks and errors are far smaller.
 */
const READ_BUFFER = 32 << 10;
const REQUEST_TIMEOUT_MS = 30_000;

export interface ConntrackNetlinkOptions {
  /** `ip netns` name of the namespace whose table to use; undefined: the agent's own. */
  namespace?: string;
}

export interface BatchResult {
  /** Messages the kernel accepted. */
  written: number;
  /** Refused messages: index into the input and the errno. */
  failures: { index: number; errno: number }[];
}

interface PendingRequest {
  firstSeq: number;
  lastSeq: number;
  failures: { index: number; errno: number }[];
  onData?: (msg: NetlinkMessage) => void;
  /** A dump read at offsets of the datagram (no message object): each conntrack message's payload. */
  onRaw?: (buf: Buffer, from: number, to: number) => void;
  done: (err?: Error) => void;
  /** Restarted by every answer: a dump of 10^6 conntracks takes longer than the timeout, but never pauses that long. */
  timer?: NodeJS.Timeout;
}

/**
 * A NETLINK_NETFILTER socket created inside `namespace`, with NETLINK_NO_ENOBUFS (an overrun is
 * counted, never raised as a socket error) and a forced receive buffer of `receiveBuffer` bytes.
 */
export function openNetfilterSocket(
  namespace: string | undefined, receiveBuffer: number, readBuffer?: number,
): { socket: RawNetlinkSocket; fd: number } {
  return inNamespace(namespace, () => {
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      let socket: RawNetlinkSocket;
      try {
        socket = new RawNetlinkSocket(NETLINK_NETFILTER, {
          recvBufferSize: 1 << 20, sendBufferSize: 4 << 20, ...(attempt > 0 ? { localPort: candidatePort(attempt) } : {}),
          ...(readBuffer ? { messagePeeking: false, msgBufferSize: readBuffer } : {}),
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).errno === osConstants.errno.EADDRINUSE) continue; // taken in this namespace
        throw err;
      }
      try {
        // The fd is found by port: another socket of the process (another namespace or thread) on the
        // same port would get our options, and ours would keep a small buffer that reports overruns as
        // socket errors (the addon aborts the process on them). Unique at this moment, it is ours.
        const fds = findNetlinkFds(NETLINK_NETFILTER, socket.address().port);
        if (fds.length !== 1) {
          socket.close();
          continue;
        }
        const fd = fds[0] as number;
        setNetlinkFlag(fd, NETLINK_NO_ENOBUFS);
        forceReceiveBuffer(fd, receiveBuffer);
        return { socket, fd };
      } catch (err) {
        socket.close();
        throw err;
      }
    }
    throw new Error(`no netlink port of this process's own found in ${PORT_ATTEMPTS} attempts`);
  });
}

const PORT_ATTEMPTS = 64;

/**
 * A port to bind explicitly when the automatic one is shared: the netlink module's scheme (offset
 * in the high bits, pid in the low 22), the offset spread by thread so threads that start together
 * do not keep meeting on the same one.
 */
function candidatePort(attempt: number): number {
  const offset = 32 + ((threadId * 131 + attempt * 17) % 480);
  return (offset << 22) | (process.pid & 0x3fffff);
}

export class ConntrackNetlink {
  private readonly socket: RawNetlinkSocket;
  private readonly fd: number;
  private seq = 1;
  /** The dump in progress (dump() runs one at a time). */
  private dumping: Promise<void> = Promise.resolve();
  private readonly pending: PendingRequest[] = [];
  private closed = false;
  /** Creates or updates first, as the last upserts went (conntrack-upsert.ts). */
  private readonly order = new UpsertOrder();

  constructor(readonly options: ConntrackNetlinkOptions = {}) {
    ({ socket: this.socket, fd: this.fd } = openNetfilterSocket(options.namespace, COMMAND_RECEIVE_BUFFER, READ_BUFFER));
    // Read once: the engine compares it with every conntrack event's port id, and address() is a native call.
    this.port = this.socket.address().port;
    // A throw must not reach the addon (it aborts the process): the request the datagram answers fails.
    this.socket.on('message', guardNetlinkCallback('ctnetlink', (datagram: Buffer) => this.dispatch(datagram), (err, datagram) => this.failFor(datagram, err)));
    this.socket.on('truncatedMessage', guardNetlinkCallback('ctnetlink', (_datagram: Buffer, rinfo: { truncated?: number }) => {
      // Never the case for ctnetlink's answers (below READ_BUFFER); if it were, say so rather than lose a part.
      log.error({ size: rinfo.truncated, readBuffer: READ_BUFFER }, 'netlink datagram larger than the read buffer: requests in progress fail');
      this.failAll(new Error(`netlink datagram of ${rinfo.truncated ?? '?'} bytes truncated to ${READ_BUFFER}`));
    }, (err) => this.failAll(err)));
    this.socket.on('error', guardNetlinkCallback('ctnetlink', (err: Error) => this.failAll(new Error(`ctnetlink socket error: ${err.message}`)), (err) => this.failAll(err)));
  }

  /** Netlink port id of the command socket (events caused by its requests carry it); fixed once bound. */
  readonly port: number;

  get namespace(): string | undefined {
    return this.options.namespace;
  }

  /** An answer could not be handled: the request it belongs to (by the datagram's sequence number) fails. */
  private failFor(datagram: Buffer, err: Error): void {
    const failure = new Error(`ctnetlink answer not handled: ${err.message}`);
    if (datagram.length < 16) return this.failAll(failure);
    const seq = datagram.readUInt32LE(8);
    const index = this.pending.findIndex((p) => seq >= p.firstSeq && seq <= p.lastSeq);
    if (index >= 0) this.finish(index, failure);
    else log.error({ seq, err: err.message }, 'ctnetlink answer not handled (no request waits for it)');
  }

  private dispatch(datagram: Buffer): void {
    if (datagram.length >= 16) {
      const seq = datagram.readUInt32LE(8);
      const index = this.pending.findIndex((p) => p.onRaw !== undefined && seq >= p.firstSeq && seq <= p.lastSeq);
      if (index >= 0) {
        this.dispatchRaw(datagram, index);
        return;
      }
    }
    let messages: NetlinkMessage[];
    try {
      messages = splitMessages(datagram);
    } catch (err) {
      log.error({ err: String(err) }, 'dropping a malformed netlink datagram');
      return;
    }
    for (const msg of messages) {
      const index = this.pending.findIndex((p) => msg.seq >= p.firstSeq && msg.seq <= p.lastSeq);
      if (index < 0) continue; // an answer to a request that already timed out
      const request = this.pending[index];
      if (msg.type === NLMSG_ERROR) {
        const { errno } = decodeError(msg);
        if (errno !== 0) request.failures.push({ index: msg.seq - request.firstSeq, errno });
        if (msg.seq === request.lastSeq) this.finish(index);
      } else if (msg.type === NLMSG_DONE) {
        this.finish(index);
      } else if (msg.type === NLMSG_OVERRUN) {
        this.finish(index, new Error('netlink overrun during a request'));
      } else {
        request.timer?.refresh();
        request.onData?.(msg);
      }
    }
  }

  /**
   * A datagram of a raw dump (the kernel sends a dump's parts in datagrams of their own): its
   * messages are walked at offsets and handed over as payload ranges, no object per conntrack.
   */
  private dispatchRaw(datagram: Buffer, index: number): void {
    const request = this.pending[index] as PendingRequest;
    const onRaw = request.onRaw as (buf: Buffer, from: number, to: number) => void;
    request.timer?.refresh();
    let off = 0;
    while (off + 16 <= datagram.length) {
      const len = datagram.readUInt32LE(off);
      if (len < 16 || off + len > datagram.length) {
        log.error({ len, at: off }, 'dropping the rest of a malformed netlink dump datagram');
        return;
      }
      const type = datagram.readUInt16LE(off + 4);
      const seq = datagram.readUInt32LE(off + 8);
      if (seq >= request.firstSeq && seq <= request.lastSeq) {
        if (type === NLMSG_ERROR) {
          const errno = len >= 20 ? -datagram.readInt32LE(off + 16) : 0;
          if (errno !== 0) request.failures.push({ index: seq - request.firstSeq, errno });
          if (seq === request.lastSeq) this.finish(this.pending.indexOf(request));
          return;
        }
        if (type === NLMSG_DONE) {
          this.finish(this.pending.indexOf(request));
          return;
        }
        if (type === NLMSG_OVERRUN) {
          this.finish(this.pending.indexOf(request), new Error('netlink overrun during a request'));
          return;
        }
        onRaw(datagram, off + 16, off + len);
      }
      off += (len + 3) & ~3;
    }
  }

  private finish(index: number, err?: Error): void {
    const [request] = this.pending.splice(index, 1);
    request.done(err);
  }

  private failAll(err: Error): void {
    for (const request of this.pending.splice(0)) request.done(err);
  }

  private nextSeq(): number {
    const seq = this.seq;
    this.seq = this.seq >= 0xfffffff0 ? 1 : this.seq + 1;
    return seq;
  }

  /** Sends a datagram of `count` messages (consecutive seqs from firstSeq); resolves when the kernel processed all. */
  private request(
    datagram: Buffer, firstSeq: number, count: number, onData?: (msg: NetlinkMessage) => void, onRaw?: (buf: Buffer, from: number, to: number) => void,
  ): Promise<PendingRequest> {
    if (this.closed) return Promise.reject(new Error('ctnetlink socket is closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.pending.indexOf(request);
        const drops = this.closed ? 0 : receiveDrops(this.fd);
        const why = drops > 0 ? ` (${drops} answers lost to receive-buffer overruns)` : '';
        if (index >= 0) this.finish(index, new Error(`ctnetlink request: no answer for ${REQUEST_TIMEOUT_MS} ms${why}`));
      }, REQUEST_TIMEOUT_MS);
      const request: PendingRequest = {
        firstSeq,
        lastSeq: firstSeq + count - 1,
        failures: [],
        onData,
        onRaw,
        timer,
        done: (err) => {
          clearTimeout(timer);
          if (err) reject(err); else resolve(request);
        },
      };
      this.pending.push(request);
      const fail = (err: Error): void => {
        const index = this.pending.indexOf(request);
        if (index >= 0) this.finish(index, err);
      };
      this.socket.send(datagram, {}, guardNetlinkCallback('ctnetlink', (err?: Error) => {
        if (err) fail(new Error(`ctnetlink send failed: ${err.message}`));
      }, fail));
    });
  }

  /** Encodes items into datagrams, keeps a few in flight, and gathers the refusals. */
  private async batch<T>(items: T[], write: (b: MessageBuilder, item: T, seq: number, flags: number) => void): Promise<BatchResult> {
    const result: BatchResult = { written: 0, failures: [] };
    const inFlight: Promise<void>[] = [];
    // The first failure, thrown once all are answered: a datagram that fails while the loop awaits
    // an older one must not be an unhandled rejection (it ends the process).
    let failure: Error | undefined;
    for (let start = 0; start < items.length; start += MESSAGES_PER_DATAGRAM) {
      if (failure) break;
      const count = Math.min(MESSAGES_PER_DATAGRAM, items.length - start);
      const builder = new MessageBuilder(count * 192);
      const firstSeq = this.nextSeq();
      for (let i = 0; i < count; i++) {
        write(builder, items[start + i], i === 0 ? firstSeq : this.nextSeq(), i === count - 1 ? NLM_F_ACK : 0);
      }
      inFlight.push(this.request(builder.finish(), firstSeq, count).then((req) => {
        result.written += count - req.failures.length;
        for (const f of req.failures) result.failures.push({ index: start + f.index, errno: f.errno });
      }, (err: Error) => {
        failure ??= err;
      }));
      if (inFlight.length >= DATAGRAMS_IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    result.failures.sort((a, b) => a.index - b.index);
    return result;
  }

  /**
   * Sends a datagram already encoded with consecutive seqs from `firstSeq` (see MessageBuilder and
   * the write* functions); resolves with the refused messages (index from 0) once all are processed.
   */
  async sendDatagram(datagram: Buffer, firstSeq: number, count: number): Promise<{ index: number; errno: number }[]> {
    return (await this.request(datagram, firstSeq, count)).failures;
  }

  /** Creates conntracks that do not exist yet (EEXIST for those that do). */
  create(writes: ConntrackWrite[]): Promise<BatchResult> {
    return this.batch(writes, writeCreate);
  }

  /** Updates state, timeout and mark of existing conntracks (ENOENT for missing ones). */
  update(writes: ConntrackWrite[]): Promise<BatchResult> {
    return this.batch(writes, writeUpdate);
  }

  /** Creates, or updates those that already exist; `written` counts both, `created` the new ones. */
  upsert(writes: ConntrackWrite[]): Promise<UpsertResult> {
    return upsertConntracks(writes, (w) => this.create(w), (w) => this.update(w), undefined, this.order);
  }

  /** Deletes conntracks by original tuple; missing ones are not counted and not failures. */
  async delete(tuples: FlowTuple[]): Promise<BatchResult> {
    const result = await this.batch(tuples, writeDelete);
    return { written: result.written, failures: result.failures.filter((f) => f.errno !== ENOENT) };
  }

  /**
   * Streams the whole table in batches of `batchSize` as the kernel sends it (the first batch is
   * handed over while the kernel still dumps, one batch at a time); returns how many conntracks
   * were read. One socket runs one dump at a time (the kernel refuses a second one with EBUSY
   * while the first runs): dumps queue here, and a refused one throws instead of looking like an
   * empty table.
   */
  async dump(onBatch: (conntracks: KernelConntrack[]) => void | Promise<void>, batchSize = 1000): Promise<number> {
    let queue: KernelConntrack[] = [];
    let total = 0;
    let undecodable = 0;
    const pipe = new BatchPipe(onBatch);
    try {
      await this.dumpRaw((buf, from, to) => {
        try {
          queue.push(decodeConntrackAt(buf, from, to));
        } catch (err) {
          if (!(err instanceof UnsupportedProtocolError)) undecodable++;
          return;
        }
        if (queue.length >= batchSize) {
          total += queue.length;
          pipe.push(queue);
          queue = [];
        }
      });
    } catch (err) {
      await pipe.cancel();
      throw err;
    }
    if (undecodable > 0) log.warn({ undecodable }, 'conntracks skipped in a dump (cannot decode)');
    if (queue.length > 0) {
      total += queue.length;
      pipe.push(queue);
    }
    await pipe.end();
    return total;
  }

  /**
   * One dump of the whole table, each conntrack message's payload (after the netlink header) to
   * `onMessage` as a range of the datagram, in the kernel's order, as it arrives; resolves once
   * the kernel ended the dump. The range is valid during the call only unless the caller keeps
   * the datagram. Dumps on one socket run one at a time.
   */
  async dumpRaw(onMessage: (buf: Buffer, from: number, to: number) => void): Promise<void> {
    const previous = this.dumping;
    let release!: () => void;
    this.dumping = new Promise((r) => {
      release = r;
    });
    try {
      await previous;
      const seq = this.nextSeq();
      // A conntrack the caller could not take fails the dump (once the kernel ended it: the socket
      // takes no other dump before), rather than the dump looking whole without it.
      let notHandled: unknown;
      let notHandledCount = 0;
      const req = await this.request(encodeDumpRequest(seq), seq, 1, undefined, (buf, from, to) => {
        // A throw must not reach dispatch (it would drop the rest of the datagram).
        try {
          onMessage(buf, from, to);
        } catch (err) {
          notHandled ??= err;
          notHandledCount++;
        }
      });
      if (req.failures.length > 0) throw new Error(`ctnetlink dump refused: errno ${req.failures[0]?.errno}`);
      if (notHandledCount > 0) throw new Error(`ctnetlink dump: ${notHandledCount} conntracks not handled (first: ${String(notHandled)})`);
    } finally {
      release();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error('ctnetlink socket closed'));
    this.socket.close();
  }
}
