// commit (plain, confirmed, confirming; confirm-timeout, persist, persist-id) and cancel-commit,
// RFC 6241 section 8.4. A pending confirmed commit keeps the configuration it replaced and
// reverts to it on timeout, on cancel-commit, or when its session ends (unless persist was given).
import type { XmlElement } from '../netconf/xml-element.js';
import type { RpcContext, RpcResult } from '../netconf/rpc-dispatcher.js';
import { NetconfError } from '../../core/netconf-error.js';
import { logger } from '../../core/log.js';
import type { ConfigRoot } from '../datastore/config-tree.js';
import { confirmedCommitEvent, type ChangedBy } from '../notifications/netconf-events.js';
import { child, onlyParams, uintParam } from './rpc-params.js';
import type { ConfigService } from './config-service.js';

const log = logger('commit');
const OK: RpcResult = { ok: true };

interface PendingConfirm {
  sessionId: number;
  by: ChangedBy;
  persist?: string;
  /** Running as it was before the first confirmed commit of this series. */
  backup: ConfigRoot;
  timer: NodeJS.Timeout;
  deadline: number;
}

export class CommitOperations {
  private pending: PendingConfirm | undefined;

  constructor(private readonly svc: ConfigService) {}

  get pendingSession(): number | undefined {
    return this.pending?.sessionId;
  }

  async commit(ctx: RpcContext, op: XmlElement): Promise<RpcResult> {
    onlyParams(op, ['confirmed', 'confirm-timeout', 'persist', 'persist-id']);
    const svc = this.svc;
    const confirmed = !!child(op, 'confirmed');
    const timeoutEl = child(op, 'confirm-timeout');
    if (timeoutEl && !confirmed) {
      throw new NetconfError('missing-element', 'protocol', 'confirm-timeout needs <confirmed/>', { info: [{ name: 'bad-element', value: 'confirmed' }] });
    }
    const timeout = timeoutEl ? uintParam(timeoutEl, 1, 4294967295) : 600;
    const persist = child(op, 'persist')?.text.trim();
    const persistId = child(op, 'persist-id')?.text.trim();
    svc.checkNotLockedByOther('running', ctx.sessionId);
    svc.checkNotLockedByOther('candidate', ctx.sessionId);
    const p = this.pending;
    if (p) this.checkMayConfirm(p, ctx, persistId);
    else if (persistId !== undefined) {
      throw new NetconfError('invalid-value', 'protocol', 'no confirmed commit is pending for this persist-id', {
        info: [{ name: 'bad-element', value: 'persist-id' }],
      });
    }
    const by = svc.changedBy(ctx);
    const candidate = svc.store.candidate;
    // The configuration to go back to is on disk before the new one is (reverted at start if need be).
    const starting = confirmed && !p;
    if (starting) await svc.store.saveRollback(svc.store.running.root);
    let previous: ConfigRoot;
    try {
      previous = svc.store.candidateDirty
        ? await svc.commitRunning(candidate, by, svc.store.candidateChanges, svc.store.candidateOps)
        : svc.store.running.root;
    } catch (err) {
      if (starting) await svc.store.saveRollback(undefined);
      throw err;
    }
    svc.store.candidateOps = [];
    svc.store.candidateChanges = [];
    svc.store.candidateDirty = false;
    svc.store.candidateEditors.clear();
    if (!confirmed) {
      if (p) {
        clearTimeout(p.timer);
        this.pending = undefined;
        await svc.store.saveRollback(undefined);
        svc.hub.publish(confirmedCommitEvent(by, 'complete'));
        log.info({ session: ctx.sessionId }, 'confirmed commit confirmed');
      }
      return OK;
    }
    const deadline = Date.now() + timeout * 1000;
    if (p) {
      clearTimeout(p.timer);
      p.timer = this.arm(timeout);
      p.deadline = deadline;
      p.persist = persist ?? p.persist;
      if (!p.persist) p.sessionId = ctx.sessionId;
      svc.hub.publish(confirmedCommitEvent(by, 'extend', timeout));
    } else {
      this.pending = { sessionId: ctx.sessionId, by, persist, backup: previous, timer: this.arm(timeout), deadline };
      svc.hub.publish(confirmedCommitEvent(by, 'start', timeout));
      log.info({ session: ctx.sessionId, timeout, persist: persist !== undefined }, 'confirmed commit started');
    }
    return OK;
  }

  private checkMayConfirm(p: PendingConfirm, ctx: RpcContext, persistId: string | undefined): void {
    if (p.persist !== undefined) {
      if (persistId !== p.persist) {
        throw new NetconfError('invalid-value', 'protocol', persistId === undefined
          ? 'a persistent confirmed commit is pending: give its <persist-id>'
          : 'persist-id does not match the pending confirmed commit', {
          info: [{ name: 'bad-element', value: 'persist-id' }],
        });
      }
    } else if (p.sessionId !== ctx.sessionId) {
      throw new NetconfError('in-use', 'protocol', `a confirmed commit of session ${p.sessionId} is pending`, {
        info: [{ name: 'session-id', value: String(p.sessionId) }],
      });
    }
  }

  private arm(seconds: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      void this.svc.exclusiveRunningChange(() => this.revert('timeout'));
    }, Math.min(seconds * 1000, 2 ** 31 - 1));
    t.unref();
    return t;
  }

  /** Put back the configuration from before the confirmed commit. */
  private async revert(event: 'timeout' | 'cancel'): Promise<void> {
    const p = this.pending;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending = undefined;
    try {
      await this.svc.commitRunning(p.backup, p.by, [{ path: '/', operation: 'replace' }]);
      await this.svc.store.saveRollback(undefined);
      this.svc.store.resetCandidate();
      log.info({ event }, 'confirmed commit reverted');
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err), event }, 'reverting the confirmed commit failed');
    }
    this.svc.hub.publish(confirmedCommitEvent(p.by, event));
  }

  async cancelCommit(ctx: RpcContext, op: XmlElement): Promise<RpcResult> {
    onlyParams(op, ['persist-id']);
    const p = this.pending;
    if (!p) throw new NetconfError('operation-failed', 'protocol', 'no confirmed commit is pending');
    this.checkMayConfirm(p, ctx, child(op, 'persist-id')?.text.trim());
    await this.revert('cancel');
    return OK;
  }

  /** A session ended: its (non-persistent) confirmed commit is reverted. */
  async sessionEnded(sessionId: number): Promise<void> {
    const p = this.pending;
    if (p && p.persist === undefined && p.sessionId === sessionId) await this.revert('cancel');
  }

  close(): void {
    if (this.pending) clearTimeout(this.pending.timer);
  }
}
