// The NETCONF client of the command line and the demo: ssh2 with a password, hello with base:1.1
// (chunked framing when the server offers it), one rpc at a time with every wait bounded.
// Replies that hold an <rpc-error> are thrown as RpcErrorReply with the server's message.
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { FrameDecoder, frameMessage, type FramingMode } from '../agent/netconf/framing.js';
import { parseXml } from '../agent/netconf/xml-parser.js';
import type { XmlElement } from '../agent/netconf/xml-element.js';

const BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';

export interface NetconfTarget {
  host: string;
  port: number;
  username: string;
  password: string;
  timeoutMs?: number;
}

export class RpcErrorReply extends Error {
  override name = 'RpcErrorReply';
  constructor(readonly tag: string, message: string, readonly path?: string) {
    super(message);
  }
}

/** Text of the first descendant named `name` (namespace ignored), or undefined. */
export function findText(el: XmlElement, name: string): string | undefined {
  if (el.name === name) return el.children.length === 0 ? el.text : undefined;
  for (const c of el.children) {
    const t = findText(c, name);
    if (t !== undefined) return t;
  }
  return undefined;
}

/** Every descendant named `name`. */
export function findAll(el: XmlElement, name: string, out: XmlElement[] = []): XmlElement[] {
  for (const c of el.children) {
    if (c.name === name) out.push(c);
    else findAll(c, name, out);
  }
  return out;
}

export class NetconfClient {
  private readonly decoder = new FrameDecoder(256 * 1024 * 1024);
  private readonly inbox: string[] = [];
  private waiter: (() => void) | undefined;
  private nextId = 1;
  private closed = false;
  private framing: FramingMode = 'eom';

  private constructor(private readonly conn: ssh2.Client, private readonly channel: ClientChannel, private readonly timeoutMs: number) {
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

  static async connect(t: NetconfTarget): Promise<NetconfClient> {
    const timeoutMs = t.timeoutMs ?? 30_000;
    const conn = new ssh2.Client();
    const channel = await new Promise<ClientChannel>((resolve, reject) => {
      const timer = setTimeout(() => { conn.end(); reject(new Error(`no NETCONF session with ${t.host}:${t.port} within ${timeoutMs} ms`)); }, timeoutMs);
      conn.on('error', (err) => { clearTimeout(timer); reject(new Error(`cannot connect to ${t.host}:${t.port}: ${err.message}`, { cause: err })); });
      conn.on('ready', () => {
        conn.subsys('netconf', (err, ch) => {
          clearTimeout(timer);
          if (err) { conn.end(); reject(err); } else resolve(ch);
        });
      });
      conn.connect({ host: t.host, port: t.port, username: t.username, password: t.password, readyTimeout: timeoutMs, tryKeyboard: false });
    });
    const c = new NetconfClient(conn, channel, timeoutMs);
    const hello = await c.next();
    channel.write(frameMessage(`<?xml version="1.0" encoding="UTF-8"?><hello xmlns="${BASE_NS}"><capabilities>`
      + '<capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability>'
      + '</capabilities></hello>', 'eom'));
    c.framing = hello.includes('urn:ietf:params:netconf:base:1.1') ? 'chunked' : 'eom';
    c.decoder.setMode(c.framing);
    return c;
  }

  private next(): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiter = undefined; reject(new Error(`no answer from the agent within ${this.timeoutMs} ms`)); }, this.timeoutMs);
      const check = (): void => {
        const m = this.inbox.shift();
        if (m !== undefined) { clearTimeout(timer); this.waiter = undefined; resolve(m); }
        else if (this.closed) { clearTimeout(timer); this.waiter = undefined; reject(new Error('the agent closed the session')); }
        else this.waiter = check;
      };
      check();
    });
  }

  /** Sends an operation and returns the parsed <rpc-reply>; an <rpc-error> is thrown. */
  async rpc(operationXml: string): Promise<XmlElement> {
    const id = String(this.nextId++);
    this.channel.write(frameMessage(`<rpc xmlns="${BASE_NS}" message-id="${id}">${operationXml}</rpc>`, this.framing));
    let reply: string;
    do reply = await this.next(); while (reply.includes('<notification'));
    const el = parseXml(reply);
    const err = el.children.find((c) => c.name === 'rpc-error');
    if (err) throw new RpcErrorReply(findText(err, 'error-tag') ?? 'unknown', findText(err, 'error-message') ?? 'rpc-error without a message', findText(err, 'error-path'));
    return el;
  }

  /** edit-config on the candidate and commit. */
  async configure(configXml: string): Promise<void> {
    await this.rpc(`<edit-config><target><candidate/></target><config>${configXml}</config></edit-config>`);
    await this.rpc('<commit/>');
  }

  close(): void {
    this.closed = true;
    this.conn.end();
  }
}
