// Drives the operations layer directly: a real libyang context, a real state directory, operation
// elements parsed by the protocol layer's parser, and sessions that record what they are sent.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTandemContext, type YangContext } from '../../yang/libyang/index.js';
import { createNetconfOperations, type NetconfOperations } from '../../agent/operations/index.js';
import { parseXml } from '../../agent/netconf/xml-parser.js';
import { NetconfError } from '../../core/netconf-error.js';
import type { RpcContext } from '../../agent/netconf/rpc-dispatcher.js';
import type { CommitSubsystem, RpcProvider, StateProvider } from '../../core/subsystem.js';
import type { UserDirectory } from '../../agent/nacm/nacm.js';

/** Every user of the harness is an administrator unless a test gives its own directory. */
export const ALL_ADMINS: UserDirectory = { identity: () => Promise.resolve({ groups: ['admin'], recovery: false }) };

export const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';
export const NP = 'urn:tandem:yang:tandem-network-profile';

export interface TestSession extends RpcContext {
  notifications: string[];
  closed: boolean;
  killed: number[];
}

export interface Harness {
  yang: YangContext;
  ops: NetconfOperations;
  dir: string;
  session(id: number, username?: string): TestSession;
  end(s: TestSession, reason?: 'closed' | 'killed' | 'dropped' | 'timeout'): void;
  /** Run an operation (XML text, base namespace by default); resolves to reply text or rejects with errors. */
  rpc(s: TestSession, xml: string): Promise<string>;
  /** Like rpc, but expects failure and returns the errors. */
  rpcErrors(s: TestSession, xml: string): Promise<NetconfError[]>;
  restart(extra?: Partial<HarnessOptions>): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  subsystems: CommitSubsystem[];
  stateProviders: StateProvider[];
  rpcProviders: RpcProvider[];
  startupFile?: string;
  /** NACM groups of the sessions' users; default: every user in group admin (may do everything). */
  users?: UserDirectory;
  dir?: string;
}

let sharedYang: Promise<YangContext> | undefined;
/** One context for the whole suite (loading it is the slow part). */
export function yangContext(): Promise<YangContext> {
  sharedYang ??= loadTandemContext();
  return sharedYang;
}

export function errorsOf(err: unknown): NetconfError[] {
  if (err instanceof NetconfError) return [err];
  const nested = (err as { errors?: unknown }).errors;
  if (Array.isArray(nested) && nested.every((e) => e instanceof NetconfError)) return nested as NetconfError[];
  throw err;
}

export async function openHarness(opts: Partial<HarnessOptions> = {}): Promise<Harness> {
  const yang = await yangContext();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tandem-ops-'));
  const sessions = new Map<number, TestSession>();
  let current: HarnessOptions = { subsystems: [], stateProviders: [], rpcProviders: [], users: ALL_ADMINS, ...opts, dir };
  let ops = await createNetconfOperations({ yang, stateDir: dir, ...current });
  const h: Harness = {
    yang,
    get ops() {
      return ops;
    },
    dir,
    session(id, username = 'admin') {
      const s: TestSession = {
        sessionId: id, username, notifications: [], closed: false, killed: [],
        sendNotification: (xml) => s.notifications.push(xml),
        closeAfterReply: () => { s.closed = true; },
        killSession: (target) => {
          if (!sessions.has(target)) return false;
          s.killed.push(target);
          return true;
        },
      };
      sessions.set(id, s);
      ops.sessionStarted({
        sessionId: id, username, transport: 'netconf-ssh', sourceHost: '127.0.0.1', loginTime: new Date().toISOString(),
        inRpcs: 0, inBadRpcs: 0, outRpcErrors: 0, outNotifications: 0,
      });
      return s;
    },
    end(s, reason = 'closed') {
      sessions.delete(s.sessionId);
      ops.sessionEnded(s.sessionId, reason);
    },
    async rpc(s, xml) {
      const el = parseXml(xml.includes('xmlns=') && /^<[\w-]+ xmlns=/.test(xml) ? xml : xml.replace(/^<([\w-]+)/, `<$1 xmlns="${BASE}"`));
      const r = await ops.dispatch(s, el);
      return 'ok' in r ? '<ok/>' : r.xml;
    },
    async rpcErrors(s, xml) {
      try {
        await h.rpc(s, xml);
      } catch (err) {
        return errorsOf(err);
      }
      throw new Error(`expected an rpc-error from ${xml}`);
    },
    async restart(extra = {}) {
      await ops.close();
      current = { ...current, ...extra };
      ops = await createNetconfOperations({ yang, stateDir: dir, ...current });
    },
    async close() {
      await ops.close();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

export function profile(name: string, type = 'tcp-fast-path', extra = ''): string {
  return `<network-profile xmlns="${NP}"><name>${name}</name><type>${type}</type>${extra}</network-profile>`;
}

export function editCandidate(config: string, params = ''): string {
  return `<edit-config><target><candidate/></target>${params}<config>${config}</config></edit-config>`;
}

export function editRunning(config: string, params = ''): string {
  return `<edit-config><target><running/></target>${params}<config>${config}</config></edit-config>`;
}

export const GET_RUNNING = '<get-config><source><running/></source></get-config>';
export const GET_CANDIDATE = '<get-config><source><candidate/></source></get-config>';

/** Wait (bounded) until `cond` holds. */
export async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
