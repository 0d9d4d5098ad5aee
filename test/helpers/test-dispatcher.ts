// A tiny RpcDispatcher for protocol tests (the real one is agent/operations): enough operations to
// exercise replies, errors, notifications (to the session, or `broadcast` to every subscriber),
// close-session and kill-session, and a record of the
// session lifecycle it was told about.
import { NetconfError } from '../../core/netconf-error.js';
import type { RpcContext, RpcDispatcher, RpcResult, SessionInfo } from '../../agent/netconf/rpc-dispatcher.js';
import type { XmlElement } from '../../agent/netconf/xml-element.js';
import { serializeXml } from '../../agent/netconf/xml-writer.js';

const BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';

export class TestDispatcher implements RpcDispatcher {
  readonly started: SessionInfo[] = [];
  readonly ended: { sessionId: number; reason: string; killedBy?: number }[] = [];
  readonly operations: string[] = [];
  badHellos = 0;
  edits = 0;
  /** Sessions that ran create-subscription (for `broadcast`). */
  private readonly subscribers = new Map<number, RpcContext>();

  capabilities(): string[] {
    return ['urn:ietf:params:netconf:capability:notification:1.0', 'urn:ietf:params:netconf:capability:interleave:1.0'];
  }

  sessionStarted(info: SessionInfo): void {
    this.started.push(info);
  }

  sessionEnded(sessionId: number, reason: 'closed' | 'killed' | 'dropped' | 'timeout', killedBy?: number): void {
    this.subscribers.delete(sessionId);
    this.ended.push({ sessionId, reason, killedBy });
  }

  badHello(): void {
    this.badHellos += 1;
  }

  async dispatch(ctx: RpcContext, op: XmlElement): Promise<RpcResult> {
    this.operations.push(op.name);
    if (op.name === 'create-subscription' && op.ns === 'urn:ietf:params:xml:ns:netconf:notification:1.0') {
      this.subscribers.set(ctx.sessionId, ctx);
      return { ok: true };
    }
    if (op.ns !== BASE_NS && op.name !== 'echo') {
      throw new NetconfError('operation-not-supported', 'protocol', `unknown operation ${op.name}`);
    }
    switch (op.name) {
      case 'get':
      case 'get-config':
        return { xml: `<data><session>${ctx.sessionId}</session><user>${ctx.username}</user></data>` };
      case 'echo': // returns its own element, re-serialised
        return { xml: `<data>${serializeXml(op)}</data>` };
      case 'edit-config':
        this.edits += 1;
        return { ok: true };
      case 'close-session':
        ctx.closeAfterReply();
        return { ok: true };
      case 'kill-session': {
        const id = Number(op.children.find((c) => c.name === 'session-id')?.text.trim());
        if (id === ctx.sessionId || !ctx.killSession(id)) {
          throw new NetconfError('invalid-value', 'protocol', `no session ${id} to kill`);
        }
        return { ok: true };
      }
      case 'fail':
        throw [
          new NetconfError('data-missing', 'application', 'no such vrf', { path: "/tandem-vrf:vrf[name='a:b']", appTag: 'x-app' }),
          new NetconfError('lock-denied', 'protocol', 'locked', { info: [{ name: 'session-id', value: '7' }] }),
        ];
      case 'crash':
        throw new TypeError('something internal broke');
      case 'wait': {
        const ms = Math.min(Number(op.text.trim()) || 0, 5000);
        await new Promise((r) => setTimeout(r, ms));
        return { ok: true };
      }
      case 'broadcast': { // a notification of <broadcast>N</broadcast> bytes of payload to every subscriber
        const payload = 'n'.repeat(Math.min(Number(op.text.trim()) || 0, 1 << 20));
        for (const sub of this.subscribers.values()) {
          sub.sendNotification(`<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">`
            + `<eventTime>${new Date().toISOString()}</eventTime><test-event xmlns="urn:test">${payload}</test-event></notification>`);
        }
        return { ok: true };
      }
      case 'notify':
        ctx.sendNotification(`<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">`
          + `<eventTime>${new Date().toISOString()}</eventTime><test-event xmlns="urn:test"/></notification>`);
        return { ok: true };
      default:
        throw new NetconfError('operation-not-supported', 'protocol', `operation ${op.name} is not supported`);
    }
  }
}
