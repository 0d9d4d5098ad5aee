// The NETCONF operations layer: the RpcDispatcher the protocol layer calls, over the datastores,
// the commit transaction, monitoring, notifications and the RPCs that subsystems implement. Every
// operation passes NACM (agent/nacm) first: exec here, read and write where data is read or changed.
import type { DataTree, YangContext } from '../../yang/libyang/api.js';
import type { XmlElement } from '../netconf/xml-element.js';
import type { RpcContext, RpcDispatcher, RpcResult, SessionInfo } from '../netconf/rpc-dispatcher.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import type { CommitFaultHooks, CommitSubsystem, RpcProvider, StateProvider } from '../../core/subsystem.js';
import { NETCONF_BASE_NS } from '../datastore/edit-config.js';
import { writeXml } from '../datastore/xml-writer.js';
import { parseXml } from '../netconf/xml-parser.js';
import { MONITORING_NS, getSchema } from '../monitoring/netconf-monitoring.js';
import { moduleCapabilities } from '../monitoring/yang-library.js';
import { NOTIFICATION_NS } from '../notifications/notification-hub.js';
import { sessionEndEvent, sessionStartEvent } from '../notifications/netconf-events.js';
import { ConfigService, yangCall } from './config-service.js';
import { copyConfig, deleteConfig, discardChanges, editConfig, getConfig, lock, releaseSessionLocks, unlock, validate, type WriteCheck } from './config-operations.js';
import { CommitOperations } from './commit-operations.js';
import { NMDA_NS, get, getData, type ReadContext } from './read-operations.js';
import { parseFilter } from './data-filter.js';
import { onlyParams, required, uintParam } from './rpc-params.js';
import { Nacm, type UserDirectory } from '../nacm/nacm.js';
import type { UserAccess } from '../nacm/user-access.js';
import { FACTORY_NACM_XML } from '../nacm/factory-nacm.js';
import { UserStore } from '../ssh/user-store.js';
import type { ConfigNode, ConfigRoot } from '../datastore/config-tree.js';
import { changedTopLevel } from '../nacm/changed-subtrees.js';

const log = logger('operations');

export interface NetconfOperations extends RpcDispatcher {
  /** Subsystems raise YANG notifications (RFC 7951 JSON) through this. */
  notify(notification: Record<string, unknown>): void;
  /** Stop timers (confirmed-commit), flush datastores. */
  close(): Promise<void>;
}

/** A get-config whose source is running. */
function readsCommittedRunning(op: XmlElement): boolean {
  const source = op.children.find((c) => c.name === 'source');
  return !!source && source.children.length === 1 && source.children[0]!.name === 'running';
}

export interface NetconfOperationsOptions {
  yang: YangContext;
  stateDir: string;
  startupFile?: string;
  /** Initial configuration of a fresh state directory when there is no startupFile (the agent: the factory configuration). */
  factoryConfig?: string;
  subsystems: CommitSubsystem[];
  stateProviders: StateProvider[];
  rpcProviders: RpcProvider[];
  /** Test-only fault injection into every commit transaction (not reachable from NETCONF). */
  faults?: CommitFaultHooks;
  /** Users' NACM groups (RFC 8341 2.5); default: the user store of stateDir. */
  users?: UserDirectory;
}

const BASE_CAPABILITIES = [
  'urn:ietf:params:netconf:capability:writable-running:1.0',
  'urn:ietf:params:netconf:capability:candidate:1.0',
  'urn:ietf:params:netconf:capability:confirmed-commit:1.0',
  'urn:ietf:params:netconf:capability:confirmed-commit:1.1',
  'urn:ietf:params:netconf:capability:rollback-on-error:1.0',
  'urn:ietf:params:netconf:capability:validate:1.0',
  'urn:ietf:params:netconf:capability:validate:1.1',
  'urn:ietf:params:netconf:capability:startup:1.0',
  'urn:ietf:params:netconf:capability:xpath:1.0',
  'urn:ietf:params:netconf:capability:notification:1.0',
  'urn:ietf:params:netconf:capability:interleave:1.0',
  'urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit&also-supported=report-all,report-all-tagged,trim',
];

/** Modules this layer implements itself, announced when the YANG context does not carry them. */
const OWN_MODULES: { name: string; ns: string; revision: string }[] = [
  { name: 'ietf-netconf-monitoring', ns: MONITORING_NS, revision: '2010-10-04' },
  { name: 'ietf-netconf-nmda', ns: NMDA_NS, revision: '2019-01-07' },
  { name: 'ietf-netconf-notifications', ns: 'urn:ietf:params:xml:ns:yang:ietf-netconf-notifications', revision: '2012-02-06' },
  { name: 'ietf-netconf-with-defaults', ns: 'urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults', revision: '2011-06-01' },
  { name: 'nc-notifications', ns: 'urn:ietf:params:xml:ns:netmod:notification', revision: '2008-07-14' },
];

/** The element with every unqualified element of its subtree put in namespace `ns`. */
function inNamespace(el: XmlElement, ns: string): XmlElement {
  return { ...el, ns: el.ns || ns, nsScope: { ...el.nsScope, '': el.nsScope[''] || ns }, children: el.children.map((c) => inNamespace(c, ns)) };
}

type Handler = (ctx: RpcContext, op: XmlElement, access: UserAccess) => RpcResult | Promise<RpcResult>;

class OperationsLayer implements NetconfOperations {
  private readonly handlers = new Map<string, Handler>();
  private readonly commits: CommitOperations;
  private readonly read: ReadContext;
  private closed = false;
  private capsMemo: { from: readonly string[]; operations: readonly string[]; announced: readonly string[] } | undefined;

  constructor(private readonly svc: ConfigService, private readonly nacm: Nacm) {
    this.commits = new CommitOperations(svc);
    this.read = { svc, capabilities: () => this.capabilitySets().announced };
    const base = (name: string, h: Handler, exclusive = true) =>
      this.handlers.set(`${NETCONF_BASE_NS} ${name}`, exclusive ? (c, o, a) => svc.exclusive(async () => h(c, o, a)) : h);
    // get reads the last committed running too, without the queue: the providers' state is gathered
    // first, then running's tree is read at a moment no commit is editing it in place.
    const unqueued: ReadContext = {
      ...this.read,
      readRunning: async (fn) => (svc.runningReadableNow ? fn() : svc.exclusive(async () => fn())),
    };
    base('get', (c, o, a) => get(unqueued, o, this.readable(c, a, 'get')), false);
    // get-config of running reads the last committed running without waiting behind a commit in
    // progress (a commit that parses a new tree leaves running's alone until it is committed); only
    // while a small commit has edited running's tree in place does it wait its turn.
    base('get-config', (c, o, a) => (readsCommittedRunning(o) && svc.runningReadableNow
      ? getConfig(svc, o, this.readable(c, a, 'get-config'))
      : svc.exclusive(async () => getConfig(svc, o, this.readable(c, a, 'get-config')))), false);
    base('edit-config', (c, o, a) => editConfig(svc, c, o, this.writable(c, a, 'edit-config')));
    base('copy-config', (c, o, a) => copyConfig(svc, c, o, this.writable(c, a, 'copy-config')));
    base('delete-config', (c, o, a) => deleteConfig(svc, c, o, this.writable(c, a, 'delete-config')));
    base('lock', (c, o) => lock(svc, c, o, this.commits.pendingSession));
    base('unlock', (c, o) => unlock(svc, c, o));
    base('validate', (_c, o) => validate(svc, o));
    base('commit', (c, o) => this.commits.commit(c, o));
    base('cancel-commit', (c, o) => this.commits.cancelCommit(c, o));
    base('discard-changes', (c, o) => discardChanges(svc, c, o));
    base('close-session', (c, o) => {
      onlyParams(o, []);
      c.closeAfterReply();
      return { ok: true };
    }, false);
    base('kill-session', (c, o) => this.killSession(c, o), false);
    this.handlers.set(`${MONITORING_NS} get-schema`, (_c, o) => ({ xml: getSchema(o, svc.yang) }));
    this.handlers.set(`${NMDA_NS} get-data`, (c, o, a) => svc.exclusive(() => getData(this.read, o, this.readable(c, a, 'get-data'))));
    this.handlers.set(`${NOTIFICATION_NS} create-subscription`, (c, o, a) => this.subscribe(c, o, a));
    for (const p of svc.rpcProviders) {
      const [, mod, name] = /^\/([^:]+):(.+)$/.exec(p.rpcPath) ?? [];
      const ns = mod ? svc.schema.module(mod)?.namespace : undefined;
      if (!ns || !name) {
        log.warn({ rpc: p.rpcPath }, 'rpc provider for an unknown module ignored');
        continue;
      }
      this.handlers.set(`${ns} ${name}`, (_c, o) => this.invokeProvider(p, mod, name, o));
    }
  }

  /** Read access of a reply: what the user may not read is left out (RFC 8341 3.4.5). */
  private readable(ctx: RpcContext, access: UserAccess, operation: string): (text: string) => string {
    return (text) => this.nacm.filterRead(access, ctx, operation, text);
  }

  /** Write access of a change of a datastore, from libyang's diff of before and after (RFC 8341 3.4.5). */
  private writable(ctx: RpcContext, access: UserAccess, operation: string): WriteCheck {
    return (whole, next) => this.nacm.checkWrite(access, ctx, operation, () => {
      const xmlOf = (n: ConfigNode) => this.svc.store.xml({ children: [n] });
      const { before, after } = changedTopLevel(whole ?? { children: [] }, next, xmlOf);
      const b = yangCall(() => this.svc.store.tree(before, false));
      try {
        return { before: b, after: yangCall(() => this.svc.store.tree(after, false)) };
      } catch (err) {
        b.free();
        throw err;
      }
    });
  }

  private killSession(ctx: RpcContext, op: XmlElement): RpcResult {
    onlyParams(op, ['session-id']);
    const id = uintParam(required(op, 'session-id'), 1, 4294967295);
    if (id === ctx.sessionId) {
      throw new NetconfError('invalid-value', 'protocol', 'a session cannot kill itself; use close-session', {
        info: [{ name: 'bad-element', value: 'session-id' }],
      });
    }
    if (!ctx.killSession(id)) {
      throw new NetconfError('invalid-value', 'protocol', `no session ${id}`, { info: [{ name: 'bad-element', value: 'session-id' }] });
    }
    return { ok: true };
  }

  private subscribe(ctx: RpcContext, op: XmlElement, access: UserAccess): RpcResult {
    onlyParams(op, ['stream', 'filter', 'startTime', 'stopTime']);
    const filterEl = op.children.find((c) => c.name === 'filter');
    const filter = parseFilter(filterEl, this.svc.schema);
    let xpathMatch: ((content: string) => boolean) | undefined;
    if (filter?.kind === 'xpath') {
      // Notifications of YANG modules in the context are matched by libyang; others do not match.
      xpathMatch = (content) => {
        try {
          const tree = this.svc.yang.parse(content, { format: 'xml', kind: 'notification' });
          try {
            return tree.xpath(filter.expr).length > 0;
          } finally {
            tree.free();
          }
        } catch {
          return false;
        }
      };
    }
    // Every notification passes NACM under the rules in force when it is sent (RFC 8341 3.4.6).
    const guarded: RpcContext = {
      ...ctx,
      sendNotification: (xml) => {
        if (this.nacm.notificationAllowed(this.nacm.currentAccess(ctx) ?? access, ctx, xml)) ctx.sendNotification(xml);
      },
    };
    this.svc.hub.subscribe(guarded, op, filter, xpathMatch);
    return { ok: true };
  }

  private async invokeProvider(p: RpcProvider, mod: string, name: string, op: XmlElement): Promise<RpcResult> {
    const svc = this.svc;
    const inputTree = yangCall(() => svc.yang.parse(writeXml(op), { format: 'xml', kind: 'rpc' }));
    let input: Record<string, unknown>;
    try {
      const text = yangCall(() => inputTree.print({ format: 'json' }));
      const parsed = text.trim() ? JSON.parse(text) as Record<string, unknown> : {};
      input = (parsed[`${mod}:${name}`] ?? {}) as Record<string, unknown>;
    } finally {
      inputTree.free();
    }
    let output: Record<string, unknown>;
    try {
      output = await p.invoke(input);
    } catch (err) {
      if (err instanceof NetconfError) throw err;
      throw new NetconfError('operation-failed', 'application', `${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!output || Object.keys(output).length === 0) return { ok: true };
    // Output children, module-qualified at the top as RFC 7951 wants them.
    const qualified = Object.fromEntries(Object.entries(output).map(([k, v]) => [k.includes(':') ? k : `${mod}:${k}`, v]));
    const reply = yangCall(() => svc.yang.parse(JSON.stringify(qualified), { format: 'json', kind: 'reply', rpcPath: p.rpcPath }));
    try {
      // libyang prints the rpc node around the output: the rpc-reply holds only the output nodes.
      const printed = parseXml(yangCall(() => reply.print({ format: 'xml' })));
      return { xml: printed.children.map((c) => writeXml(c)).join('') };
    } finally {
      reply.free();
    }
  }

  async dispatch(ctx: RpcContext, op: XmlElement): Promise<RpcResult> {
    if (this.closed) throw new NetconfError('operation-failed', 'application', 'the agent is shutting down');
    let handler = this.handlers.get(`${op.ns} ${op.name}`);
    if (!handler && op.ns === '') {
      // A namespace-less operation (Ansible's netconf_rpc without xmlns): accept it when its name is unambiguous.
      const found = [...this.handlers.entries()].filter(([k]) => k.endsWith(` ${op.name}`));
      if (found.length === 1) {
        handler = found[0][1];
        op = inNamespace(op, found[0][0].slice(0, found[0][0].length - op.name.length - 1));
      }
    }
    if (!handler) {
      throw new NetconfError('operation-not-supported', 'protocol', `operation '${op.name}'${op.ns ? ` in namespace '${op.ns}'` : ''} is not supported`, {
        info: [{ name: 'bad-element', value: op.name }],
      });
    }
    // Every operation, base or tandem, passes NACM's exec check first (RFC 8341 3.4.4).
    const access = await this.nacm.access(ctx);
    this.nacm.checkExec(access, ctx, this.svc.schema.moduleByNamespace(op.ns)?.name ?? op.ns, op.name);
    return handler(ctx, op, access);
  }

  sessionStarted(info: SessionInfo): void {
    this.svc.sessions.started(info);
    this.nacm.sessionStarted(info);
    this.svc.hub.publish(sessionStartEvent({ username: info.username, sessionId: info.sessionId, sourceHost: info.sourceHost }));
  }

  sessionEnded(sessionId: number, reason: 'closed' | 'killed' | 'dropped' | 'timeout', killedBy?: number): void {
    const info = this.svc.sessions.ended(sessionId, reason);
    this.svc.hub.sessionEnded(sessionId);
    this.nacm.sessionEnded(sessionId);
    const reverts = this.commits.pendingSession === sessionId;
    void (reverts ? this.svc.exclusiveRunningChange.bind(this.svc) : this.svc.exclusive.bind(this.svc))(async () => {
      releaseSessionLocks(this.svc, sessionId);
      // A candidate changed only by sessions that are gone is discarded, so it blocks no one.
      const editors = this.svc.store.candidateEditors;
      editors.delete(sessionId);
      if (this.svc.store.candidateDirty && editors.size === 0 && !this.svc.locks.has('candidate')) this.svc.store.resetCandidate();
      await this.commits.sessionEnded(sessionId);
    }).catch((err: unknown) => log.error({ err, sessionId }, 'session cleanup failed'));
    if (info) {
      this.svc.hub.publish(sessionEndEvent({ username: info.username, sessionId, sourceHost: info.sourceHost }, reason, killedBy));
    }
  }

  badHello(): void {
    this.svc.sessions.badHellos += 1;
  }

  capabilities(): string[] {
    return [...this.capabilitySets().operations];
  }

  /** Computed once per module set (moduleCapabilities gives the same array until a module is loaded). */
  private capabilitySets(): { from: readonly string[]; operations: readonly string[]; announced: readonly string[] } {
    const from = moduleCapabilities(this.svc.yang);
    if (this.capsMemo?.from === from) return this.capsMemo;
    const caps = [...BASE_CAPABILITIES, ...from];
    for (const m of OWN_MODULES) {
      if (!this.svc.schema.module(m.name)) caps.push(`${m.ns}?module=${m.name}&revision=${m.revision}`);
    }
    // netconf-state lists the base capabilities too, as the hello does.
    const announced = Object.freeze(['urn:ietf:params:netconf:base:1.0', 'urn:ietf:params:netconf:base:1.1', ...caps]);
    this.capsMemo = { from, operations: Object.freeze(caps), announced };
    return this.capsMemo;
  }

  notify(notification: Record<string, unknown>): void {
    try {
      const tree = this.svc.yang.parse(JSON.stringify(notification), { format: 'json', kind: 'notification' });
      try {
        this.svc.hub.publish(tree.print({ format: 'xml' }));
      } finally {
        tree.free();
      }
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err), notification }, 'invalid notification from a subsystem dropped');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.commits.close();
    this.svc.hub.close();
    // A clean stop leaves running.xml current (a small datastore's journal folded into it).
    this.svc.stopFolding();
    await this.svc.exclusive(() => this.svc.foldJournal());
    this.svc.store.journal.close();
    await this.svc.store.close();
  }
}

const NACM_PATH = '/ietf-netconf-acm:nacm';

/**
 * A version of running's NACM rules: the same while running's NACM subtree is the same object
 * (stored trees are never changed in place; a commit shares every subtree it did not change), so
 * the rules are compiled again only when a commit changed them, not after every commit (issue 8:
 * printing and compiling them was ~0.2 ms of each small commit's next RPC). While a commit has
 * running's libyang tree changed in place, every call is a new version (the rules are read from
 * that tree, as before).
 */
class NacmVersion {
  private node: ConfigNode | undefined;
  private version = 0;
  private inFlux = 0;

  of(store: { running: { root: ConfigRoot }; runningTreeInFlux: boolean }): number {
    if (store.runningTreeInFlux) return -(++this.inFlux);
    const node = nacmNode(store.running.root);
    if (this.version === 0 || node !== this.node) {
      this.node = node;
      this.version += 1;
    }
    return this.version;
  }
}

function nacmNode(root: ConfigRoot): ConfigNode | undefined {
  return root.children.find((c) => c.schema.module === 'ietf-netconf-acm' && c.schema.name === 'nacm');
}

/** Does the stored configuration hold a NACM subtree (the libyang tree always has the defaults)? */
function hasNacm(root: ConfigRoot): boolean {
  return nacmNode(root) !== undefined;
}

async function installFactoryNacm(svc: ConfigService): Promise<void> {
  const running = svc.store.running;
  // A --startup file with its own NACM configuration keeps it (the libyang tree always holds the
  // non-presence container with its defaults, so the stored nodes are what tells).
  if (hasNacm(running.root)) return;
  const factory = svc.store.parseDocument(FACTORY_NACM_XML);
  const root: ConfigRoot = { children: [...running.root.children, ...factory.children] };
  await svc.commitRunning(root, undefined, [{ path: NACM_PATH, operation: 'create' }]);
  // Startup was created equal to the initial running (config-service start): it gets the rules too.
  await svc.store.setStartup(svc.store.running.root);
  log.info('fresh state directory: factory NACM configuration installed (group admin: everything; others: RFC 8341 defaults)');
}

export async function createNetconfOperations(opts: NetconfOperationsOptions): Promise<NetconfOperations> {
  const stateProviders = [...opts.stateProviders];
  const svc = new ConfigService(opts.yang, opts.stateDir, opts.subsystems, stateProviders, opts.rpcProviders, opts.faults);
  // A state directory that has never held a configuration gets the factory NACM configuration.
  const fresh = svc.store.isFresh();
  await svc.start(opts.startupFile, opts.factoryConfig);
  if (fresh) await installFactoryNacm(svc);
  const printNacm = (tree: DataTree): Record<string, unknown> => {
    const part = tree.selectSubtrees(NACM_PATH);
    try {
      const text = part.print({ format: 'json', withDefaults: 'report-all' });
      return text.trim() ? JSON.parse(text) as Record<string, unknown> : {};
    } finally {
      part.free();
    }
  };
  let factoryJson: Record<string, unknown> | undefined;
  const nacmVersion = new NacmVersion();
  const nacm = new Nacm(opts.yang, svc.schema, opts.users ?? new UserStore(opts.stateDir), {
    version: () => nacmVersion.of(svc.store),
    nacmJson: () => {
      if (hasNacm(svc.store.running.root)) return printNacm(svc.store.running.tree);
      // No NACM configuration at all (e.g. running replaced by copy-config with a file that has
      // none): the factory rules apply, so that group admin is not locked out by a copy.
      if (!factoryJson) {
        const tree = yangCall(() => opts.yang.parse(FACTORY_NACM_XML, { format: 'xml', kind: 'config', validate: false }));
        try {
          factoryJson = printNacm(tree);
        } finally {
          tree.free();
        }
      }
      return factoryJson;
    },
  });
  stateProviders.push({ name: 'nacm', state: () => nacm.stateJson() });
  log.info({ stateDir: opts.stateDir, subsystems: opts.subsystems.map((s) => s.name) }, 'operations ready');
  return new OperationsLayer(svc, nacm);
}
