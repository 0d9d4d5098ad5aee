// The NACM layer as the operations see it: who a session is (groups from the transport, fixed at
// login), the compiled rules of running (recompiled when running changes), and the three checks
// with their rpc-errors, counters and logs. Operations call it; it never calls them.
import type { DataTree, YangContext } from '../../yang/libyang/api.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import type { SchemaIndex } from '../datastore/schema-index.js';
import { writeXml } from '../datastore/xml-writer.js';
import { parseXml } from '../netconf/xml-parser.js';
import type { XmlElement } from '../netconf/xml-element.js';
import { pathText } from './data-path.js';
import { DefaultDenyIndex, NACM_NS } from './default-deny.js';
import { compileNacm, type CompiledNacm } from './nacm-rules.js';
import { pruneUnreadable } from './read-pruning.js';
import { splitTopLevel } from './top-level-split.js';
import { UserAccess, type NacmIdentity } from './user-access.js';
import { firstWriteDenial } from './write-check.js';

const log = logger('nacm');

const NETCONF_BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const NOTIFICATION_NS = 'urn:ietf:params:xml:ns:netconf:notification:1.0';
const READ_CACHE_ENTRIES = 4;
const UNLIMITED = { maxElements: Number.MAX_SAFE_INTEGER, maxDepth: 1024 };

/** Where the transport's users come from (the SSH user store). */
export interface UserDirectory {
  /** Groups and recovery flag of a user; undefined when the user is unknown (no groups). */
  identity(username: string): Promise<{ groups: string[]; recovery: boolean } | undefined>;
}

/** Running's NACM subtree and a version that changes whenever that subtree may have. */
export interface NacmSource {
  version(): number;
  /** RFC 7951 JSON of /ietf-netconf-acm:nacm with defaults ({} when absent). */
  nacmJson(): Record<string, unknown>;
}

export interface SessionRef {
  sessionId: number;
  username: string;
}

export class Nacm {
  readonly deny: DefaultDenyIndex;
  private compiled: { version: number; nacm: CompiledNacm } | undefined;
  private readonly identities = new Map<number, Promise<NacmIdentity>>();
  /** Identities already read, for decisions that cannot wait (notifications). */
  private readonly resolved = new Map<number, NacmIdentity>();
  /** Last pruned replies, per rules version and user (few entries: the text may be megabytes). */
  private readonly readCache = new Map<string, { text: string; pruned: string }>();
  readonly counters = { deniedOperations: 0, deniedDataWrites: 0, deniedNotifications: 0 };
  /** Each session identity's access under the rules of one version (per identity object: gone with the session). */
  private readonly accessMemo = new WeakMap<NacmIdentity, UserAccess>();

  constructor(yang: YangContext, private readonly schema: SchemaIndex, private readonly users: UserDirectory,
    private readonly source: NacmSource) {
    this.deny = DefaultDenyIndex.fromContext(yang);
  }

  /** The rules of running, compiled once per version of running. */
  private rules(): CompiledNacm {
    const version = this.source.version();
    if (this.compiled?.version !== version) {
      const nacm = compileNacm(this.source.nacmJson());
      this.compiled = { version, nacm };
      log.debug({ enabled: nacm.enabled, ruleLists: nacm.ruleLists.length }, 'NACM rules compiled');
    }
    return this.compiled.nacm;
  }

  /** Read the session's groups from the user store once, when it starts (RFC 8341 2.5). */
  sessionStarted(s: SessionRef): void {
    this.remember(s);
  }

  sessionEnded(sessionId: number): void {
    this.identities.delete(sessionId);
    this.resolved.delete(sessionId);
  }

  private remember(s: SessionRef): Promise<NacmIdentity> {
    const p = this.lookup(s.username);
    this.identities.set(s.sessionId, p);
    void p.then((id) => {
      if (this.identities.get(s.sessionId) === p) this.resolved.set(s.sessionId, id);
    });
    return p;
  }

  /** The session's access now, if its identity is known already (else undefined). */
  currentAccess(s: SessionRef): UserAccess | undefined {
    const id = this.resolved.get(s.sessionId);
    return id ? this.accessOf(id) : undefined;
  }

  private async lookup(username: string): Promise<NacmIdentity> {
    try {
      const found = await this.users.identity(username);
      return { username, groups: found?.groups ?? [], recovery: found?.recovery ?? false };
    } catch (err) {
      // Unknown groups: the user gets what everyone gets, never more.
      log.warn({ user: username, err: err instanceof Error ? err.message : String(err) }, 'user groups not readable; no groups');
      return { username, groups: [], recovery: false };
    }
  }

  /** The access of the session's user under running's current rules. */
  async access(s: SessionRef): Promise<UserAccess> {
    const identity = await (this.identities.get(s.sessionId) ?? this.remember(s));
    return this.accessOf(identity);
  }

  private accessOf(identity: NacmIdentity): UserAccess {
    const rules = this.rules();
    // Every RPC asks; the answer changes only with the rules (their version) or the session's identity.
    const known = this.accessMemo.get(identity);
    if (known && known.version === this.compiled!.version) return known;
    const access = new UserAccess(identity, rules, this.deny, this.compiled!.version);
    this.accessMemo.set(identity, access);
    return access;
  }

  /** Protocol operation access (RFC 8341 3.4.4); throws access-denied with the operation's path. */
  checkExec(access: UserAccess, s: SessionRef, module: string, name: string): void {
    if (access.exec(module, name)) return;
    this.counters.deniedOperations += 1;
    const path = `/ietf-netconf:rpc/${module}:${name}`;
    log.warn({ user: s.username, session: s.sessionId, groups: access.groups, operation: name, module, path }, 'NACM: operation denied');
    throw new NetconfError('access-denied', 'protocol', `access denied: user '${s.username}' may not run ${name}`, { path });
  }

  /** Printed data (top-level siblings) with what the user may not read left out. */
  filterRead(access: UserAccess, s: SessionRef, operation: string, text: string): string {
    if (access.permitsAllData('read') || text.trim() === '') return text;
    // Repeated reads of an unchanged datastore print the same text: prune it once per user rules.
    const key = `${access.version}\0${access.identity.username}\0${access.groups.join(',')}`;
    const hit = this.readCache.get(key);
    if (hit && hit.text === text) return hit.pruned;
    const { pruned, removed } = this.prune(access, text);
    if (removed > 0) log.debug({ user: s.username, session: s.sessionId, operation, removed }, 'NACM: unreadable nodes left out of the reply');
    this.readCache.delete(key);
    this.readCache.set(key, { text, pruned });
    if (this.readCache.size > READ_CACHE_ENTRIES) this.readCache.delete(this.readCache.keys().next().value!);
    return pruned;
  }

  /** Prune printed data: only the top-level subtrees where something may be unreadable are parsed. */
  private prune(access: UserAccess, text: string): { pruned: string; removed: number } {
    const chunks = splitTopLevel(text);
    const whole = () => {
      const els = parseXml(`<data xmlns="${NETCONF_BASE_NS}">${text}</data>`, UNLIMITED).children;
      const { kept, removed } = pruneUnreadable(els, access, this.schema);
      return { pruned: removed === 0 ? text : kept.map((e) => writeXml(e)).join(''), removed };
    };
    if (!chunks) return whole();
    let removed = 0;
    const parts: string[] = [];
    for (const c of chunks) {
      const module = c.ns === undefined ? undefined : this.schema.moduleByNamespace(c.ns)?.name ?? c.ns;
      if (c.name !== undefined && module !== undefined && !access.mayDenyReadUnder(module, c.name)) {
        parts.push(c.text);
        continue;
      }
      const els = parseXml(`<data xmlns="${NETCONF_BASE_NS}">${c.text}</data>`, UNLIMITED).children;
      const r = pruneUnreadable(els, access, this.schema);
      removed += r.removed;
      parts.push(r.removed === 0 ? c.text : r.kept.map((e) => writeXml(e)).join(''));
    }
    return { pruned: removed === 0 ? text : parts.join(''), removed };
  }

  /**
   * Write access of an edit of a datastore (RFC 8341 3.4.5): `trees` gives the datastore before
   * and after (freed here); throws access-denied with the path of the first node refused.
   */
  checkWrite(access: UserAccess, s: SessionRef, operation: string, trees: () => { before: DataTree; after: DataTree }): void {
    if (access.permitsAllData('create') && access.permitsAllData('update') && access.permitsAllData('delete')) return;
    const { before, after } = trees();
    let diff: string;
    try {
      diff = before.diff(after, 'xml');
    } finally {
      before.free();
      after.free();
    }
    if (diff.trim() === '') return;
    const els = parseXml(`<data xmlns="${NETCONF_BASE_NS}">${diff}</data>`, UNLIMITED).children;
    const denied = firstWriteDenial(els, access, this.schema);
    if (!denied) return;
    this.counters.deniedDataWrites += 1;
    const path = pathText(denied.path);
    log.warn({ user: s.username, session: s.sessionId, groups: access.groups, operation, access: denied.access, path }, 'NACM: write denied');
    throw new NetconfError('access-denied', 'application', `access denied: user '${s.username}' may not ${denied.access} ${path}`, { path });
  }

  /** Whether a <notification> (whole element text) may go to the user (RFC 8341 3.4.6); counts refusals. */
  notificationAllowed(access: UserAccess, s: SessionRef, xml: string): boolean {
    if (access.bypass) return true;
    let event: XmlElement | undefined;
    try {
      event = parseXml(xml, UNLIMITED).children.find((c) => !(c.ns === NOTIFICATION_NS && c.name === 'eventTime'));
    } catch {
      return false;
    }
    if (!event) return true;
    const module = this.schema.moduleByNamespace(event.ns)?.name ?? event.ns;
    if (!access.notification(module, event.name)) {
      this.counters.deniedNotifications += 1;
      log.warn({ user: s.username, session: s.sessionId, notification: `${module}:${event.name}` }, 'NACM: notification denied');
      return false;
    }
    // Its content is data too: a notification that carries a node the user may not read is not
    // sent at all (sending it without the node would misstate the event).
    if (!access.permitsAllData('read') && event.children.length > 0 && this.schema.module(module)) {
      const step = { module, name: event.name };
      let removed: number;
      try {
        removed = pruneUnreadable(event.children, access, this.schema, { schemaPath: `/${module}:${event.name}`, path: [step] }).removed;
      } catch (err) {
        // A notification its module does not describe: judged by its name alone (done above).
        log.debug({ notification: `${module}:${event.name}`, err: err instanceof Error ? err.message : String(err) }, 'notification content not checked');
        removed = 0;
      }
      if (removed > 0) {
        this.counters.deniedNotifications += 1;
        log.warn({ user: s.username, session: s.sessionId, notification: `${module}:${event.name}` }, 'NACM: notification with unreadable content denied');
        return false;
      }
    }
    return true;
  }

  /** The config-false counters of ietf-netconf-acm, as RFC 7951 JSON for <get>. */
  stateJson(): Record<string, unknown> {
    return {
      'ietf-netconf-acm:nacm': {
        'denied-operations': this.counters.deniedOperations,
        'denied-data-writes': this.counters.deniedDataWrites,
        'denied-notifications': this.counters.deniedNotifications,
      },
    };
  }
}

export { NACM_NS };
