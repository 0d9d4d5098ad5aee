// Limits and hostile input: session count, auth attempts, hello and idle timeouts, message size,
// nesting depth, element count, floods of malformed messages, and 50 concurrent sessions.
import { expect } from 'chai';
import net from 'node:net';
import ssh2 from 'ssh2';
import { frameMessage } from '../../agent/netconf/framing.js';
import { startInProcessAgent, type InProcessAgent } from '../helpers/in-process-agent.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { TestDispatcher } from '../helpers/test-dispatcher.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';

describe('NETCONF limits and hostile input', function () {
  this.timeout(60000);
  let srv: InProcessAgent;
  let disp: TestDispatcher;
  const clients: NetconfTestClient[] = [];
  const connect = async (extra: Partial<Parameters<typeof NetconfTestClient.connect>[0]> = {}) => {
    const c = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: srv.user, password: srv.password, ...extra });
    clients.push(c);
    return c;
  };

  before(async () => {
    disp = new TestDispatcher();
    srv = await startInProcessAgent(disp, {
      maxSessions: 60, maxAuthAttempts: 2, helloTimeoutMs: 400, maxSize: 8192, maxDepth: 16, maxElements: 200,
      // The failed logins and raw sockets of these tests add up to a per-source penalty that could
      // refuse the 50 sessions of the last test (seen in a loaded run); penalties are tested in
      // their own file.
      penalties: undefined,
    });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await srv?.stop();
  });

  it('answers an oversized message with too-big (message-id echoed) and keeps the session', async () => {
    const c = await connect();
    c.sendMessage(`<rpc xmlns="${BASE}" message-id="big-1"><edit-config>${'<a>x</a>'.repeat(3000)}</edit-config></rpc>`);
    const reply = await c.next();
    expect(reply).to.contain('message-id="big-1"');
    expect(reply).to.contain('<error-tag>too-big</error-tag>');
    expect(await c.rpc('<get/>')).to.contain('<data>');
  });

  it('answers too deep nesting and too many elements with too-big', async () => {
    const c = await connect();
    c.sendMessage(`<rpc xmlns="${BASE}" message-id="deep">${'<a>'.repeat(30)}${'</a>'.repeat(30)}</rpc>`);
    const deep = await c.next();
    expect(deep).to.contain('message-id="deep"');
    expect(deep).to.contain('<error-tag>too-big</error-tag>');
    expect(deep).to.match(/nesting deeper than 16/);
    c.sendMessage(`<rpc xmlns="${BASE}" message-id="wide"><edit-config>${'<b/>'.repeat(300)}</edit-config></rpc>`);
    const wide = await c.next();
    expect(wide).to.contain('<error-tag>too-big</error-tag>');
    expect(wide).to.match(/more than 200 elements/);
  });

  it('closes a connection that sends no hello in time, and counts a bad hello', async () => {
    const before = disp.badHellos;
    const c = await connect({ skipHello: true });
    expect(await c.waitClosed(5000)).to.equal(true);
    expect(disp.badHellos).to.equal(before + 1);
  });

  it('closes the connection after too many failed authentication attempts', async () => {
    const tried: string[] = [];
    const conn = new ssh2.Client();
    const outcome = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), 15000);
      const pw = ['w1', 'w2', 'w3', 'w4', 'w5'];
      conn.on('error', (err) => {
        clearTimeout(timer);
        resolve(`error: ${err.message}`);
      });
      conn.on('close', () => {
        clearTimeout(timer);
        resolve('closed');
      });
      conn.on('ready', () => resolve('ready'));
      conn.connect({
        host: srv.host, port: srv.port, username: srv.user, readyTimeout: 15000,
        authHandler: (_methods, _partial, next) => {
          const p = pw.shift();
          if (p === undefined) return false;
          tried.push(p);
          next({ type: 'password', username: srv.user, password: p });
          return undefined;
        },
      });
    });
    conn.end();
    expect(outcome).to.not.equal('ready');
    expect(tried.length).to.be.at.most(3); // the limit (2) plus at most one attempt in flight
  });

  it('a flood of malformed messages on one session does not disturb another session', async () => {
    const flooder = await connect();
    const other = await connect();
    const N = 2000;
    let flood = '';
    for (let i = 0; i < N; i += 1) flood += frameMessage(`<rpc xmlns="${BASE}" message-id="f${i}"><get></rpc>`, 'chunked').toString();
    flooder.sendRaw(flood); // without reading the replies yet
    for (let i = 0; i < 20; i += 1) expect(await other.rpc('<get/>')).to.contain(`<session>${other.sessionId}</session>`);
    for (let i = 0; i < N; i += 1) {
      const r = await flooder.next();
      expect(r).to.contain(`message-id="f${i}"`);
      expect(r).to.contain('<error-tag>malformed-message</error-tag>');
    }
    const info = disp.started.find((s) => s.sessionId === flooder.sessionId)!;
    expect(info.inBadRpcs).to.equal(N);
    expect(await flooder.rpc('<get/>')).to.contain('<data>');
  });

  it('serves 50 concurrent sessions, each doing get and edit-config', async () => {
    const editsBefore = disp.edits;
    const results = await Promise.all(Array.from({ length: 50 }, async () => {
      const c = await connect();
      const g = await c.rpc('<get/>');
      const e = await c.rpc('<edit-config><target><running/></target><config/></edit-config>');
      const close = await c.rpc('<close-session/>');
      return { g: g.includes(`<session>${c.sessionId}</session>`), e: e.includes('<ok/>'), close: close.includes('<ok/>') };
    }));
    expect(results.every((r) => r.g && r.e && r.close)).to.equal(true);
    expect(disp.edits - editsBefore).to.equal(50);
  });
});

describe('NETCONF session limit and idle timeout', function () {
  this.timeout(30000);
  let srv: InProcessAgent;
  let limitSrv: InProcessAgent;
  let disp: TestDispatcher;
  const clients: NetconfTestClient[] = [];

  before(async () => {
    disp = new TestDispatcher();
    srv = await startInProcessAgent(disp, { maxSessions: 2, idleTimeoutMs: 800 });
    // The session limit on an agent of its own: with the 800 ms idle timeout, a session could time
    // out (and free its slot) while a loaded machine is still opening the third one.
    limitSrv = await startInProcessAgent(new TestDispatcher(), { maxSessions: 2 });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    // Wait until the server has seen them go, so the next test starts below the limit.
    const deadline = Date.now() + 5000;
    while (srv.agent.server.registry.size + limitSrv.agent.server.registry.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  });
  after(async () => {
    await srv?.stop();
    await limitSrv?.stop();
  });

  it('refuses a session over the limit, and accepts one again once a session is gone', async () => {
    const opts = { host: limitSrv.host, port: limitSrv.port, username: limitSrv.user, password: limitSrv.password };
    clients.push(await NetconfTestClient.connect(opts), await NetconfTestClient.connect(opts));
    let refused: unknown;
    try {
      clients.push(await NetconfTestClient.connect(opts));
    } catch (err) {
      refused = err;
    }
    expect(String(refused)).to.match(/Unable to start subsystem: netconf/);
    await clients[0]!.rpc('<close-session/>');
    expect(await clients[0]!.waitClosed(5000)).to.equal(true);
    const again = await NetconfTestClient.connect(opts);
    clients.push(again);
    expect(await again.rpc('<get/>')).to.contain('<data>');
  });

  it('closes an idle session and reports it as timeout', async () => {
    const c = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: srv.user, password: srv.password });
    clients.push(c);
    expect(await c.waitClosed(10000)).to.equal(true);
    expect(disp.ended.find((e) => e.sessionId === c.sessionId)?.reason).to.equal('timeout');
  });

  it('does not close an idle session that has subscribed to notifications', async () => {
    const c = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: srv.user, password: srv.password });
    clients.push(c);
    expect(await c.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>')).to.contain('<ok/>');
    expect(await c.waitClosed(2500)).to.equal(false); // three idle timeouts
    expect(await c.rpc('<get/>')).to.contain('<data>');
  });
});

describe('NETCONF unauthenticated connections', function () {
  this.timeout(30000);
  let srv: InProcessAgent;
  const sockets: net.Socket[] = [];

  before(async () => {
    srv = await startInProcessAgent(new TestDispatcher(), { maxUnauthenticated: 2, loginTimeoutMs: 1500 });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await srv?.stop();
  });

  const open = () => new Promise<{ sock: net.Socket; closed: Promise<number> }>((resolve, reject) => {
    const sock = net.connect(srv.port, srv.host);
    sock.resume(); // read (and drop) the server's SSH banner, so that its closing is seen
    sockets.push(sock);
    const t0 = Date.now();
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
    sock.once('connect', () => resolve({ sock, closed }));
    sock.once('error', reject);
  });

  it('closes connections over the unauthenticated limit at once, and the others at the login timeout', async () => {
    const a = await open();
    const b = await open();
    await new Promise((r) => setTimeout(r, 200)); // let the server count them
    const c = await open();
    const outcome = await Promise.race([c.closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), 1000))]);
    expect(outcome).to.equal('closed');
    const first = await Promise.race([a.closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 8000))]);
    expect(first).to.equal('closed');
    await b.closed;
    // Slots are free again: a real client logs in. From another source: 127.0.0.1 let two logins
    // time out, a 20 s per-source penalty (grace-exceeded), so its new connections are refused.
    const client = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: srv.user, password: srv.password, localAddress: '127.0.0.2' });
    expect(await client.rpc('<get/>')).to.contain('<data>');
    client.close();
  });
});
