// An in-place firewall rule edit (nft-rule-edit.ts) sent as one nf_tables netlink batch from the
// agent's own process, on a socket in the VRF's namespace kept open between commits
// (NftRuleEditSocket). Unlike `nft -f`, which loads the table's whole rule cache for any
// `insert rule ... position N` (nft 1.0.6), this costs the same whatever the number of rules:
// one sendmsg and the kernel's answers.
//  - check (prepare): the batch without its BATCH_END: the kernel runs every step and then aborts
//    the transaction (what `nft -c` does), answering each step (errno 0 or its refusal).
//  - apply: the batch with its BATCH_END: one transaction, all or nothing; inserted rules are
//    echoed back (NLM_F_ECHO) with their new handles, read from their comment `rule NAME`.
// Test hook (test/linux/nft-rule-edit.test.ts, test/ha/commit-faults-linux.test.ts): when the
// file TANDEM_TEST_REFUSE_RULE_EDIT names exists, the next apply removes it and ends its batch with
// a step the kernel refuses (delete of rule handle 0), so the kernel refuses the whole transaction
// after the check passed.
import { existsSync, rmSync, statSync } from 'node:fs';
import { namespacePath } from './network-namespace.js';
import { constants as osConstants } from 'node:os';
import type { RawNetlinkSocket } from 'netlink';
import { guardNetlinkCallback } from './netlink-callback-guard.js';
import { openNetfilterSocket } from './conntrack-netlink.js';
import { decodeError, splitMessages } from './ctnetlink-codec.js';
import { NFNL_SUBSYS_NFTABLES, nfnlMessage, NFPROTO_INET, nlAttribute, nlAttributes, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR } from './nfnetlink-message.js';
import { TABLE, DEFAULT_ACCEPT_COUNTER, DEFAULT_DROP_COUNTER } from './nft-ruleset.js';
import { counterRef, nested, ruleExpressions, ruleUserdata, verdict } from './nft-rule-expressions.js';
import type { RuleEditOp } from './nft-rule-edit.js';

const NFNL_MSG_BATCH_BEGIN = 16;
const NFNL_MSG_BATCH_END = 17;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_DELRULE = 8;
const NFT_MSG_NEWOBJ = 18;
const NFT_MSG_DELOBJ = 20;
const NLM_F_ECHO = 0x8;
const NLM_F_REPLACE = 0x100;
const NLM_F_CREATE = 0x400;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_POSITION = 6;
const NFTA_RULE_USERDATA = 7;
const NFTA_OBJ_TABLE = 1;
const NFTA_OBJ_NAME = 2;
const NFTA_OBJ_TYPE = 3;
const NFTA_OBJ_DATA = 4;
const NFTA_COUNTER_BYTES = 1;
const NFTA_COUNTER_PACKETS = 2;
const NFT_OBJECT_COUNTER = 1;
const CHAIN = 'forward';
const RECEIVE_BUFFER = 1 << 20;
const ANSWER_TIMEOUT_MS = 10_000;
const FIRST_SEQ = 1;

function str(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n), 0);
  return b;
}

function message(type: number, flags: number, seq: number, attrs: Buffer[]): Buffer {
  return nfnlMessage((NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_REQUEST | NLM_F_ACK | flags, seq, NFPROTO_INET, 0, Buffer.concat(attrs));
}

const ruleHead = (): Buffer[] => [nlAttribute(NFTA_RULE_TABLE, str(TABLE)), nlAttribute(NFTA_RULE_CHAIN, str(CHAIN))];

function counterObject(name: string, withData: boolean): Buffer[] {
  const attrs = [nlAttribute(NFTA_OBJ_TABLE, str(TABLE)), nlAttribute(NFTA_OBJ_NAME, str(name)), nlAttribute(NFTA_OBJ_TYPE, u32(NFT_OBJECT_COUNTER))];
  if (withData) attrs.push(nested(NFTA_OBJ_DATA, nlAttribute(NFTA_COUNTER_BYTES, u64(0)), nlAttribute(NFTA_COUNTER_PACKETS, u64(0))));
  return attrs;
}

/** One step as its nf_tables message (echo: inserted rules come back with their handles). */
export function encodeOp(op: RuleEditOp, seq: number, echo: boolean): Buffer {
  const e = echo ? NLM_F_ECHO : 0;
  switch (op.op) {
    case 'delete-rule':
      return message(NFT_MSG_DELRULE, 0, seq, [...ruleHead(), nlAttribute(NFTA_RULE_HANDLE, u64(op.handle))]);
    case 'delete-counter':
      return message(NFT_MSG_DELOBJ, 0, seq, counterObject(op.name, false));
    case 'add-counter':
      return message(NFT_MSG_NEWOBJ, NLM_F_CREATE, seq, counterObject(op.name, true));
    case 'insert-rule':
      // Without NLM_F_APPEND, NFTA_RULE_POSITION inserts before that rule (nft's `insert ... position`).
      return message(NFT_MSG_NEWRULE, NLM_F_CREATE | e, seq,
        [...ruleHead(), nlAttribute(NFTA_RULE_POSITION, u64(op.position)), ruleExpressions(op.rule), ruleUserdata(op.rule.name)]);
    case 'replace-default':
      return message(NFT_MSG_NEWRULE, NLM_F_REPLACE, seq, [...ruleHead(), nlAttribute(NFTA_RULE_HANDLE, u64(op.handle)),
        nested(4 /* NFTA_RULE_EXPRESSIONS */, counterRef(op.action === 'drop' ? DEFAULT_DROP_COUNTER : DEFAULT_ACCEPT_COUNTER), verdict(op.action))]);
  }
}

/** The whole batch: BATCH_BEGIN, the steps (seq first + i), and BATCH_END unless it is a check. */
export function encodeBatch(ops: RuleEditOp[], check: boolean, first = FIRST_SEQ): Buffer {
  const parts = [nfnlMessage(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0))];
  ops.forEach((op, i) => parts.push(encodeOp(op, first + i, !check)));
  if (!check) parts.push(nfnlMessage(NFNL_MSG_BATCH_END, NLM_F_REQUEST, first + ops.length, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

function errnoName(errno: number): string {
  const name = Object.entries(osConstants.errno).find(([, n]) => n === errno)?.[0];
  return name ? `${name} (errno ${errno})` : `errno ${errno}`;
}

function describe(op: RuleEditOp | undefined): string {
  if (!op) return 'the transaction';
  switch (op.op) {
    case 'delete-rule': return `delete rule handle ${op.handle}`;
    case 'delete-counter': return `delete counter ${op.name}`;
    case 'add-counter': return `add counter ${op.name}`;
    case 'insert-rule': return `insert rule ${op.rule.name} before handle ${op.position}`;
    case 'replace-default': return `replace the default-action rule (handle ${op.handle})`;
  }
}

/** Name -> handle of the rules a NEWRULE echo carries (their comment `rule NAME`). */
function echoedRule(payload: Buffer): [string, number] | undefined {
  const attrs = nlAttributes(payload.subarray(4)); // after struct nfgenmsg
  const handle = attrs.get(NFTA_RULE_HANDLE);
  const udata = attrs.get(NFTA_RULE_USERDATA);
  if (!handle || !udata || udata.length < 2 || udata[0] !== 0) return undefined;
  const comment = udata.subarray(2, 2 + udata[1]!).toString('utf8').replace(/\0$/, '');
  return comment.startsWith('rule ') ? [comment.slice('rule '.length), Number(handle.readBigUInt64BE(0))] : undefined;
}

/** The test hook's refused step, when its file exists (removed: it fires once). */
function injectedRefusal(): RuleEditOp[] {
  const mark = process.env.TANDEM_TEST_REFUSE_RULE_EDIT;
  if (!mark || !existsSync(mark)) return [];
  rmSync(mark, { force: true });
  return [{ op: 'delete-rule', handle: 0 }];
}

/** The edit being answered on a rule-edit socket. */
interface PendingEdit {
  /** Sequence numbers of its steps: first .. first + ops.length - 1 (older answers are ignored). */
  first: number;
  ops: RuleEditOp[];
  mode: 'check' | 'apply';
  handles: Map<string, number>;
  acked: number;
  done: (err?: Error) => void;
}

/**
 * The nf_tables socket of one VRF namespace for in-place rule edits, kept open between commits:
 * opening one (a socket in the namespace, its fd found among the process's, its options set)
 * cost about as much as the edit itself under load. Opened at the first edit, closed with the
 * VRF or the engine (close()), and dropped after any failure of its own (socket error, an answer
 * not understood, no answer in time): the next edit opens a new one. A refusal by the kernel is
 * an answer, not a failure: the socket stays. Edits run one at a time; each takes fresh sequence
 * numbers, so a late answer to an earlier edit is never taken for one of the current edit.
 */
export class NftRuleEditSocket {
  private socket?: RawNetlinkSocket;
  /** Device and inode of the namespace the socket was opened in (a namespace removed and made again is another one). */
  private socketNamespace?: string;
  private nextSeq = FIRST_SEQ;
  private current?: PendingEdit;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Sockets opened so far (a kept socket: one for any number of edits without failures). */
  opened = 0;

  constructor(readonly namespace: string | undefined) {}

  /**
   * Sends the edit. check: the kernel runs and aborts it (resolves when it took every step).
   * Apply: one transaction; resolves with the handles of the inserted rules. Rejects with the
   * kernel's refusal and the step it refused (nothing of the batch is applied).
   */
  send(steps: RuleEditOp[], mode: 'check' | 'apply'): Promise<Map<string, number>> {
    const next = this.chain.then(() => this.sendOne(steps, mode), () => this.sendOne(steps, mode));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Closes the socket; an edit in progress fails, later ones are refused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.done(new Error('nf_tables rule edit socket closed'));
    this.drop();
  }

  /** The namespace's identity now; throws when it is gone (a socket would keep the old one alive). */
  private namespaceIdentity(): string | undefined {
    if (this.namespace === undefined) return undefined;
    let st;
    try {
      st = statSync(namespacePath(this.namespace));
    } catch {
      throw new Error(`network namespace ${this.namespace} is gone`);
    }
    return `${st.dev}:${st.ino}`;
  }

  private open(): RawNetlinkSocket {
    // A kept socket serves only the namespace it was opened in: an edit sent on it after the
    // namespace was removed would succeed in a namespace nobody sees any more.
    const identity = this.namespaceIdentity();
    if (this.socket && identity === this.socketNamespace) return this.socket;
    this.drop();
    const { socket } = openNetfilterSocket(this.namespace, RECEIVE_BUFFER);
    this.socketNamespace = identity;
    this.opened++;
    // Thrown errors must not reach the addon's native callback (it would abort the process): the edit fails.
    const failed = (err: Error): void => this.fail(socket, new Error(`nf_tables answer not understood: ${err.message}`));
    socket.on('error', guardNetlinkCallback('nft-rule-edit', (err: Error) => this.fail(socket, new Error(`nf_tables socket: ${err.message}`)), failed));
    socket.on('message', guardNetlinkCallback('nft-rule-edit', (datagram: Buffer) => this.receive(datagram), failed));
    this.socket = socket;
    return socket;
  }

  /** A failure of the socket itself: the edit fails, the socket is not used again. */
  private fail(socket: RawNetlinkSocket, err: Error): void {
    if (socket !== this.socket) return;
    this.drop();
    this.current?.done(err);
  }

  private drop(): void {
    if (this.socket) close(this.socket);
    this.socket = undefined;
    this.socketNamespace = undefined;
  }

  private receive(datagram: Buffer): void {
    const p = this.current;
    if (!p) return;
    const last = p.first + p.ops.length - 1;
    for (const msg of splitMessages(datagram)) {
      if (msg.seq < p.first || msg.seq > last) continue; // an earlier edit's late answer
      if (msg.type === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) {
        const rule = echoedRule(msg.payload);
        if (rule) p.handles.set(rule[0], rule[1]);
        continue;
      }
      if (msg.type !== NLMSG_ERROR) continue;
      const { errno, seq } = decodeError(msg);
      if (errno !== 0) {
        return p.done(new Error(`nf_tables refused the rule edit${p.mode === 'check' ? ' (check)' : ''}: ${errnoName(errno)} at ${describe(p.ops[seq - p.first])}`));
      }
      if (++p.acked === p.ops.length) return p.done();
    }
  }

  private sendOne(steps: RuleEditOp[], mode: 'check' | 'apply'): Promise<Map<string, number>> {
    if (this.closed) return Promise.reject(new Error('nf_tables rule edit socket closed'));
    const ops = mode === 'apply' ? [...steps, ...injectedRefusal()] : steps;
    const handles = new Map<string, number>();
    if (ops.length === 0) return Promise.resolve(handles);
    let socket: RawNetlinkSocket;
    try {
      socket = this.open();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const first = this.nextSeq;
    // Steps first .. first + n - 1, BATCH_END first + n; wrapped well below 2^32.
    this.nextSeq = first + ops.length + 1 > 0x7fff0000 ? FIRST_SEQ : first + ops.length + 1;
    const batch = encodeBatch(ops, mode === 'check', first);
    return new Promise<Map<string, number>>((resolve, reject) => {
      let finished = false;
      const pending: PendingEdit = {
        first, ops, mode, handles, acked: 0,
        done: (err) => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          if (this.current === pending) this.current = undefined;
          if (err) reject(err);
          else resolve(handles);
        },
      };
      const timer = setTimeout(() => {
        // No answer: the socket is not trusted again (a new one for the next edit).
        const err = new Error(`nf_tables: no answer to the rule edit within ${ANSWER_TIMEOUT_MS} ms (${pending.acked} of ${ops.length} steps answered)`);
        this.fail(socket, err);
        pending.done(err);
      }, ANSWER_TIMEOUT_MS);
      this.current = pending;
      socket.send(batch, {}, guardNetlinkCallback('nft-rule-edit', (err?: Error) => {
        if (err) this.fail(socket, new Error(`rule edit not sent: ${err.message}`));
      }, (err) => this.fail(socket, err)));
    });
  }
}

/** One edit on a socket of its own, closed after it (tests; the engine keeps an NftRuleEditSocket per VRF). */
export async function sendRuleEdit(namespace: string | undefined, steps: RuleEditOp[], mode: 'check' | 'apply'): Promise<Map<string, number>> {
  const socket = new NftRuleEditSocket(namespace);
  try {
    return await socket.send(steps, mode);
  } finally {
    socket.close();
  }
}

function close(socket: RawNetlinkSocket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}
