// All NETCONF sessions of the agent by id: allocates session-ids (1, 2, ...) and finds a session
// for kill-session. Ids are never reused while the agent runs.
import type { NetconfSession } from './session.js';

export class SessionRegistry {
  private nextId = 1;
  private readonly sessions = new Map<number, NetconfSession>();

  allocateId(): number {
    return this.nextId++;
  }

  add(session: NetconfSession): void {
    this.sessions.set(session.id, session);
  }

  remove(session: NetconfSession): void {
    if (this.sessions.get(session.id) === session) this.sessions.delete(session.id);
  }

  get(id: number): NetconfSession | undefined {
    return this.sessions.get(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  all(): NetconfSession[] {
    return [...this.sessions.values()];
  }
}
