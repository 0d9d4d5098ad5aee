// What ietf-netconf-monitoring reports about sessions: the live SessionInfo objects (the protocol
// layer keeps their counters current) and totals that outlive the sessions.
import type { SessionInfo } from '../netconf/rpc-dispatcher.js';

export class SessionRegistry {
  readonly sessions = new Map<number, SessionInfo>();
  readonly startTime = new Date().toISOString();
  inSessions = 0;
  droppedSessions = 0;
  badHellos = 0;
  private endedTotals = { inRpcs: 0, inBadRpcs: 0, outRpcErrors: 0, outNotifications: 0 };

  started(info: SessionInfo): void {
    this.sessions.set(info.sessionId, info);
    this.inSessions += 1;
  }

  ended(sessionId: number, reason: string): SessionInfo | undefined {
    const info = this.sessions.get(sessionId);
    if (!info) return undefined;
    this.sessions.delete(sessionId);
    if (reason !== 'closed') this.droppedSessions += 1;
    this.endedTotals.inRpcs += info.inRpcs;
    this.endedTotals.inBadRpcs += info.inBadRpcs;
    this.endedTotals.outRpcErrors += info.outRpcErrors;
    this.endedTotals.outNotifications += info.outNotifications;
    return info;
  }

  totals(): { inRpcs: number; inBadRpcs: number; outRpcErrors: number; outNotifications: number } {
    const t = { ...this.endedTotals };
    for (const s of this.sessions.values()) {
      t.inRpcs += s.inRpcs;
      t.inBadRpcs += s.inBadRpcs;
      t.outRpcErrors += s.outRpcErrors;
      t.outNotifications += s.outNotifications;
    }
    return t;
  }
}
