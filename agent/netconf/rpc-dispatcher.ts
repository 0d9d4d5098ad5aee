// The seam between the protocol layer (sessions, framing, SSH) and the operations (datastores, NACM,
// monitoring). The protocol layer parses an <rpc>, hands its operation element here, and wraps the
// result in <rpc-reply> with every attribute of the <rpc> echoed.
import type { XmlElement } from './xml-element.js';

/** What an operation may know and do about the session that sent it. */
export interface RpcContext {
  sessionId: number;
  username: string;
  /** Send a <notification> (complete XML element text) on this session, in order with replies. */
  sendNotification(xml: string): void;
  /** Ask the protocol layer to end this session after the reply is sent (close-session). */
  closeAfterReply(): void;
  /** Kill another session (kill-session); false when no such session. */
  killSession(sessionId: number): boolean;
}

/** What an operation answers: <ok/>, or the XML content placed inside <rpc-reply>. */
export type RpcResult = { ok: true } | { xml: string };

/**
 * Session lifecycle that the operations layer listens to (locks, confirmed commits, subscriptions).
 * The object given to sessionStarted is live: the protocol layer updates its counters in place
 * until the session ends, so monitoring may keep it and read the counters when asked.
 */
export interface SessionInfo {
  sessionId: number;
  username: string;
  transport: 'netconf-ssh';
  sourceHost: string;
  loginTime: string; // yang:date-and-time
  inRpcs: number;
  inBadRpcs: number;
  outRpcErrors: number;
  outNotifications: number;
}

export interface RpcDispatcher {
  /** Execute one operation; throws NetconfError (or an array of them via NetconfErrors) on failure. */
  dispatch(ctx: RpcContext, operation: XmlElement): Promise<RpcResult>;
  sessionStarted(info: SessionInfo): void;
  sessionEnded(sessionId: number, reason: 'closed' | 'killed' | 'dropped' | 'timeout', killedBy?: number): void;
  /** Capabilities the operations layer supports (URIs), merged into the server hello. */
  capabilities(): string[];
  /**
   * Optional (added by the protocol layer): a connection sent a bad hello (or none in time) and was
   * closed without becoming a session; counts ietf-netconf-monitoring in-bad-hellos.
   */
  badHello?(reason: string): void;
}
