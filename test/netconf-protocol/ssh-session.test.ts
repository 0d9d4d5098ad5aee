// The protocol layer end to end over real SSH with the ssh2 client: hello, framing, replies and
// rpc-errors, attribute echo, close-session, kill-session, notifications, counters.
import { expect } from 'chai';
import { frameMessage } from '../../agent/netconf/framing.js';
import { startInProcessAgent, type InProcessAgent } from '../helpers/in-process-agent.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { TestDispatcher } from '../helpers/test-dispatcher.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';

describe('NETCONF over SSH (ssh2 client)', function () {
  this.timeout(30000);
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
    srv = await startInProcessAgent(disp);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await srv?.stop();
  });

  it('sends a hello with base:1.0, base:1.1, the dispatcher capabilities and a session-id', async () => {
    const c = await connect();
    expect(c.serverHello).to.contain(`<hello xmlns="${BASE}">`);
    expect(c.serverHello).to.contain('<capability>urn:ietf:params:netconf:base:1.0</capability>');
    expect(c.serverHello).to.contain('<capability>urn:ietf:params:netconf:base:1.1</capability>');
    expect(c.serverHello).to.contain('<capability>urn:ietf:params:netconf:capability:interleave:1.0</capability>');
    expect(c.sessionId).to.be.greaterThan(0);
  });

  it('uses chunked framing when both sides speak base:1.1 and echoes every rpc attribute', async () => {
    const c = await connect();
    expect(c.framing).to.equal('chunked');
    c.sendMessage(`<nc:rpc xmlns:nc="${BASE}" xmlns:ex="http://example.net/content/1.0" message-id="urn:uuid:0f0e-AB" ex:user-id="fred"><nc:get/></nc:rpc>`);
    const reply = await c.next();
    expect(reply).to.match(/^<rpc-reply /);
    expect(reply).to.contain('message-id="urn:uuid:0f0e-AB"');
    expect(reply).to.contain('xmlns:ex="http://example.net/content/1.0"');
    expect(reply).to.contain('ex:user-id="fred"');
    expect(reply).to.contain(`<data><session>${c.sessionId}</session><user>alice</user></data>`);
  });

  it('uses end-of-message framing with a base:1.0-only client', async () => {
    const c = await connect({ capabilities: ['urn:ietf:params:netconf:base:1.0'] });
    expect(c.framing).to.equal('eom');
    const reply = await c.rpc('<edit-config/>');
    expect(reply).to.contain('<ok/>');
  });

  it('answers a missing message-id with missing-attribute as RFC 6241 section 4.1 shows', async () => {
    const c = await connect();
    c.sendMessage(`<rpc xmlns="${BASE}"><get/></rpc>`);
    const reply = await c.next();
    expect(reply).to.contain('<error-type>rpc</error-type><error-tag>missing-attribute</error-tag><error-severity>error</error-severity>');
    expect(reply).to.contain('<error-info><bad-attribute>message-id</bad-attribute><bad-element>rpc</bad-element></error-info>');
  });

  it('answers malformed XML with malformed-message, echoing the message-id when it was readable', async () => {
    const c = await connect();
    c.sendMessage(`<rpc xmlns="${BASE}" message-id="m1"><get></rpc>`);
    const reply = await c.next();
    expect(reply).to.contain('message-id="m1"');
    expect(reply).to.contain('<error-tag>malformed-message</error-tag>');
    // The session is still usable.
    expect(await c.rpc('<get/>')).to.contain('<data>');
  });

  it('refuses a DOCTYPE and never expands entities', async () => {
    const c = await connect();
    c.sendMessage(`<?xml version="1.0"?><!DOCTYPE rpc [<!ENTITY x "boom">]><rpc xmlns="${BASE}" message-id="d1"><get>&x;</get></rpc>`);
    const reply = await c.next();
    expect(reply).to.contain('<error-tag>malformed-message</error-tag>');
    expect(reply).to.contain('DOCTYPE');
    expect(reply).not.to.contain('boom');
  });

  it('reports several errors of one operation, with error-path namespaces, app-tag and error-info', async () => {
    const c = await connect();
    const reply = await c.rpc('<fail/>');
    expect(reply.match(/<rpc-error>/g)).to.have.length(2);
    expect(reply).to.contain('<error-type>application</error-type><error-tag>data-missing</error-tag>');
    expect(reply).to.contain('<error-app-tag>x-app</error-app-tag>');
    expect(reply).to.contain(`<error-path xmlns:tandem-vrf="urn:tandem:yang:tandem-vrf">/tandem-vrf:vrf[name='a:b']</error-path>`);
    expect(reply).to.contain('<error-message xml:lang="en">no such vrf</error-message>');
    expect(reply).to.contain('<error-tag>lock-denied</error-tag>');
    expect(reply).to.contain('<error-info><session-id>7</session-id></error-info>');
  });

  it('turns an unexpected exception into operation-failed and keeps the session', async () => {
    const c = await connect();
    const reply = await c.rpc('<crash/>');
    expect(reply).to.contain('<error-tag>operation-failed</error-tag>');
    expect(reply).to.contain('something internal broke');
    expect(await c.rpc('<get/>')).to.contain('<data>');
  });

  it('rejects a root that is not an rpc, and an rpc in the wrong namespace', async () => {
    const c = await connect();
    c.sendMessage(`<frob xmlns="${BASE}" message-id="1"/>`);
    expect(await c.next()).to.contain('<error-tag>unknown-element</error-tag>');
    c.sendMessage('<rpc xmlns="urn:other" message-id="2"><get/></rpc>');
    const r = await c.next();
    expect(r).to.contain('<error-tag>unknown-namespace</error-tag>');
    expect(r).to.contain('<bad-namespace>urn:other</bad-namespace>');
  });

  it('hands the operation element to the dispatcher with namespaces resolved', async () => {
    const c = await connect();
    const reply = await c.rpc('<echo xmlns="urn:test:echo" xmlns:t="urn:test:t"><t:a k="v">x &amp; y</t:a></echo>');
    expect(reply).to.contain('<echo xmlns="urn:test:echo"><t:a xmlns:t="urn:test:t" k="v">x &amp; y</t:a></echo>');
  });

  it('close-session replies ok, then ends the session and the SSH connection', async () => {
    const c = await connect();
    const reply = await c.rpc('<close-session/>');
    expect(reply).to.contain('<ok/>');
    expect(await c.waitClosed(5000)).to.equal(true);
    await waitFor(() => disp.ended.some((e) => e.sessionId === c.sessionId && e.reason === 'closed'));
  });

  it('kill-session ends the other session and reports who killed it', async () => {
    const victim = await connect();
    const killer = await connect();
    const reply = await killer.rpc(`<kill-session><session-id>${victim.sessionId}</session-id></kill-session>`);
    expect(reply).to.contain('<ok/>');
    expect(await victim.waitClosed(5000)).to.equal(true);
    await waitFor(() => disp.ended.some((e) => e.sessionId === victim.sessionId && e.reason === 'killed' && e.killedBy === killer.sessionId));
    expect(await killer.rpc('<kill-session><session-id>999999</session-id></kill-session>')).to.contain('<error-tag>invalid-value</error-tag>');
  });

  it('sends notifications on the session, interleaved with replies, and counts them', async () => {
    const c = await connect();
    c.sendMessage(`<rpc xmlns="${BASE}" message-id="n1"><notify/></rpc>`);
    const first = await c.next();
    const second = await c.next();
    expect(first).to.contain('<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">');
    expect(second).to.contain('message-id="n1"');
    const info = disp.started.find((s) => s.sessionId === c.sessionId)!;
    expect(info.outNotifications).to.equal(1);
  });

  it('keeps live per-session counters for monitoring', async () => {
    const c = await connect();
    await c.rpc('<get/>');
    await c.rpc('<fail/>');
    c.sendMessage('<rpc');
    await c.next();
    const info = disp.started.find((s) => s.sessionId === c.sessionId)!;
    expect(info).to.include({ username: 'alice', transport: 'netconf-ssh', sourceHost: '127.0.0.1', inRpcs: 2, inBadRpcs: 1, outRpcErrors: 2 });
    expect(Number.isNaN(Date.parse(info.loginTime))).to.equal(false);
  });

  it('stops serving a session that does not read its replies, without affecting others', async () => {
    const slow = await connect();
    const other = await connect();
    const before = disp.operations.filter((o) => o === 'echo').length;
    slow.channel.pause(); // read nothing: the SSH window fills up
    const N = 200;
    const payload = 'p'.repeat(60000); // 12 MB of replies: more than the SSH window and both stream buffers (2 MiB each)
    for (let i = 0; i < N; i += 1) slow.sendMessage(`<rpc xmlns="${BASE}" message-id="s${i}"><echo xmlns="urn:test:echo">${payload}</echo></rpc>`);
    const served = () => disp.operations.filter((o) => o === 'echo').length - before;
    let last = -1;
    for (let i = 0; i < 50 && served() !== last; i += 1) {
      last = served();
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(served()).to.be.lessThan(N);
    expect(await other.rpc('<get/>')).to.contain(`<session>${other.sessionId}</session>`);
    slow.channel.resume();
    for (let i = 0; i < N; i += 1) expect(await slow.next()).to.contain(`message-id="s${i}"`);
    expect(served()).to.equal(N);
  });

  it('closes the session on broken chunked framing', async () => {
    const c = await connect();
    c.sendRaw('\n#abc\n<rpc/>');
    expect(await c.waitClosed(5000)).to.equal(true);
  });

  it("accepts a client hello that arrives chunk-framed (ncclient's race)", async () => {
    const c = await connect({ skipHello: true });
    c.sendRaw(frameMessage(`<hello xmlns="${BASE}"><capabilities><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>`, 'chunked'));
    c.framing = 'chunked';
    (c as unknown as { decoder: { setMode(m: string): void } }).decoder.setMode('chunked');
    expect(await c.rpc('<get/>')).to.contain('<data>');
  });

  it('closes a session whose hello carries a session-id and counts a bad hello', async () => {
    const before = disp.badHellos;
    const c = await connect({ skipHello: true });
    c.sendRaw(frameMessage(`<hello xmlns="${BASE}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities><session-id>4</session-id></hello>`, 'eom'));
    expect(await c.waitClosed(5000)).to.equal(true);
    expect(disp.badHellos).to.equal(before + 1);
  });

  it('logs in with a public key', async () => {
    const c = await connect({ username: srv.keyUser, password: undefined, privateKey: srv.privateKey });
    expect(await c.rpc('<get/>')).to.contain('<user>bob</user>');
  });

  it('refuses a wrong password', async () => {
    let err: unknown;
    try {
      await connect({ password: 'wrong' });
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/authentication methods failed/);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
