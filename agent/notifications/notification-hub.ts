// The NETCONF event stream (RFC 5277): subscriptions per session with an optional filter, a bounded
// replay buffer, startTime/stopTime replay, replayComplete and notificationComplete.
import type { XmlElement } from '../netconf/xml-element.js';
import type { RpcContext } from '../netconf/rpc-dispatcher.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import { subtreeFilter } from '../datastore/subtree-filter.js';
import { parseData, type DataFilter } from '../operations/data-filter.js';
import { writeXml } from '../datastore/xml-writer.js';

export const NOTIFICATION_NS = 'urn:ietf:params:xml:ns:netconf:notification:1.0';
export const NC_NOTIFICATIONS_NS = 'urn:ietf:params:xml:ns:netmod:notification';

const log = logger('notifications');

interface StoredEvent {
  time: Date;
  eventTime: string;
  /** The event element (the notification content), serialised. */
  content: string;
}

interface Subscription {
  ctx: RpcContext;
  filter?: DataFilter;
  /** XPath filters are matched by the caller-supplied function (libyang). */
  xpathMatch?: (content: string) => boolean;
  stopTime?: Date;
  stopTimer?: NodeJS.Timeout;
  /** Live events held back while the replay is being sent, to keep event order. */
  held?: StoredEvent[];
}

function envelope(eventTime: string, content: string): string {
  return `<notification xmlns="${NOTIFICATION_NS}"><eventTime>${eventTime}</eventTime>${content}</notification>`;
}

/** RFC 3339 date-and-time with offset, as RFC 5277 startTime/stopTime. */
function parseTime(el: XmlElement): Date {
  const t = el.text.trim();
  const d = new Date(t);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(t) || Number.isNaN(d.getTime())) {
    throw new NetconfError('bad-element', 'protocol', `<${el.name}> is not a date-and-time: '${t}'`, {
      info: [{ name: 'bad-element', value: el.name }],
    });
  }
  return d;
}

export class NotificationHub {
  private readonly buffer: StoredEvent[] = [];
  private readonly subs = new Map<number, Subscription>();
  readonly createdAt = new Date().toISOString();
  private lastTime = 0;

  constructor(private readonly replayLimit = 1000) {}

  /** Publish one event (its XML element text) to every subscriber whose filter selects it. */
  publish(content: string): void {
    // Strictly increasing event times keep replay windows unambiguous.
    const now = Math.max(Date.now(), this.lastTime + 1);
    this.lastTime = now;
    const ev: StoredEvent = { time: new Date(now), eventTime: new Date(now).toISOString(), content };
    this.buffer.push(ev);
    if (this.buffer.length > this.replayLimit) this.buffer.splice(0, this.buffer.length - this.replayLimit);
    for (const [id, sub] of this.subs) this.deliver(id, sub, ev);
  }

  private select(sub: Subscription, content: string): string | undefined {
    if (sub.xpathMatch) return sub.xpathMatch(content) ? content : undefined;
    if (!sub.filter || sub.filter.kind !== 'subtree') return content;
    const kept = subtreeFilter(parseData(content), sub.filter.nodes, () => []);
    return kept.length ? kept.map((e) => writeXml(e)).join('') : undefined;
  }

  private deliver(sessionId: number, sub: Subscription, ev: StoredEvent, replaying = false): void {
    if (sub.held && !replaying) {
      sub.held.push(ev);
      return;
    }
    if (sub.stopTime && ev.time > sub.stopTime) return;
    try {
      const selected = this.select(sub, ev.content);
      if (selected !== undefined) sub.ctx.sendNotification(envelope(ev.eventTime, selected));
    } catch (err) {
      log.warn({ sessionId, err }, 'notification not delivered');
    }
  }

  isSubscribed(sessionId: number): boolean {
    return this.subs.has(sessionId);
  }

  get oldestReplay(): string | undefined {
    return this.buffer[0]?.eventTime;
  }

  /** create-subscription: validate the parameters, replay what was asked, then follow the stream. */
  subscribe(ctx: RpcContext, op: XmlElement, filter: DataFilter | undefined,
    xpathMatch: ((content: string) => boolean) | undefined): void {
    if (this.subs.has(ctx.sessionId)) {
      throw new NetconfError('in-use', 'protocol', 'this session already has a subscription');
    }
    const stream = op.children.find((c) => c.name === 'stream')?.text.trim() ?? 'NETCONF';
    if (stream !== 'NETCONF') {
      throw new NetconfError('invalid-value', 'application', `no such stream '${stream}'`, {
        info: [{ name: 'bad-element', value: 'stream' }],
      });
    }
    const startEl = op.children.find((c) => c.name === 'startTime');
    const stopEl = op.children.find((c) => c.name === 'stopTime');
    const start = startEl ? parseTime(startEl) : undefined;
    const stop = stopEl ? parseTime(stopEl) : undefined;
    if (stop && !start) {
      throw new NetconfError('missing-element', 'protocol', 'stopTime needs a startTime', { info: [{ name: 'bad-element', value: 'startTime' }] });
    }
    if (start && start.getTime() > Date.now()) {
      throw new NetconfError('bad-element', 'protocol', 'startTime is in the future', { info: [{ name: 'bad-element', value: 'startTime' }] });
    }
    if (start && stop && stop < start) {
      throw new NetconfError('bad-element', 'protocol', 'stopTime is before startTime', { info: [{ name: 'bad-element', value: 'stopTime' }] });
    }
    const sub: Subscription = { ctx, filter, xpathMatch, stopTime: stop, held: start ? [] : undefined };
    const replay = start ? this.buffer.filter((ev) => ev.time >= start) : [];
    // Replay and completion notices go out after the <ok/> reply: schedule them on the next turn.
    setImmediate(() => {
      if (!start) return;
      for (const ev of replay) this.deliver(ctx.sessionId, sub, ev, true);
      ctx.sendNotification(envelope(new Date().toISOString(), `<replayComplete xmlns="${NC_NOTIFICATIONS_NS}"/>`));
      const held = sub.held ?? [];
      sub.held = undefined;
      for (const ev of held) this.deliver(ctx.sessionId, sub, ev);
      if (stop) {
        const end = () => {
          ctx.sendNotification(envelope(new Date().toISOString(), `<notificationComplete xmlns="${NC_NOTIFICATIONS_NS}"/>`));
          this.subs.delete(ctx.sessionId);
        };
        const wait = stop.getTime() - Date.now();
        if (wait <= 0) end();
        else sub.stopTimer = setTimeout(end, Math.min(wait, 2 ** 31 - 1));
      }
    });
    this.subs.set(ctx.sessionId, sub);
  }

  sessionEnded(sessionId: number): void {
    const sub = this.subs.get(sessionId);
    if (sub?.stopTimer) clearTimeout(sub.stopTimer);
    this.subs.delete(sessionId);
  }

  /** The RFC 5277 streams list, for <get>. */
  streamsXml(): string {
    return `<netconf xmlns="${NC_NOTIFICATIONS_NS}"><streams><stream><name>NETCONF</name>`
      + '<description>default NETCONF event stream</description><replaySupport>true</replaySupport>'
      + `<replayLogCreationTime>${this.createdAt}</replayLogCreationTime></stream></streams></netconf>`;
  }

  close(): void {
    for (const id of [...this.subs.keys()]) this.sessionEnded(id);
  }
}
