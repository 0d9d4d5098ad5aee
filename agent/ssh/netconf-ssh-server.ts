// NETCONF over SSH (RFC 6242) with ssh2: password (scrypt) and public-key authentication, the
// `netconf` subsystem (one NETCONF session per channel), and the limits that keep the agent safe to
// leave running, as OpenSSH applies them: MaxStartups (in total and per source), PerSourcePenalties,
// MaxAuthTries, the key policy (key-policy.ts), sessions in total and per user with slots kept for
// admin and recovery users, login/hello/idle timeouts.
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, AuthContext, ServerChannel } from 'ssh2';
import { logger } from '../../core/log.js';
import type { RpcDispatcher } from '../netconf/rpc-dispatcher.js';
import type { NamespaceResolver } from '../netconf/reply-xml.js';
import { NetconfSession, type SessionLimits } from '../netconf/session.js';
import { SessionRegistry } from '../netconf/session-registry.js';
import { DEFAULT_XML_LIMITS } from '../netconf/xml-parser.js';
import type { HostKey } from './host-keys.js';
import type { UserStore } from './user-store.js';
import { publicKeyProblem, signatureProblem } from './key-policy.js';
import { isPrivileged, sessionRefusal, type SlotLimits } from './session-slots.js';
import { sourceOf } from './source-address.js';
import { DEFAULT_PENALTIES, SourcePenalties, type PenaltyConfig } from './source-penalties.js';
import { refuseStartup, StartupCounter, type Startups } from './startup-limiter.js';

const log = logger('netconf-ssh');

export interface ServerLimits extends SessionLimits, SlotLimits {
  /** Connections that have not logged in yet, at once (MaxStartups full); more are closed at once. */
  maxUnauthenticated: number;
  /** From this many connections not logged in, new ones are dropped at random (MaxStartups start). */
  maxStartupsStart: number;
  /** Percent dropped at maxStartupsStart, rising to 100 at maxUnauthenticated (MaxStartups rate). */
  maxStartupsRate: number;
  /** The same start:rate:full for the connections of one source (an IPv4 address or IPv6 /64). */
  perSourceMaxStartups: Startups;
  /** Per-source penalties after failed logins; undefined: off. */
  penalties: PenaltyConfig | undefined;
  /** Authentication attempts per connection (password or key checks, and failed key queries). */
  maxAuthAttempts: number;
  /** Milliseconds a TCP connection has to log in (then helloTimeoutMs to open the netconf subsystem). */
  loginTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  ...DEFAULT_XML_LIMITS,
  maxSessions: 100,
  maxSessionsPerUser: 64,
  reservedSessions: 10,
  maxUnauthenticated: 256,
  maxStartupsStart: 128,
  maxStartupsRate: 30,
  perSourceMaxStartups: { start: 64, rate: 30, full: 96 },
  penalties: DEFAULT_PENALTIES,
  maxAuthAttempts: 6,
  loginTimeoutMs: 30_000,
  helloTimeoutMs: 30_000,
  idleTimeoutMs: 3_600_000,
  maxQueuedMessages: 64,
  maxOutputQueueBytes: 1024 * 1024,
};

export interface NetconfSshServerOptions {
  hostKeys: HostKey[];
  users: UserStore;
  dispatcher: RpcDispatcher;
  limits?: Partial<ServerLimits>;
  resolveNamespace?: NamespaceResolver;
}

/** Module names of tandem and IETF modules map to their namespaces by convention. */
function defaultResolver(prefix: string): string | undefined {
  if (prefix.startsWith('tandem-')) return `urn:tandem:yang:${prefix}`;
  if (prefix.startsWith('ietf-')) return `urn:ietf:params:xml:ns:yang:${prefix}`;
  return undefined;
}

/** One TCP connection, from accept until it closes: what the per-source limits need to know. */
interface Connecting {
  ip: string;
  port: number;
  source: string;
  /** Authentication attempts counted against maxAuthAttempts. */
  attempts: number;
  loggedIn: boolean;
  /** Closed by the server for too many failures: decide no more attempts. */
  closing: boolean;
  loginTimedOut: boolean;
  /** Stop the login timer and release the pre-auth slot (idempotent). */
  releaseStartup(): void;
}

export class NetconfSshServer {
  readonly limits: ServerLimits;
  readonly registry = new SessionRegistry();
  private readonly server: ssh2.Server;
  /** Our own TCP listener: ssh2 only sees a connection once its SSH banner has arrived, so the
   * limits on connections that have not logged in (yet) are applied here, from the first byte. */
  private readonly tcp: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly connections = new Set<Connection>();
  /** Connections by "address|port" (how ssh2 names them to us). */
  private readonly connecting = new Map<string, Connecting>();
  private readonly startups = new StartupCounter();
  private readonly penalties: SourcePenalties | undefined;
  /** Sessions per user name. */
  private readonly sessionsOfUser = new Map<string, number>();
  private readonly resolveNamespace: NamespaceResolver;
  /** Refusals at accept since the last warning (logged at most every 10 s, not per connection). */
  private refusedAtAccept = { count: 0, lastLog: 0, reasons: new Map<string, number>() };

  constructor(private readonly opts: NetconfSshServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.penalties = this.limits.penalties ? new SourcePenalties(this.limits.penalties) : undefined;
    this.resolveNamespace = opts.resolveNamespace ?? defaultResolver;
    this.server = new ssh2.Server({ hostKeys: opts.hostKeys.map((k) => k.privateKey), ident: 'tandem' },
      (client, info) => this.onConnection(client, `${info.ip}|${info.port}`));
    this.tcp = net.createServer((sock) => this.onSocket(sock));
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen(port, host, () => {
        this.tcp.off('error', reject);
        const addr = this.tcp.address() as net.AddressInfo;
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  /** End every session (they are reported as dropped), every connection, and stop listening. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    for (const s of this.registry.all()) s.terminate('dropped');
    for (const c of this.connections) c.end();
    for (const sock of this.sockets) sock.destroy();
    await closed;
  }

  /** Why a new connection is closed at accept, before a byte is read; undefined to accept it. */
  private refusal(source: string): string | undefined {
    const penalty = this.penalties?.refusedFor(source) ?? 0;
    if (penalty > 0) return 'source penalised after failed logins';
    const l = this.limits;
    if (refuseStartup(this.startups.of(source), l.perSourceMaxStartups)) return 'too many connections not logged in from this source';
    if (refuseStartup(this.startups.size, { start: l.maxStartupsStart, rate: l.maxStartupsRate, full: l.maxUnauthenticated })) {
      return 'too many connections not logged in';
    }
    return undefined;
  }

  /** One warning per 10 s with what was refused, instead of one line per connection of a flood. */
  private noteRefused(source: string, reason: string): void {
    const r = this.refusedAtAccept;
    r.count += 1;
    r.reasons.set(reason, (r.reasons.get(reason) ?? 0) + 1);
    log.debug({ source, reason }, 'connection refused at accept');
    const now = Date.now();
    if (now - r.lastLog < 10_000) return;
    log.warn({ source, refused: r.count, reasons: Object.fromEntries(r.reasons) }, 'connections refused at accept');
    this.refusedAtAccept = { count: 0, lastLog: now, reasons: new Map() };
  }

  private onSocket(sock: net.Socket): void {
    // Request/response traffic: Nagle's algorithm would hold back the tail of a reply for an ACK.
    sock.setNoDelay(true);
    const ip = sock.remoteAddress ?? 'unknown';
    const port = sock.remotePort ?? 0;
    const source = sourceOf(sock.remoteAddress);
    const refused = this.refusal(source);
    if (refused) {
      this.noteRefused(source, refused);
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    this.startups.add(source);
    const key = `${ip}|${port}`;
    const timer = setTimeout(() => {
      log.info({ ip, port }, 'login timeout; closing connection');
      conn.loginTimedOut = true;
      sock.destroy();
    }, this.limits.loginTimeoutMs);
    let released = false;
    const conn: Connecting = {
      ip, port, source, attempts: 0, loggedIn: false, closing: false, loginTimedOut: false,
      releaseStartup: () => {
        clearTimeout(timer);
        if (released) return;
        released = true;
        this.startups.remove(source);
      },
    };
    this.connecting.set(key, conn);
    sock.once('close', () => {
      conn.releaseStartup();
      this.connecting.delete(key);
      this.sockets.delete(sock);
      if (!conn.loggedIn && this.penalties) {
        this.penalties.penalise(source, conn.attempts > 0 ? 'authfail' : conn.loginTimedOut ? 'grace-exceeded' : 'noauth');
      }
    });
    sock.on('error', (err) => log.debug({ ip, port, err: err.message }, 'socket error'));
    this.server.injectSocket(sock);
  }

  private onConnection(client: Connection, key: string): void {
    const conn = this.connecting.get(key);
    if (!conn) {
      client.end(); // its socket closed already
      return;
    }
    const { ip, port } = conn;
    this.connections.add(client);
    const sessionsOfClient = new Set<NetconfSession>();
    let subsystemTimer: NodeJS.Timeout | undefined;
    client.on('error', (err: Error) => log.debug({ ip, port, err: err.message }, 'connection error'));
    client.on('close', () => {
      clearTimeout(subsystemTimer);
      this.connections.delete(client);
      for (const s of sessionsOfClient) s.terminate('dropped');
    });

    let username = '';
    /** Group admin or the recovery user, as users.json said at login. */
    let privileged = false;
    // ssh2 hands us one request at a time (pipelined ones wait until this one is decided), so the
    // count is exact: the request after the last allowed failure is never checked.
    client.on('authentication', (ctx: AuthContext) => {
      if (conn.closing) return;
      void this.authenticate(ctx, conn).then((outcome) => {
        if (outcome.kind === 'accepted') {
          username = ctx.username;
          privileged = outcome.privileged;
          conn.loggedIn = true;
          conn.releaseStartup();
          ctx.accept();
        } else if (outcome.kind === 'pk-ok') {
          ctx.accept(); // the client only asked whether this key would do
        } else if (outcome.kind === 'none') {
          ctx.reject(AUTH_METHODS);
        } else {
          conn.attempts += 1;
          const why = 'why' in outcome ? outcome.why : undefined;
          log.warn({ ip, port, user: ctx.username, method: ctx.method, attempt: conn.attempts, why }, 'authentication failed');
          if (conn.attempts >= this.limits.maxAuthAttempts) {
            conn.closing = true;
            log.warn({ ip, port, user: ctx.username, attempts: conn.attempts }, 'too many authentication failures; closing connection');
            client.end();
          } else {
            ctx.reject(AUTH_METHODS);
          }
        }
      });
    });
    client.on('ready', () => {
      log.info({ ip, port, user: username }, 'authenticated');
      // Logged in, but a connection is only kept for NETCONF sessions.
      subsystemTimer = setTimeout(() => {
        log.info({ ip, port, user: username }, 'no netconf subsystem requested in time; closing connection');
        client.end();
      }, this.limits.helloTimeoutMs);
      client.on('session', (acceptSession) => {
        const sshSession = acceptSession();
        sshSession.on('subsystem', (accept, reject, info) => {
          if (info.name !== 'netconf') {
            reject();
            return;
          }
          // Decided at once: a client (OpenSSH's ssh -s) sends its hello right behind the request.
          const refusal = sessionRefusal(this.limits, this.registry.size, this.sessionsOfUser.get(username) ?? 0, privileged);
          if (refusal) {
            log.warn({ ip, port, user: username, why: refusal }, 'netconf session refused');
            reject();
            return;
          }
          this.openSession(username, ip, accept, client, sessionsOfClient);
          clearTimeout(subsystemTimer);
        });
        for (const ev of ['pty', 'shell', 'exec', 'env', 'x11', 'auth-agent'] as const) {
          sshSession.on(ev as 'shell', (_accept: unknown, reject?: () => void) => reject?.());
        }
      });
    });
  }

  private openSession(username: string, ip: string, accept: () => ServerChannel, client: Connection, sessionsOfClient: Set<NetconfSession>): void {
    const channel: ServerChannel = accept();
    this.sessionsOfUser.set(username, (this.sessionsOfUser.get(username) ?? 0) + 1);
    const session = new NetconfSession(this.registry.allocateId(), username, ip, channel, {
      dispatcher: this.opts.dispatcher,
      limits: this.limits,
      resolveNamespace: this.resolveNamespace,
      killSession: (id, by) => this.kill(id, by),
      onEnded: (s) => {
        this.registry.remove(s);
        const n = (this.sessionsOfUser.get(username) ?? 1) - 1;
        if (n <= 0) this.sessionsOfUser.delete(username);
        else this.sessionsOfUser.set(username, n);
        sessionsOfClient.delete(s);
        // Called before the session ends its channel (which flushes, then sends EOF and CLOSE):
        // ssh -s exits with this status.
        try {
          channel.exit(s.endReason === 'closed' ? 0 : 1);
        } catch {
          // channel already gone
        }
        // RFC 6242: when its last NETCONF session is gone, the SSH connection goes too. The
        // client is given a moment to hang up itself: a DISCONNECT straight away makes
        // OpenSSH's ssh exit before it has written the last replies out.
        if (sessionsOfClient.size === 0) setTimeout(() => client.end(), 2000).unref();
      },
    });
    this.registry.add(session);
    sessionsOfClient.add(session);
  }

  private kill(id: number, killedBy: number): boolean {
    const s = this.registry.get(id);
    if (!s) return false;
    s.terminate('killed', killedBy);
    return true;
  }

  /** A successful login, with what the session limits need to know of the user. */
  private async accepted(username: string): Promise<AuthOutcome> {
    return { kind: 'accepted', privileged: isPrivileged(await this.opts.users.load(), username) };
  }

  /** Checks one authentication request; the caller decides it and counts failures. */
  private async authenticate(ctx: AuthContext, conn: Connecting): Promise<AuthOutcome> {
    try {
      if (ctx.method === 'none') return { kind: 'none' };
      if (ctx.method === 'password') {
        if (await this.opts.users.checkPassword(ctx.username, ctx.password)) return this.accepted(ctx.username);
        return { kind: 'failed', why: 'wrong user name or password' };
      }
      if (ctx.method === 'publickey') {
        const policy = publicKeyProblem(ctx.key.algo, ctx.key.data) ?? signatureProblem(ctx.key.algo, ctx.hashAlgo);
        if (policy) return { kind: 'failed', why: policy };
        const key = await this.opts.users.findKey(ctx.username, ctx.key.data);
        if (!key) return { kind: 'failed', why: 'key not authorised for this user' };
        if (!ctx.signature) return { kind: 'pk-ok' };
        if (ctx.blob && key.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) return this.accepted(ctx.username);
        return { kind: 'failed', why: 'bad signature' };
      }
      return { kind: 'failed', why: `method ${ctx.method} not offered` };
    } catch (err) {
      log.error({ ip: conn.ip, port: conn.port, err: err instanceof Error ? err.message : String(err) }, 'authentication failed with an error');
      return { kind: 'failed', why: 'internal error' };
    }
  }
}

const AUTH_METHODS: ('password' | 'publickey')[] = ['password', 'publickey'];

type AuthOutcome = { kind: 'accepted'; privileged: boolean } | { kind: 'pk-ok' | 'none' } | { kind: 'failed'; why: string };
