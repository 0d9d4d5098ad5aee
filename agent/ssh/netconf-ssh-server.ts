// NETCONF over SSH (RFC 6242) with ssh2: password (scrypt) and public-key authentication, the
// `netconf` subsystem (one NETCONF session per channel), and the limits that keep the agent safe to
// leave running: sessions, unauthenticated connections, auth attempts, login/hello/idle timeouts.
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

const log = logger('netconf-ssh');

export interface ServerLimits extends SessionLimits {
  /** NETCONF sessions open at once; more are refused at the subsystem request. */
  maxSessions: number;
  /** TCP connections that have not logged in yet, at once; more are closed at once. */
  maxUnauthenticated: number;
  /** Authentication attempts per connection before it is closed. */
  maxAuthAttempts: number;
  /** Milliseconds a TCP connection has to log in (then helloTimeoutMs to open the netconf subsystem). */
  loginTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  ...DEFAULT_XML_LIMITS,
  maxSessions: 100,
  maxUnauthenticated: 128,
  maxAuthAttempts: 6,
  loginTimeoutMs: 30_000,
  helloTimeoutMs: 30_000,
  idleTimeoutMs: 3_600_000,
  maxQueuedMessages: 64,
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

export class NetconfSshServer {
  readonly limits: ServerLimits;
  readonly registry = new SessionRegistry();
  private readonly server: ssh2.Server;
  /** Our own TCP listener: ssh2 only sees a connection once its SSH banner has arrived, so the
   * limits on connections that have not logged in (yet) are applied here, from the first byte. */
  private readonly tcp: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly connections = new Set<Connection>();
  /** Connections not logged in yet, by "address|port": call to mark it logged in (or gone). */
  private readonly pendingLogins = new Map<string, () => void>();
  private readonly resolveNamespace: NamespaceResolver;

  constructor(private readonly opts: NetconfSshServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.resolveNamespace = opts.resolveNamespace ?? defaultResolver;
    this.server = new ssh2.Server({ hostKeys: opts.hostKeys.map((k) => k.privateKey), ident: 'tandem' },
      (client, info) => this.onConnection(client, info.ip, `${info.ip}|${info.port}`));
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

  private onSocket(sock: net.Socket): void {
    // Request/response traffic: Nagle's algorithm would hold back the tail of a reply for an ACK.
    sock.setNoDelay(true);
    if (this.pendingLogins.size >= this.limits.maxUnauthenticated) {
      log.warn({ ip: sock.remoteAddress, limit: this.limits.maxUnauthenticated }, 'too many connections not logged in; refusing');
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    const key = `${sock.remoteAddress}|${sock.remotePort}`;
    const timer = setTimeout(() => {
      log.info({ ip: sock.remoteAddress }, 'login timeout; closing connection');
      sock.destroy();
    }, this.limits.loginTimeoutMs);
    const loggedInOrGone = () => {
      clearTimeout(timer);
      this.pendingLogins.delete(key);
    };
    this.pendingLogins.set(key, loggedInOrGone);
    sock.once('close', () => {
      loggedInOrGone();
      this.sockets.delete(sock);
    });
    sock.on('error', (err) => log.debug({ ip: sock.remoteAddress, err: err.message }, 'socket error'));
    this.server.injectSocket(sock);
  }

  private onConnection(client: Connection, ip: string, key: string): void {
    this.connections.add(client);
    const sessionsOfClient = new Set<NetconfSession>();
    let attempts = 0;
    let subsystemTimer: NodeJS.Timeout | undefined;
    client.on('error', (err: Error) => log.debug({ ip, err: err.message }, 'connection error'));
    client.on('close', () => {
      clearTimeout(subsystemTimer);
      this.connections.delete(client);
      for (const s of sessionsOfClient) s.terminate('dropped');
    });

    let username = '';
    client.on('authentication', (ctx: AuthContext) => {
      void this.authenticate(ctx, ip, () => ++attempts, (name) => { username = name; }).then((ok) => {
        if (!ok && attempts >= this.limits.maxAuthAttempts) {
          log.warn({ ip, user: ctx.username, attempts }, 'too many authentication attempts; closing');
          client.end();
        }
      });
    });
    client.on('ready', () => {
      this.pendingLogins.get(key)?.();
      log.info({ ip, user: username }, 'authenticated');
      // Logged in, but a connection is only kept for NETCONF sessions.
      subsystemTimer = setTimeout(() => {
        log.info({ ip, user: username }, 'no netconf subsystem requested in time; closing connection');
        client.end();
      }, this.limits.helloTimeoutMs);
      client.on('session', (acceptSession) => {
        const sshSession = acceptSession();
        sshSession.on('subsystem', (accept, reject, info) => {
          if (info.name !== 'netconf') {
            reject();
            return;
          }
          if (this.registry.size >= this.limits.maxSessions) {
            log.warn({ ip, user: username, limit: this.limits.maxSessions }, 'session limit reached; refusing');
            reject();
            return;
          }
          clearTimeout(subsystemTimer);
          const channel: ServerChannel = accept();
          const session = new NetconfSession(this.registry.allocateId(), username, ip, channel, {
            dispatcher: this.opts.dispatcher,
            limits: this.limits,
            resolveNamespace: this.resolveNamespace,
            killSession: (id, by) => this.kill(id, by),
            onEnded: (s) => {
              this.registry.remove(s);
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
        });
        for (const ev of ['pty', 'shell', 'exec', 'env', 'x11', 'auth-agent'] as const) {
          sshSession.on(ev as 'shell', (_accept: unknown, reject?: () => void) => reject?.());
        }
      });
    });
  }

  private kill(id: number, killedBy: number): boolean {
    const s = this.registry.get(id);
    if (!s) return false;
    s.terminate('killed', killedBy);
    return true;
  }

  /** Checks one attempt; calls authenticated(name) just before accepting it. */
  private async authenticate(ctx: AuthContext, ip: string, countAttempt: () => number, authenticated: (name: string) => void): Promise<boolean> {
    const methods: ('password' | 'publickey')[] = ['password', 'publickey'];
    try {
      if (ctx.method === 'password') {
        countAttempt();
        if (await this.opts.users.checkPassword(ctx.username, ctx.password)) {
          authenticated(ctx.username);
          ctx.accept();
          return true;
        }
        log.info({ ip, user: ctx.username }, 'password rejected');
      } else if (ctx.method === 'publickey') {
        const key = await this.opts.users.findKey(ctx.username, ctx.key.data);
        if (key && !ctx.signature) {
          ctx.accept(); // the client only asks whether this key would do
          return false;
        }
        if (key && ctx.signature && ctx.blob && key.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) {
          authenticated(ctx.username);
          ctx.accept();
          return true;
        }
        if (ctx.signature || !key) countAttempt();
        log.info({ ip, user: ctx.username }, 'public key rejected');
      }
    } catch (err) {
      log.error({ ip, err: err instanceof Error ? err.message : String(err) }, 'authentication failed with an error');
    }
    ctx.reject(methods);
    return false;
  }
}
