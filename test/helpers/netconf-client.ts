// A small NETCONF client over ssh2 for tests: connects, exchanges hellos (base:1.1 chunked framing
// unless told to offer base:1.0 only), sends rpcs and raw bytes, and collects replies and
// notifications. Every wait is bounded by a timeout.
import net from 'node:net';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { FrameDecoder, frameMessage, type FramingMode } from '../../agent/netconf/framing.js';

export interface ConnectOptions {
  host: string;
  port: number;
  username: string;
  password?: string;
  privateKey?: string;
  /** Capabilities of our hello; default base:1.0 and base:1.1. */
  capabilities?: string[];
  /** Send no hello (to test the server's hello timeout or raw input). */
  skipHello?: boolean;
  timeoutMs?: number;
  /** Source address to connect from (e.g. 127.0.0.2: another "host" on loopback for per-source limits). */
  localAddress?: string;
}

const BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';

export class NetconfTestClient {
  serverHello = '';
  sessionId = 0;
  framing: FramingMode = 'eom';
  private readonly decoder = new FrameDecoder(256 * 1024 * 1024);
  private readonly inbox: string[] = [];
  private waiter: (() => void) | undefined;
  private nextId = 1;
  closed = false;

  private constructor(readonly conn: ssh2.Client, readonly channel: ClientChannel, private readonly timeoutMs: number) {
    channel.on('data', (d: Buffer) => {
      try {
        for (const ev of this.decoder.push(d)) if (ev.kind === 'message') this.inbox.push(ev.text);
      } catch {
        this.closed = true;
      }
      this.waiter?.();
    });
    channel.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static async connect(o: ConnectOptions): Promise<NetconfTestClient> {
    const timeoutMs = o.timeoutMs ?? 15000;
    const conn = new ssh2.Client();
    const channel = await new Promise<ClientChannel>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.end();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      conn.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      conn.on('close', () => {
        clearTimeout(timer);
        reject(new Error('connection closed by the server before the session opened'));
      });
      conn.on('ready', () => {
        conn.subsys('netconf', (err, ch) => {
          clearTimeout(timer);
          if (err) {
            conn.end();
            reject(err);
          } else resolve(ch);
        });
      });
      // Our own socket, so that Nagle's algorithm is off from the first byte of the handshake.
      const sock = net.connect({ port: o.port, host: o.host, localAddress: o.localAddress });
      sock.setNoDelay(true);
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      conn.connect({
        sock, username: o.username, password: o.password, privateKey: o.privateKey,
        readyTimeout: timeoutMs, tryKeyboard: false,
      });
    });
    const c = new NetconfTestClient(conn, channel, timeoutMs);
    c.serverHello = await c.next();
    c.sessionId = Number(/<session-id>(\d+)<\/session-id>/.exec(c.serverHello)?.[1] ?? 0);
    if (!o.skipHello) {
      const caps = o.capabilities ?? ['urn:ietf:params:netconf:base:1.0', 'urn:ietf:params:netconf:base:1.1'];
      c.sendRaw(frameMessage(`<?xml version="1.0" encoding="UTF-8"?><hello xmlns="${BASE_NS}"><capabilities>`
        + `${caps.map((x) => `<capability>${x}</capability>`).join('')}</capabilities></hello>`, 'eom'));
      const both = caps.includes('urn:ietf:params:netconf:base:1.1') && c.serverHello.includes('urn:ietf:params:netconf:base:1.1');
      c.framing = both ? 'chunked' : 'eom';
      c.decoder.setMode(c.framing);
    }
    return c;
  }

  /** The next message from the server (reply or notification). */
  next(timeoutMs = this.timeoutMs): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no message from the server within ${timeoutMs} ms`));
      }, timeoutMs);
      const check = () => {
        const m = this.inbox.shift();
        if (m !== undefined) {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve(m);
        } else if (this.closed) {
          clearTimeout(timer);
          this.waiter = undefined;
          reject(new Error('session closed'));
        } else {
          this.waiter = check;
        }
      };
      check();
    });
  }

  /** Resolves true once the server has closed the channel (within timeoutMs). */
  waitClosed(timeoutMs = this.timeoutMs): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const check = () => {
        if (this.closed) {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve(true);
        } else this.waiter = check;
      };
      check();
    });
  }

  sendRaw(data: Buffer | string): void {
    this.channel.write(data);
  }

  /** Send a message framed as negotiated. */
  sendMessage(xml: string): void {
    this.sendRaw(frameMessage(xml, this.framing));
  }

  /** Send an operation in an <rpc> with a fresh message-id and wait for the reply. */
  async rpc(operationXml: string, attrs = ''): Promise<string> {
    const id = String(this.nextId++);
    this.sendMessage(`<rpc xmlns="${BASE_NS}" message-id="${id}"${attrs}>${operationXml}</rpc>`);
    return this.next();
  }

  close(): void {
    this.closed = true;
    this.conn.end();
  }
}
