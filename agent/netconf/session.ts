// One NETCONF session on one byte stream (an SSH channel): hello exchange, framing, the rpc loop,
// replies and rpc-errors, notifications, hello and idle timeouts, and its monitoring counters.
// Rpcs of a session run one at a time, in order (RFC 6241 replies are in request order); a session
// that floods stops being read until its queue drains, so it cannot starve the others.
import type { Duplex } from 'node:stream';
import { logger } from '../../core/log.js';
import { FrameDecoder, framePieces, type FrameEvent, type FramingMode } from './framing.js';
import { NetconfError } from '../../core/netconf-error.js';
import {
  BASE_NS, CAP_BASE_10, CAP_BASE_11, replyStartTag, rpcErrorXml, serverHello, toNetconfErrors, type NamespaceResolver,
} from './reply-xml.js';
import type { RpcContext, RpcDispatcher, SessionInfo } from './rpc-dispatcher.js';
import type { XmlElement } from './xml-element.js';
import { XmlParseError, parseXml, parseXmlInSlices, peekRoot, type XmlLimits } from './xml-parser.js';

const log = logger('netconf-session');
const NOTIFICATION_NS = 'urn:ietf:params:xml:ns:netconf:notification:1.0';
/** Input of a session waiting to be handled (characters) above which it is no longer read. */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;
/** Messages at least this long are parsed in slices (parseXmlInSlices); shorter ones in one go. */
const SLICED_PARSE_MIN_CHARS = 256 * 1024;

export interface SessionLimits extends XmlLimits {
  /** Milliseconds the client has to send its hello. */
  helloTimeoutMs: number;
  /** Milliseconds without any message before the session is closed (0: never). */
  idleTimeoutMs: number;
  /** Messages queued on a session before its input is paused. */
  maxQueuedMessages: number;
  /**
   * Bytes of output (notifications) waiting for a client that does not read them, above which the
   * session is closed: a subscriber that stopped reading must not hold memory without bound.
   */
  maxOutputQueueBytes: number;
}

export type EndReason = 'closed' | 'killed' | 'dropped' | 'timeout';

/** What the session needs from the server around it. */
export interface SessionHost {
  dispatcher: RpcDispatcher;
  limits: SessionLimits;
  resolveNamespace: NamespaceResolver;
  /** Kill another session by id (kill-session); false when there is none. */
  killSession(sessionId: number, killedBy: number): boolean;
  /** Called once when the session ends, whatever the reason, just before its stream is ended. */
  onEnded(session: NetconfSession): void;
}

type State = 'hello' | 'open' | 'ended';

export class NetconfSession {
  readonly info: SessionInfo;
  private state: State = 'hello';
  private framing: FramingMode = 'eom';
  private readonly decoder: FrameDecoder;
  private readonly queue: FrameEvent[] = [];
  private processing = false;
  private paused = false;
  private helloTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private started = false; // sessionStarted was reported to the dispatcher
  private inputEnded = false;
  private subscribed = false;
  private queuedBytes = 0;
  /** Why the session ended (set when it does). */
  endReason: EndReason | undefined;

  constructor(
    readonly id: number,
    username: string,
    sourceHost: string,
    private readonly stream: Duplex,
    private readonly host: SessionHost,
  ) {
    // A live object: the counters are updated in place, so whoever keeps it (monitoring) sees them.
    this.info = {
      sessionId: id, username, transport: 'netconf-ssh', sourceHost, loginTime: new Date().toISOString(),
      inRpcs: 0, inBadRpcs: 0, outRpcErrors: 0, outNotifications: 0,
    };
    this.decoder = new FrameDecoder(host.limits.maxSize);
    stream.on('data', (d: Buffer | string) => this.onData(typeof d === 'string' ? Buffer.from(d) : d));
    stream.on('close', () => this.end('dropped'));
    // The client closing its input (EOF, e.g. `ssh -s` with stdin from a file) still gets replies
    // to everything it sent before; the session ends once those are done.
    stream.on('end', () => {
      this.inputEnded = true;
      if (!this.processing && this.queue.length === 0) this.end('dropped');
    });
    stream.on('error', (err: Error) => {
      log.debug({ session: id, err: err.message }, 'stream error');
      this.end('dropped');
    });
    const caps = [CAP_BASE_10, CAP_BASE_11, ...host.dispatcher.capabilities()];
    this.send(serverHello([...new Set(caps)], id));
    this.helloTimer = setTimeout(() => {
      log.info({ session: id }, 'no hello in time; closing');
      this.badHello('hello timeout');
    }, host.limits.helloTimeoutMs);
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** End the session from outside (kill-session, server shutdown, idle timeout). */
  terminate(reason: EndReason, killedBy?: number): void {
    this.end(reason, killedBy);
  }

  private onData(data: Buffer): void {
    if (this.state === 'ended') return;
    let events: FrameEvent[];
    try {
      events = this.decoder.push(data);
    } catch (err) {
      this.framingBroken(err);
      return;
    }
    this.enqueue(events);
  }

  private framingBroken(err: unknown): void {
    log.info({ session: this.id, err: err instanceof Error ? err.message : String(err) }, 'broken framing; closing session');
    if (this.state === 'hello') this.badHello('broken framing');
    else this.end('dropped');
  }

  private enqueue(events: FrameEvent[]): void {
    if (events.length === 0) return;
    this.queue.push(...events);
    for (const e of events) this.queuedBytes += e.kind === 'message' ? e.text.length : 0;
    if ((this.queue.length >= this.host.limits.maxQueuedMessages || this.queuedBytes >= MAX_QUEUED_BYTES) && !this.paused) {
      this.paused = true;
      this.stream.pause();
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.queue.length > 0 && (this.state === 'hello' || this.state === 'open')) {
        const ev = this.queue.shift()!;
        if (ev.kind === 'message') this.queuedBytes -= ev.text.length;
        if (this.state === 'hello') this.handleHello(ev);
        else await this.handleMessage(ev);
        // A client that does not read its replies stops being served (and, with the queue full,
        // read) until it does: memory per session stays bounded.
        if (this.stream.writableNeedDrain) await this.drained();
        if (this.paused && this.queue.length <= this.host.limits.maxQueuedMessages / 4 && this.queuedBytes < MAX_QUEUED_BYTES / 4) {
          this.paused = false;
          this.stream.resume();
        }
      }
    } catch (err) {
      log.error({ session: this.id, err: err instanceof Error ? err.stack : String(err) }, 'session loop failed');
      this.end('dropped');
    } finally {
      this.processing = false;
    }
    if (this.inputEnded && this.queue.length === 0) this.end('dropped');
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  private handleHello(ev: FrameEvent): void {
    if (ev.kind === 'bad-encoding') return this.badHello(`hello is not valid UTF-8 (byte ${ev.offset})`);
    if (ev.kind !== 'message') return this.badHello('hello too big');
    let hello: XmlElement;
    try {
      hello = parseXml(ev.text, this.host.limits);
    } catch (err) {
      return this.badHello(`hello is not well-formed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (hello.name !== 'hello' || hello.ns !== BASE_NS) return this.badHello(`expected <hello>, got <${hello.name}>`);
    if (hello.children.some((c) => c.name === 'session-id')) return this.badHello('client hello carries a session-id');
    const caps = hello.children.filter((c) => c.name === 'capabilities').flatMap((c) => c.children)
      .filter((c) => c.name === 'capability').map((c) => c.text.trim());
    const has11 = caps.includes(CAP_BASE_11);
    if (!has11 && !caps.includes(CAP_BASE_10)) return this.badHello('client supports neither base:1.0 nor base:1.1');
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.framing = has11 ? 'chunked' : 'eom';
    this.state = 'open';
    this.started = true;
    this.host.dispatcher.sessionStarted(this.info);
    log.info({ session: this.id, user: this.info.username, framing: this.framing }, 'session started');
    this.touch();
    let rest: FrameEvent[];
    try {
      rest = this.decoder.setMode(this.framing);
    } catch (err) {
      this.framingBroken(err);
      return;
    }
    this.queue.unshift(...rest);
  }

  private badHello(why: string): void {
    if (this.state !== 'hello') return;
    log.info({ session: this.id, why }, 'bad hello; closing');
    this.host.dispatcher.badHello?.(why);
    this.end('dropped');
  }

  private touch(): void {
    // A session subscribed to notifications is listening, not idle (RFC 5277 sessions can be quiet for long).
    if (this.host.limits.idleTimeoutMs <= 0 || this.subscribed) {
      this.stopIdleTimer();
      return;
    }
    // Every rpc touches: re-arming the one timer is cheaper than a new one each time.
    if (this.idleTimer) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      if (this.processing && this.queue.length === 0) {
        // An rpc is still running (e.g. a long commit): the session is not idle.
        this.touch();
        return;
      }
      log.info({ session: this.id }, 'idle timeout; closing');
      this.end('timeout');
    }, this.host.limits.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private stopIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private async handleMessage(ev: FrameEvent): Promise<void> {
    this.touch();
    if (ev.kind === 'oversized') {
      this.info.inBadRpcs += 1;
      const root = peekRoot(ev.head);
      this.replyErrors(root?.name === 'rpc' ? root : undefined,
        [new NetconfError('too-big', 'rpc', `message of ${ev.size} bytes exceeds the limit of ${this.host.limits.maxSize}`)]);
      return;
    }
    if (ev.kind === 'bad-encoding') {
      // RFC 6241 messages are UTF-8: decoding with replacement characters would store altered data.
      this.info.inBadRpcs += 1;
      const root = peekRoot(ev.head);
      this.replyErrors(root?.name === 'rpc' ? root : undefined,
        [this.forClient(new NetconfError('malformed-message', 'rpc', `message is not valid UTF-8 (invalid byte at offset ${ev.offset})`))]);
      return;
    }
    let rpc: XmlElement;
    try {
      // A large message (a 100,000-rule edit) is parsed in slices: the other sessions are served meanwhile.
      rpc = ev.text.length >= SLICED_PARSE_MIN_CHARS ? await parseXmlInSlices(ev.text, this.host.limits) : parseXml(ev.text, this.host.limits);
    } catch (err) {
      this.info.inBadRpcs += 1;
      const root = err instanceof XmlParseError && err.root?.name === 'rpc' ? err.root : undefined;
      this.replyErrors(root, [this.forClient(err instanceof NetconfError ? err : new NetconfError('malformed-message', 'rpc', String(err)))]);
      return;
    }
    const problem = this.checkRpc(rpc);
    if (problem) {
      this.info.inBadRpcs += 1;
      this.replyErrors(rpc.name === 'rpc' ? rpc : undefined, [problem]);
      return;
    }
    this.info.inRpcs += 1;
    let closeAfter = false;
    const ctx: RpcContext = {
      sessionId: this.id,
      username: this.info.username,
      sendNotification: (xml) => this.sendNotification(xml),
      closeAfterReply: () => { closeAfter = true; },
      killSession: (target) => this.host.killSession(target, this.id),
    };
    try {
      const op = rpc.children[0]!;
      const result = await this.host.dispatcher.dispatch(ctx, op);
      if (op.name === 'create-subscription' && op.ns === NOTIFICATION_NS) {
        this.subscribed = true;
        this.stopIdleTimer();
      }
      if (this.state !== 'open') return;
      this.send(`${replyStartTag(rpc)}${'ok' in result ? '<ok/>' : result.xml}</rpc-reply>`);
    } catch (err) {
      if (this.state !== 'open') return;
      const errors = toNetconfErrors(err);
      const known = err instanceof NetconfError || Array.isArray(err) || Array.isArray((err as { errors?: unknown } | null)?.errors);
      if (!known) {
        log.warn({ session: this.id, op: rpc.children[0]!.name, err: err instanceof Error ? err.stack : String(err) }, 'operation threw a non-NETCONF error');
      }
      this.replyErrors(rpc, errors);
    }
    if (closeAfter) this.end('closed');
  }

  /** malformed-message is new in base:1.1 and must not be sent to a base:1.0 client (RFC 6241 App. A). */
  private forClient(err: NetconfError): NetconfError {
    if (err.tag !== 'malformed-message' || this.framing === 'chunked') return err;
    return new NetconfError('operation-failed', 'rpc', err.message, err.extra);
  }

  /** The checks on the <rpc> element itself; undefined when it is a proper rpc. */
  private checkRpc(rpc: XmlElement): NetconfError | undefined {
    if (rpc.name !== 'rpc') {
      return new NetconfError('unknown-element', 'rpc', `expected <rpc>, got <${rpc.name}>`, { info: [{ name: 'bad-element', value: rpc.name }] });
    }
    if (rpc.ns !== BASE_NS) {
      return new NetconfError('unknown-namespace', 'rpc', `<rpc> must be in namespace ${BASE_NS}`, {
        info: [{ name: 'bad-element', value: 'rpc' }, { name: 'bad-namespace', value: rpc.ns }],
      });
    }
    if (!rpc.attrs.some((a) => a.name === 'message-id' && a.ns === '')) {
      return new NetconfError('missing-attribute', 'rpc', 'the rpc has no message-id attribute', {
        info: [{ name: 'bad-attribute', value: 'message-id' }, { name: 'bad-element', value: 'rpc' }],
      });
    }
    if (rpc.children.length === 0) {
      return new NetconfError('missing-element', 'protocol', 'the rpc contains no operation', { info: [{ name: 'bad-element', value: 'rpc' }] });
    }
    if (rpc.children.length > 1) {
      return new NetconfError('unknown-element', 'protocol', 'an rpc contains exactly one operation', {
        info: [{ name: 'bad-element', value: rpc.children[1]!.name }],
      });
    }
    return undefined;
  }

  private replyErrors(rpc: XmlElement | undefined, errors: NetconfError[]): void {
    if (errors.some((e) => (e.extra.severity ?? 'error') === 'error')) this.info.outRpcErrors += 1;
    const body = errors.map((e) => rpcErrorXml(e, this.host.resolveNamespace)).join('');
    this.send(`${replyStartTag(rpc)}${body}</rpc-reply>`);
  }

  private sendNotification(xml: string): void {
    if (this.state !== 'open') return;
    // Replies wait for the client to read (the rpc loop awaits drain); notifications are pushed.
    // A subscriber whose unread output passes the bound is closed rather than buffered forever.
    const queued = this.stream.writableLength;
    if (queued > this.host.limits.maxOutputQueueBytes) {
      log.warn({ session: this.id, user: this.info.username, queuedBytes: queued, limit: this.host.limits.maxOutputQueueBytes },
        'client does not read its notifications; closing session');
      this.end('dropped');
      return;
    }
    this.info.outNotifications += 1;
    this.send(xml);
  }

  private send(text: string): void {
    if (this.state === 'ended') return;
    // The server hello goes out before the framing is chosen: always end-of-message framed.
    const mode: FramingMode = this.state === 'hello' ? 'eom' : this.framing;
    try {
      for (const piece of framePieces(text, mode)) this.stream.write(piece);
    } catch (err) {
      log.debug({ session: this.id, err: err instanceof Error ? err.message : String(err) }, 'write failed');
    }
  }

  private end(reason: EndReason, killedBy?: number): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.endReason = reason;
    clearTimeout(this.helloTimer);
    this.stopIdleTimer();
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.host.onEnded(this);
    try {
      this.stream.end();
    } catch {
      // already gone
    }
    if (this.started) {
      log.info({ session: this.id, reason, killedBy }, 'session ended');
      try {
        this.host.dispatcher.sessionEnded(this.id, reason, killedBy);
      } catch (err) {
        log.error({ session: this.id, err: err instanceof Error ? err.stack : String(err) }, 'sessionEnded failed');
      }
    }
  }
}
