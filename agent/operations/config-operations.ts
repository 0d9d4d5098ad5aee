// get-config, edit-config, copy-config, delete-config, validate, lock, unlock, discard-changes.
import type { XmlElement } from '../netconf/xml-element.js';
import type { RpcContext, RpcResult } from '../netconf/rpc-dispatcher.js';
import { NetconfError } from '../../core/netconf-error.js';
import type { DatastoreName } from '../datastore/config-store.js';
import type { ConfigRoot } from '../datastore/config-tree.js';
import { applyEditInSlices, configFromXml, MAX_LY_OPS, NETCONF_BASE_NS, type ErrorOption } from '../datastore/edit-config.js';
import { writeChildren } from '../datastore/xml-writer.js';
import { child, datastoreParam, onlyParams, required, withDefaultsParam, type DatastoreRef } from './rpc-params.js';
import { parseFilter } from './data-filter.js';
import { readDatastore } from './read-output.js';
import { throwErrors, yangCall, type ConfigService } from './config-service.js';
import { toNetconfErrors } from '../datastore/yang-errors.js';

const OK: RpcResult = { ok: true };

/** NACM's read filter of a reply body, and its write check of a datastore change (throws access-denied). */
export type ReadFilter = (text: string) => string;
export type WriteCheck = (before: ConfigRoot | undefined, after: ConfigRoot) => void;
const READ_ALL: ReadFilter = (text) => text;
const WRITE_ANY: WriteCheck = () => undefined;
const YANG_NS = 'urn:ietf:params:xml:ns:yang:1';
/** Edits of at least this many elements (about 3,000 firewall rules) are type-checked as the whole new candidate. */
const LARGE_EDIT_NODES = 20_000;

export function getConfig(svc: ConfigService, op: XmlElement, readable: ReadFilter = READ_ALL): RpcResult {
  onlyParams(op, ['source', 'filter', 'with-defaults']);
  const src = datastoreParam(op, 'source', false) as { datastore: DatastoreName };
  const filter = parseFilter(child(op, 'filter'), svc.schema);
  const body = readable(readDatastore(svc, src.datastore, withDefaultsParam(op), filter));
  return { xml: `<data xmlns="${NETCONF_BASE_NS}">${body}</data>` };
}

function choice<T extends string>(op: XmlElement, name: string, allowed: readonly T[], dflt: T): T {
  const el = child(op, name);
  if (!el) return dflt;
  const v = el.text.trim() as T;
  if (!allowed.includes(v)) {
    throw new NetconfError('invalid-value', 'protocol', `<${name}> must be one of ${allowed.join(', ')}, not '${v}'`, {
      info: [{ name: 'bad-element', value: name }],
    });
  }
  return v;
}

function notStartup(ds: DatastoreName, opName: string): void {
  if (ds === 'startup') {
    throw new NetconfError('operation-not-supported', 'protocol', `${opName} cannot target the startup datastore; use copy-config`, {
      info: [{ name: 'bad-element', value: 'target' }],
    });
  }
}

/** libyang checks the values an edit writes (types, patterns, ranges) before the candidate takes them. */
async function typeCheckEdit(svc: ConfigService, config: XmlElement): Promise<void> {
  const text = writeChildren(config, {
    skip: (el) => {
      const op = el.attrs.find((a) => a.name === 'operation' && a.ns === NETCONF_BASE_NS)?.value.trim();
      return op === 'delete' || op === 'remove';
    },
    dropAttr: (_el, a) => a.ns === NETCONF_BASE_NS || a.ns === YANG_NS,
  });
  if (text.trim() === '') return;
  // A large edit is parsed by the libyang worker; the errors say the allowed range, length or pattern.
  await svc.store.checkValues(text).catch((err: unknown) => throwErrors(toNetconfErrors(err)));
}

export async function editConfig(svc: ConfigService, ctx: RpcContext, op: XmlElement, writable: WriteCheck = WRITE_ANY): Promise<RpcResult> {
  onlyParams(op, ['target', 'default-operation', 'test-option', 'error-option', 'config', 'url']);
  const target = (datastoreParam(op, 'target', false) as { datastore: DatastoreName }).datastore;
  notStartup(target, 'edit-config');
  const defaultOperation = choice(op, 'default-operation', ['merge', 'replace', 'none'] as const, 'merge');
  const testOption = choice(op, 'test-option', ['test-then-set', 'set', 'test-only'] as const, 'test-then-set');
  const errorOption: ErrorOption = choice(op, 'error-option', ['stop-on-error', 'continue-on-error', 'rollback-on-error'] as const, 'stop-on-error');
  if (child(op, 'url')) {
    throw new NetconfError('operation-not-supported', 'protocol', 'the :url capability is not supported', { info: [{ name: 'bad-element', value: 'url' }] });
  }
  const config = required(op, 'config');
  svc.checkNotLockedByOther(target, ctx.sessionId);
  // In slices: a large edit lets the other sessions be served while it is applied.
  const result = await applyEditInSlices(svc.rootOf(target)!, config, svc.schema, { defaultOperation, errorOption });
  const base = result.root;
  if (target === 'candidate' && testOption !== 'test-only') {
    // A large edit: libyang checks the new candidate's values instead of the edit's (the same
    // values and errors, as the rest of the candidate was checked when written). Its XML, printed
    // in slices, is what the commit validates next: printed once, not twice.
    if (result.nodes >= LARGE_EDIT_NODES) await svc.store.checkValues(await svc.store.xmlInSlices(base)).catch((err: unknown) => throwErrors(toNetconfErrors(err)));
    else await typeCheckEdit(svc, config);
  }
  writable(svc.rootOf(target), base);
  if (testOption === 'test-only') {
    await svc.validateConfig(base);
  } else if (target === 'candidate') {
    svc.store.candidate = base;
    svc.store.candidateDirty = true;
    svc.store.candidateOps = svc.store.candidateOps && result.lyOps && svc.store.candidateOps.length + result.lyOps.length <= MAX_LY_OPS
      ? [...svc.store.candidateOps, ...result.lyOps] : undefined;
    if (svc.store.candidateChanges.length < 1000) svc.store.candidateChanges.push(...result.changes);
    svc.store.candidateEditors.add(ctx.sessionId);
  } else {
    await svc.commitRunning(base, svc.changedBy(ctx), result.changes, result.lyOps);
  }
  if (result.errors.length) throwErrors(result.errors);
  return OK;
}

/** The configuration a <source> names, as a new tree. */
function sourceRoot(svc: ConfigService, src: DatastoreRef): ConfigRoot {
  if ('config' in src) return configFromXml(src.config, svc.schema);
  const root = svc.rootOf(src.datastore);
  if (!root) {
    throw new NetconfError('invalid-value', 'application', `the ${src.datastore} datastore does not exist`, {
      info: [{ name: 'bad-element', value: src.datastore }],
    });
  }
  return root;
}

export async function copyConfig(svc: ConfigService, ctx: RpcContext, op: XmlElement, writable: WriteCheck = WRITE_ANY): Promise<RpcResult> {
  onlyParams(op, ['target', 'source', 'with-defaults']);
  const target = (datastoreParam(op, 'target', false) as { datastore: DatastoreName }).datastore;
  const src = datastoreParam(op, 'source', true);
  if ('datastore' in src && src.datastore === target) {
    throw new NetconfError('invalid-value', 'protocol', 'source and target are the same datastore', {
      info: [{ name: 'bad-element', value: 'target' }],
    });
  }
  const root = sourceRoot(svc, src);
  svc.checkNotLockedByOther(target, ctx.sessionId);
  if (target === 'candidate' && 'config' in src) await typeCheckEdit(svc, src.config);
  writable(svc.rootOf(target), root);
  if (target === 'running') {
    await svc.commitRunning(root, svc.changedBy(ctx), [{ path: '/', operation: 'replace' }]);
  } else if (target === 'candidate') {
    svc.store.candidate = root;
    svc.store.candidateOps = undefined;
    svc.store.candidateChanges = [{ path: '/', operation: 'replace' }];
    svc.store.candidateDirty = svc.store.xml(root) !== svc.store.xml(svc.store.running.root);
    if (svc.store.candidateDirty) svc.store.candidateEditors.add(ctx.sessionId);
    else svc.store.candidateEditors.clear();
  } else {
    const v = yangCall(() => svc.store.validated(root));
    v.tree.free();
    await svc.store.setStartup(root);
    svc.publishStartupChange(svc.changedBy(ctx));
  }
  return OK;
}

export async function deleteConfig(svc: ConfigService, ctx: RpcContext, op: XmlElement, writable: WriteCheck = WRITE_ANY): Promise<RpcResult> {
  onlyParams(op, ['target']);
  const target = (datastoreParam(op, 'target', false) as { datastore: DatastoreName }).datastore;
  if (target === 'running') {
    throw new NetconfError('invalid-value', 'protocol', 'the running datastore cannot be deleted', {
      info: [{ name: 'bad-element', value: 'running' }],
    });
  }
  svc.checkNotLockedByOther(target, ctx.sessionId);
  writable(svc.rootOf(target), { children: [] });
  if (target === 'candidate') {
    svc.store.candidate = { children: [] };
    svc.store.candidateOps = undefined;
    svc.store.candidateChanges = [{ path: '/', operation: 'delete' }];
    svc.store.candidateDirty = svc.store.running.root.children.length > 0;
    if (svc.store.candidateDirty) svc.store.candidateEditors.add(ctx.sessionId);
  } else {
    await svc.store.setStartup(undefined);
    svc.publishStartupChange(svc.changedBy(ctx));
  }
  return OK;
}

export async function validate(svc: ConfigService, op: XmlElement): Promise<RpcResult> {
  onlyParams(op, ['source']);
  const src = datastoreParam(op, 'source', true);
  await svc.validateConfig(sourceRoot(svc, src));
  return OK;
}

export function lock(svc: ConfigService, ctx: RpcContext, op: XmlElement, confirmedCommitBy?: number): RpcResult {
  onlyParams(op, ['target']);
  const target = (datastoreParam(op, 'target', false) as { datastore: DatastoreName }).datastore;
  const held = svc.locks.get(target);
  if (held) {
    throw new NetconfError('lock-denied', 'protocol', held.sessionId === ctx.sessionId
      ? `this session already holds the lock on ${target}`
      : `the ${target} datastore is locked by session ${held.sessionId}`, {
      info: [{ name: 'session-id', value: String(held.sessionId) }],
    });
  }
  if (target === 'candidate' && svc.store.candidateDirty) {
    const editor = [...svc.store.candidateEditors].find((s) => s !== ctx.sessionId) ?? [...svc.store.candidateEditors][0] ?? 0;
    throw new NetconfError('lock-denied', 'protocol', 'the candidate has uncommitted changes; commit or discard them first', {
      info: [{ name: 'session-id', value: String(editor) }],
    });
  }
  if (target === 'running' && confirmedCommitBy !== undefined && confirmedCommitBy !== ctx.sessionId) {
    throw new NetconfError('lock-denied', 'protocol', `session ${confirmedCommitBy} has a confirmed commit pending`, {
      info: [{ name: 'session-id', value: String(confirmedCommitBy) }],
    });
  }
  svc.locks.set(target, { sessionId: ctx.sessionId, since: new Date().toISOString() });
  return OK;
}

export function unlock(svc: ConfigService, ctx: RpcContext, op: XmlElement): RpcResult {
  onlyParams(op, ['target']);
  const target = (datastoreParam(op, 'target', false) as { datastore: DatastoreName }).datastore;
  const held = svc.locks.get(target);
  if (!held || held.sessionId !== ctx.sessionId) {
    throw new NetconfError('operation-failed', 'protocol', held
      ? `the lock on ${target} is held by session ${held.sessionId}, not this one`
      : `the ${target} datastore is not locked`, {
      info: held ? [{ name: 'session-id', value: String(held.sessionId) }] : [],
    });
  }
  // The candidate keeps its changes: the session may still commit or discard them (Ansible's
  // netconf_config with commit: false relies on it). Abandoned changes are discarded when the
  // session ends.
  svc.locks.delete(target);
  return OK;
}

/** Release the locks of a session that ended; an abandoned locked candidate is discarded. */
export function releaseSessionLocks(svc: ConfigService, sessionId: number): void {
  for (const [ds, l] of [...svc.locks]) {
    if (l.sessionId !== sessionId) continue;
    svc.locks.delete(ds);
    if (ds === 'candidate' && svc.store.candidateDirty) svc.store.resetCandidate();
  }
}

export function discardChanges(svc: ConfigService, ctx: RpcContext, op: XmlElement): RpcResult {
  onlyParams(op, []);
  svc.checkNotLockedByOther('candidate', ctx.sessionId);
  svc.store.resetCandidate();
  return OK;
}
