// SSH as OpenSSH does it: exactly --max-auth-attempts checks per connection (pipelined or not),
// per-source penalties, MaxStartups per source with random early drop, sessions per user with
// slots kept for admin/recovery users, the key policy (DSA, RSA < 2048, SHA-1 signatures refused)
// at `user add` and at login with OpenSSH's ssh, the failed-auth log, and subscribers that stop
// reading. Other "hosts" are other loopback addresses (127.0.0.2, 127.0.0.3).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { UserStore } from '../../agent/ssh/user-store.js';
import { refuseStartup } from '../../agent/ssh/startup-limiter.js';
import { SourcePenalties } from '../../agent/ssh/source-penalties.js';
import { sourceOf } from '../../agent/ssh/source-address.js';
import { startInProcessAgent, type InProcessAgent } from '../helpers/in-process-agent.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { TestDispatcher } from '../helpers/test-dispatcher.js';
import { startTandem, TANDEM_CLI, type TandemProcess } from '../helpers/tandem-process.js';
import { eomSession, hasOpenSsh, runOpenSsh } from '../helpers/openssh-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Count every password check the agent makes (all UserStores of this process). */
function countPasswordChecks(): { readonly n: number; restore(): void } {
  const orig = UserStore.prototype.checkPassword;
  const counter = { n: 0, restore: () => { UserStore.prototype.checkPassword = orig; } };
  UserStore.prototype.checkPassword = function (this: UserStore, name: string, pw: string) {
    counter.n += 1;
    return orig.call(this, name, pw);
  };
  return counter;
}

/** Log in with these passwords in turn (ssh2 client); `pipelined` sends them all at once. */
function guess(srv: InProcessAgent, passwords: string[], pipelined: boolean, localAddress?: string): Promise<string> {
  const conn = new ssh2.Client();
  return new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), 20000);
    const done = (what: string) => {
      clearTimeout(timer);
      conn.end();
      resolve(what);
    };
    conn.on('error', (err) => done(`error: ${err.message}`));
    conn.on('close', () => done('closed'));
    conn.on('ready', () => done('ready'));
    const pw = [...passwords];
    let first = true;
    conn.connect({
      host: srv.host, port: srv.port, username: srv.user, readyTimeout: 20000, localAddress,
      authHandler: (_methods, _partial, next) => {
        if (pipelined && first) {
          // Half the requests straight onto the wire, without waiting for the answers; the client
          // goes on sending one more per failure, so it never gives up before the server closes.
          const proto = (conn as unknown as { _protocol: { authPassword(u: string, p: string): void } })._protocol;
          for (let i = Math.floor(pw.length / 2); i > 0; i -= 1) proto.authPassword(srv.user, pw.shift()!);
        }
        first = false;
        const p = pw.shift();
        if (p === undefined) return false;
        next({ type: 'password', username: srv.user, password: p });
        return undefined;
      },
    });
  });
}

/** A raw TCP connection from `localAddress`; `closed` resolves when the server closes it. */
function rawSocket(port: number, localAddress: string): Promise<{ sock: net.Socket; closed: Promise<void>; isClosed: () => boolean; got: () => number }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    let isClosed = false;
    let got = 0;
    sock.on('data', (d: Buffer) => { got += d.length; });
    const closed = new Promise<void>((r) => sock.once('close', () => {
      isClosed = true;
      r();
    }));
    sock.once('connect', () => resolve({ sock, closed, isClosed: () => isClosed, got: () => got }));
    sock.once('error', reject);
  });
}

describe('SSH: authentication attempts, penalties, pre-auth limits', function () {
  this.timeout(60000);
  let srv: InProcessAgent | undefined;
  const sockets: net.Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await srv?.stop();
    srv = undefined;
  });

  for (const pipelined of [false, true]) {
    it(`makes exactly --max-auth-attempts password checks per connection (${pipelined ? 'pipelined' : 'one at a time'})`, async () => {
      srv = await startInProcessAgent(new TestDispatcher(), { maxAuthAttempts: 3, penalties: undefined });
      const checks = countPasswordChecks();
      try {
        const outcome = await guess(srv, Array.from({ length: 20 }, (_, i) => `wrong-${i}`), pipelined);
        expect(outcome).to.not.equal('ready');
        await sleep(300); // a check still running would show up here
        expect(checks.n).to.equal(3);
        // The last allowed attempt of a new connection is checked (ssh2's client cannot follow
        // pipelined failures, so this one goes one at a time).
        const ok = await guess(srv, ['wrong', 'wrong', srv.password], false);
        expect(ok).to.equal('ready');
        expect(checks.n).to.equal(6);
      } finally {
        checks.restore();
      }
    });
  }

  it('penalises a source after failed logins (refused at accept), not other sources, and lets it in once the penalty ran out', async () => {
    srv = await startInProcessAgent(new TestDispatcher(), {
      maxAuthAttempts: 2, penalties: { authfail: 3, noauth: 0, 'grace-exceeded': 0, max: 6, min: 5, 'max-sources': 100 },
    });
    expect(await guess(srv, ['a', 'b'], false, '127.0.0.2')).to.not.equal('ready'); // 3 s: under min
    const stillIn = await rawSocket(srv.port, '127.0.0.2');
    sockets.push(stillIn.sock);
    await sleep(300);
    expect(stillIn.isClosed()).to.equal(false);
    expect(stillIn.got()).to.be.greaterThan(0); // the SSH banner
    stillIn.sock.destroy();
    expect(await guess(srv, ['a', 'b'], false, '127.0.0.2')).to.not.equal('ready'); // 6 s: enforced
    const refused = await rawSocket(srv.port, '127.0.0.2');
    sockets.push(refused.sock);
    await Promise.race([refused.closed, sleep(2000)]);
    expect(refused.isClosed()).to.equal(true);
    expect(refused.got()).to.equal(0); // closed before the server sent (or read) a byte
    const other = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: srv.user, password: srv.password, localAddress: '127.0.0.3' });
    expect(await other.rpc('<get/>')).to.contain('<data>');
    other.close();
    await sleep(6500);
    const again = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: srv.user, password: srv.password, localAddress: '127.0.0.2' });
    expect(await again.rpc('<get/>')).to.contain('<data>');
    again.close();
  });

  it("keeps other hosts logging in while one host holds 128 idle connections (default limits)", async () => {
    srv = await startInProcessAgent(new TestDispatcher());
    const idle = [];
    for (let i = 0; i < 128; i += 1) {
      const s = await rawSocket(srv.port, '127.0.0.2');
      sockets.push(s.sock);
      idle.push(s);
    }
    await sleep(500);
    const open = idle.filter((s) => !s.isClosed()).length;
    // Per source 64:30:96: the first 64 are kept, then each is dropped at random (30% rising to 100%).
    expect(open).to.be.within(64, 96);
    expect(open).to.be.lessThan(128);
    const logins = await Promise.all(Array.from({ length: 10 }, async () => {
      const c = await NetconfTestClient.connect({ host: srv!.host, port: srv!.port, username: srv!.user, password: srv!.password, localAddress: '127.0.0.3' });
      const ok = (await c.rpc('<get/>')).includes('<data>');
      c.close();
      return ok;
    }));
    expect(logins).to.deep.equal(Array(10).fill(true));
  });

  it('drops connections of one source at random between start and full (start:rate:full)', async () => {
    srv = await startInProcessAgent(new TestDispatcher(), { perSourceMaxStartups: { start: 4, rate: 30, full: 8 } });
    const idle = [];
    for (let i = 0; i < 40; i += 1) {
      const s = await rawSocket(srv.port, '127.0.0.2');
      sockets.push(s.sock);
      idle.push(s);
    }
    await sleep(500);
    const open = idle.filter((s) => !s.isClosed()).length;
    expect(open).to.be.within(4, 8);
    // The drop probability itself: 30% at start, linear to 100% at full.
    expect(refuseStartup(3, { start: 4, rate: 30, full: 8 }, () => 0)).to.equal(false);
    expect(refuseStartup(4, { start: 4, rate: 30, full: 8 }, () => 29)).to.equal(true);
    expect(refuseStartup(4, { start: 4, rate: 30, full: 8 }, () => 30)).to.equal(false);
    expect(refuseStartup(6, { start: 4, rate: 30, full: 8 }, () => 64)).to.equal(true);
    expect(refuseStartup(6, { start: 4, rate: 30, full: 8 }, () => 65)).to.equal(false);
    expect(refuseStartup(8, { start: 4, rate: 30, full: 8 }, () => 0)).to.equal(true);
  });

  it('counts penalties and sources as OpenSSH does (min, max, IPv6 /64)', () => {
    let now = 1_000_000;
    const p = new SourcePenalties({ authfail: 5, noauth: 1, 'grace-exceeded': 10, max: 12, min: 15, 'max-sources': 2 }, () => now);
    p.penalise('a', 'authfail');
    p.penalise('a', 'authfail');
    expect(p.refusedFor('a')).to.equal(0); // 10 s < min 15
    p.penalise('a', 'grace-exceeded'); // capped at max 12 < min: never enforced
    expect(p.refusedFor('a')).to.equal(0);
    const q = new SourcePenalties({ authfail: 5, noauth: 1, 'grace-exceeded': 10, max: 600, min: 15, 'max-sources': 2 }, () => now);
    for (let i = 0; i < 3; i += 1) q.penalise('b', 'authfail');
    expect(q.refusedFor('b')).to.equal(15000);
    now += 15000;
    expect(q.refusedFor('b')).to.equal(0);
    expect(sourceOf('2001:db8:1:2:3:4:5:6')).to.equal(sourceOf('2001:db8:1:2::99'));
    expect(sourceOf('::ffff:192.0.2.7')).to.equal('192.0.2.7');
    expect(sourceOf('192.0.2.7')).to.equal('192.0.2.7');
  });
});

describe('SSH: sessions per user, slots kept for admin and recovery users', function () {
  this.timeout(60000);
  let srv: InProcessAgent;
  const clients: NetconfTestClient[] = [];
  before(async () => {
    srv = await startInProcessAgent(new TestDispatcher(), { maxSessions: 20, maxSessionsPerUser: 8, reservedSessions: 2 });
    const users = new UserStore(srv.stateDir);
    for (const name of ['carol', 'dave']) await users.add(name, { password: `${name}-secret` });
    // As `tandem user add ops --group admin` and `tandem user add rescue --recovery` store them.
    await users.add('ops', { password: 'ops-secret', groups: ['admin'] });
    await users.add('rescue', { password: 'rescue-secret', recovery: true });
    const file = JSON.parse(await readFile(users.file, 'utf8')) as { users: Record<string, Record<string, unknown>> };
    expect(file.users.ops!.groups).to.deep.equal(['admin']);
    expect(file.users.rescue!.recovery).to.equal(true);
  });
  after(async () => {
    for (const c of clients) c.close();
    await srv?.stop();
  });
  const open = async (user: string) => {
    const c = await NetconfTestClient.connect({ host: srv.host, port: srv.port, username: user, password: user === 'alice' ? srv.password : `${user}-secret` });
    clients.push(c);
    return c;
  };
  const refused = async (user: string) => {
    try {
      await open(user);
      return false;
    } catch (err) {
      return /Unable to start subsystem/.test(String(err));
    }
  };

  it('caps one user, keeps the last slots for admin/recovery, and lets a privileged user in when an ordinary one leaves', async () => {
    const alice = [];
    for (let i = 0; i < 8; i += 1) alice.push(await open('alice'));
    expect(await refused('alice')).to.equal(true); // per-user cap 8
    for (let i = 0; i < 8; i += 1) await open('carol'); // 16
    for (let i = 0; i < 2; i += 1) await open('ops'); // 18: group admin
    expect(srv.agent.server.registry.size).to.equal(18);
    expect(await refused('dave')).to.equal(true); // an ordinary user: the last 2 of 20 are kept
    await open('rescue'); // 19: the recovery user
    await open('ops'); // 20
    expect(await refused('rescue')).to.equal(true); // nobody beyond max-sessions
    expect(await alice[0]!.rpc('<close-session/>')).to.contain('<ok/>');
    expect(await alice[0]!.waitClosed(5000)).to.equal(true);
    await sleep(100);
    expect(srv.agent.server.registry.size).to.equal(19);
    expect(await refused('dave')).to.equal(true);
    const r = await open('rescue');
    expect(await r.rpc('<get/>')).to.contain('<user>rescue</user>');
  });
});

describe('SSH: subscribers that stop reading', function () {
  this.timeout(60000);
  let srv: InProcessAgent;
  let disp: TestDispatcher;
  const clients: NetconfTestClient[] = [];
  before(async () => {
    disp = new TestDispatcher();
    srv = await startInProcessAgent(disp, { maxOutputQueueBytes: 1024 * 1024, idleTimeoutMs: 1000 });
  });
  after(async () => {
    for (const c of clients) c.close();
    await srv?.stop();
  });

  it('closes a subscriber whose unread notifications pass --max-output-queue; a reading one gets them all', async () => {
    const opts = { host: srv.host, port: srv.port, username: srv.user, password: srv.password };
    const stuck = await NetconfTestClient.connect(opts);
    const reader = await NetconfTestClient.connect(opts);
    const publisher = await NetconfTestClient.connect(opts);
    clients.push(stuck, reader, publisher);
    for (const c of [stuck, reader]) expect(await c.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>')).to.contain('<ok/>');
    stuck.channel.pause(); // reads nothing more: the SSH window fills, then the server's queue
    const N = 60;
    let received = 0;
    const reading = (async () => {
      while (received < N) {
        const m = await reader.next(20000);
        if (m.includes('<test-event')) received += 1;
      }
    })();
    for (let i = 0; i < N; i += 1) expect(await publisher.rpc('<broadcast>200000</broadcast>')).to.contain('<ok/>'); // 12 MB
    await reading;
    expect(received).to.equal(N);
    const ended = disp.ended.find((e) => e.sessionId === stuck.sessionId);
    expect(ended?.reason).to.equal('dropped');
    expect(srv.agent.server.registry.get(stuck.sessionId)).to.equal(undefined);
    // The reading subscriber is exempt from the idle timeout (1 s here) and still served.
    await sleep(1500);
    expect(srv.agent.server.registry.get(reader.sessionId)).to.not.equal(undefined);
  });
});

describe('SSH key policy and failed-login log (OpenSSH ssh, tandem user add)', function () {
  this.timeout(120000);
  let dir: string;
  let t: TandemProcess | undefined;
  const keys: Record<string, string> = {};
  before(async function () {
    if (!hasOpenSsh()) this.skip();
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-keypolicy-'));
    for (const [name, args] of [['dsa', ['-t', 'dsa']], ['rsa1024', ['-t', 'rsa', '-b', '1024']], ['rsa2048', ['-t', 'rsa', '-b', '2048']],
      ['ed25519', ['-t', 'ed25519']]] as const) {
      keys[name] = path.join(dir, `id_${name}`);
      const r = spawnSync('ssh-keygen', ['-q', ...args, '-N', '', '-C', name, '-f', keys[name]!], { encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
    }
  });
  after(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('tandem user add --key refuses DSA and RSA below 2048 bits, and takes RSA 2048 and ed25519', () => {
    const add = (user: string, key: string) => spawnSync(process.execPath, [TANDEM_CLI, 'user', 'add', user, '--key', `${key}.pub`, '--state-dir', dir], { encoding: 'utf8' });
    const dsa = add('d', keys.dsa!);
    expect(dsa.status).to.equal(1);
    expect(dsa.stderr).to.match(/DSA keys \(ssh-dss\) are refused/);
    const small = add('r1', keys.rsa1024!);
    expect(small.status).to.equal(1);
    expect(small.stderr).to.match(/RSA key of 1024 bits is refused: at least 2048 bits/);
    expect(add('r2', keys.rsa2048!).status).to.equal(0);
    expect(add('e', keys.ed25519!).status).to.equal(0);
  });

  it('refuses DSA, RSA-1024 and SHA-1 ssh-rsa signatures at login even when users.json holds the keys, and logs why with address, port and method', async () => {
    // Keys written straight into users.json (an old file, or edited by hand): refused at login too.
    const file = path.join(dir, 'users.json');
    const users = JSON.parse(await readFile(file, 'utf8')) as { users: Record<string, { keys?: string[] }> };
    users.users.d = { keys: [(await readFile(`${keys.dsa!}.pub`, 'utf8')).trim()] };
    users.users.r1 = { keys: [(await readFile(`${keys.rsa1024!}.pub`, 'utf8')).trim()] };
    await writeFile(file, JSON.stringify(users), { mode: 0o600 });
    t = await startTandem({ stateDir: dir, users: [] });
    const input = eomSession(['<get-config><source><running/></source></get-config>', '<close-session/>']);
    const login = (user: string, key: string, options: string[] = []) => runOpenSsh({ port: t!.port, user, key, input, options });

    const good = await login('r2', keys.rsa2048!); // rsa-sha2-512/256
    expect(good.stdout, `${good.stderr}\n${t.stdout()}`).to.match(/message-id="102"><ok\/>/);
    const goodEd = await login('e', keys.ed25519!);
    expect(goodEd.stdout, goodEd.stderr).to.match(/message-id="102"><ok\/>/);

    const sha1 = await login('r2', keys.rsa2048!, ['PubkeyAcceptedAlgorithms=ssh-rsa']);
    expect(sha1.code).to.equal(255);
    expect(sha1.stderr).to.match(/Permission denied/);
    const small = await login('r1', keys.rsa1024!);
    expect(small.code).to.equal(255);
    const dsa = await login('d', keys.dsa!, ['PubkeyAcceptedAlgorithms=+ssh-dss']);
    expect(dsa.code).to.equal(255);

    // A wrong password with the ssh2 client.
    const pw = await NetconfTestClient.connect({ host: t.host, port: t.port, username: 'r2', password: 'not-it' }).then(() => 'in', (e: Error) => e.message);
    expect(pw).to.match(/authentication methods failed/);

    await sleep(200);
    const failures = t.stdout().split('\n').filter((l) => l.includes('"authentication failed"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const why = (user: string) => failures.filter((f) => f.user === user).map((f) => String(f.why));
    expect(why('r2')).to.include('RSA signatures with SHA-1 (ssh-rsa) are refused: use rsa-sha2-256 or rsa-sha2-512');
    expect(why('r1')).to.include('RSA key of 1024 bits is refused: at least 2048 bits');
    expect(why('d')).to.satisfy((w: string[]) => w.some((x) => x.startsWith('DSA keys')));
    const pwFail = failures.find((f) => f.method === 'password' && f.user === 'r2');
    expect(pwFail).to.include({ ip: '127.0.0.1', method: 'password', why: 'wrong user name or password' });
    expect(pwFail?.port).to.be.a('number').greaterThan(0);
    expect(failures.every((f) => typeof f.port === 'number' && f.ip === '127.0.0.1' && typeof f.method === 'string')).to.equal(true);
  });
});
