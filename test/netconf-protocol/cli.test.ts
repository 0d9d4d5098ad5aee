// `tandem start` and `tandem user add` as child processes, with OpenSSH's `ssh -s ... netconf`,
// ncclient and the ssh2 client connecting to the real agent.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { DEBIAN_PYTHON, NCCLIENT_PRELUDE, runPython } from '../helpers/python-client.js';
import { parseListen } from '../../cli/cli-commands.js';
import { startTandem, TANDEM_CLI, type TandemProcess } from '../helpers/tandem-process.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';

function tandem(args: string[], input?: string) {
  return spawnSync(process.execPath, [TANDEM_CLI, ...args], { input, encoding: 'utf8', timeout: 30000 });
}

describe('tandem user add', function () {
  this.timeout(30000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores a password read from stdin only as a scrypt hash, in a 0600 file', async () => {
    const r = tandem(['user', 'add', 'carol', '--password-stdin', '--state-dir', dir], 'Corr3ct horse\n');
    expect(r.status, r.stderr).to.equal(0);
    const file = path.join(dir, 'users.json');
    expect((await stat(file)).mode & 0o777).to.equal(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).not.to.contain('Corr3ct');
    expect(JSON.parse(text).users.carol.password).to.match(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  });

  it('adds a public key from a file and refuses what is not one', async () => {
    const key = path.join(dir, 'k');
    expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status).to.equal(0);
    const ok = tandem(['user', 'add', 'dave', '--key', `${key}.pub`, '--state-dir', dir]);
    expect(ok.status, ok.stderr).to.equal(0);
    const users = JSON.parse(await readFile(path.join(dir, 'users.json'), 'utf8')).users;
    expect(users.dave.keys[0]).to.match(/^ssh-ed25519 AAAA/);
    const bad = tandem(['user', 'add', 'dave', '--key', key, '--state-dir', dir]);
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.match(/private key/);
  });

  it('explains bad usage with exit status 2', () => {
    for (const args of [['user', 'add', 'x'], ['user', 'add', 'x', '--password-stdin', '--key', 'f'], ['user', 'del', 'x'], ['user', 'add', '--password-stdin']]) {
      const r = tandem([...args, '--state-dir', dir], 'pw\n');
      expect(r.status, args.join(' ')).to.equal(2);
      expect(r.stderr).to.match(/usage: tandem user add/);
    }
    const badName = tandem(['user', 'add', 'no spaces', '--password-stdin', '--state-dir', dir], 'pw\n');
    expect(badName.status).to.equal(1);
    expect(badName.stderr).to.match(/invalid user name/);
  });

  it('stores NACM groups (--group, repeatable, replacing) and the recovery flag (--recovery)', async () => {
    const r = tandem(['user', 'add', 'ops', '--password-stdin', '--group', 'operator', '--group', 'monitoring', '--state-dir', dir], 'pw-ops\n');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/groups: operator, monitoring/);
    const rescue = tandem(['user', 'add', 'rescue', '--password-stdin', '--recovery', '--state-dir', dir], 'pw-rescue\n');
    expect(rescue.status, rescue.stderr).to.equal(0);
    expect(rescue.stdout).to.match(/recovery user/);
    expect(tandem(['user', 'add', 'ops', '--password-stdin', '--group', 'admin', '--state-dir', dir], 'pw-ops2\n').status).to.equal(0);
    const users = JSON.parse(await readFile(path.join(dir, 'users.json'), 'utf8')).users;
    expect(users.ops.groups).to.deep.equal(['admin']);
    expect(users.ops.recovery).to.equal(undefined);
    expect(users.rescue.recovery).to.equal(true);
    expect(users.rescue.groups).to.equal(undefined);
    const bad = tandem(['user', 'add', 'x', '--password-stdin', '--group', '*all', '--state-dir', dir], 'pw\n');
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.match(/invalid group name/);
  });
});

describe('tandem start', function () {
  this.timeout(120000);
  let t: TandemProcess | undefined;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-start-'));
  });
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads --listen as HOST:PORT, IPv6 in brackets', () => {
    expect(parseListen('127.0.0.1:8830')).to.deep.equal({ host: '127.0.0.1', port: 8830 });
    expect(parseListen('[::1]:0')).to.deep.equal({ host: '::1', port: 0 });
    expect(parseListen('localhost:830')).to.deep.equal({ host: 'localhost', port: 830 });
    for (const bad of ['8830', '::1:8830', 'host:', 'host:65536', ':8830']) expect(() => parseListen(bad), bad).to.throw(/HOST:PORT/);
  });

  it('refuses bad arguments with exit status 2', () => {
    for (const args of [['--listen', 'nowhere'], ['--engine', 'turbo'], ['--max-sessions', '0'], ['--frobnicate']]) {
      const r = tandem(['start', '--state-dir', dir, ...args]);
      expect(r.status, args.join(' ')).to.equal(2);
      expect(r.stderr).to.match(/usage: tandem start/);
    }
  });

  it('prints how to connect, keeps its host key (0600) across restarts, and stops cleanly on SIGTERM', async () => {
    t = await startTandem({ stateDir: dir });
    expect(t.stderr()).to.match(/connect: {2}ssh -s -p \d+ USER@127\.0\.0\.1 netconf/);
    const key = path.join(dir, 'ssh_host_ed25519_key');
    expect((await stat(key)).mode & 0o777).to.equal(0o600);
    const first = await readFile(key, 'utf8');
    const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    expect(await c.rpc('<get-config><source><running/></source></get-config>')).to.match(/<data[ >/]/);
    await t.stop();
    expect(await t.exited).to.deep.equal({ code: 0, signal: null });
    expect(await c.waitClosed(5000)).to.equal(true);
    expect(t.stderr()).to.contain('SIGTERM, shutting down');
    t = await startTandem({ stateDir: dir, users: [] });
    expect(await readFile(key, 'utf8')).to.equal(first);
  });

  it('applies the limits given on the command line', async () => {
    t = await startTandem({ args: ['--max-sessions', '1', '--max-message-size', '2048'] });
    const opts = { host: t.host, port: t.port, username: t.username, password: t.password };
    const first = await NetconfTestClient.connect(opts);
    try {
      let refused: unknown;
      try {
        (await NetconfTestClient.connect(opts)).close();
      } catch (err) {
        refused = err;
      }
      expect(String(refused)).to.match(/Unable to start subsystem: netconf/);
      const big = await first.rpc(`<get-config><source><running/></source><filter>${'<x/>'.repeat(1000)}</filter></get-config>`);
      expect(big).to.contain('<error-tag>too-big</error-tag>');
    } finally {
      first.close();
    }
  });

  it('serves 50 concurrent sessions of the real agent, each doing get and edit-config', async () => {
    t = await startTandem();
    const NP = 'urn:tandem:yang:tandem-network-profile';
    const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const c = await NetconfTestClient.connect({ host: t!.host, port: t!.port, username: t!.username, password: t!.password, timeoutMs: 60000 });
      try {
        const g = await c.rpc('<get/>');
        const e = await c.rpc(`<edit-config><target><running/></target><config><network-profile xmlns="${NP}"><name>p${i}</name>`
          + '<type>tcp-fast-path</type></network-profile></config></edit-config>');
        return { get: /<data[ >/]/.test(g), edit: e.includes('<ok/>') ? 'ok' : e };
      } finally {
        c.close();
      }
    }));
    expect(results.filter((r) => !r.get || r.edit !== 'ok')).to.deep.equal([]);
    const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    try {
      const running = await c.rpc(`<get-config><source><running/></source><filter type="subtree"><network-profile xmlns="${NP}"/></filter></get-config>`);
      // The 50 edited profiles (a fresh node also holds the factory System-* profiles).
      expect(running.match(/<name>p\d+<\/name>/g)).to.have.length(50);
    } finally {
      c.close();
    }
  });

  it("works with OpenSSH's ssh -s netconf and a key added by tandem user add", async function () {
    if (spawnSync('ssh', ['-V']).error) this.skip();
    const key = path.join(dir, 'user_key');
    if (!existsSync(key)) expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status).to.equal(0);
    expect(tandem(['user', 'add', 'erin', '--key', `${key}.pub`, '--state-dir', dir]).status).to.equal(0);
    t = await startTandem({ stateDir: dir, users: [] });
    const input = `<?xml version="1.0" encoding="UTF-8"?><hello xmlns="${BASE}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>`
      + `<rpc xmlns="${BASE}" message-id="101"><get-config><source><running/></source></get-config></rpc>]]>]]>`
      + `<rpc xmlns="${BASE}" message-id="102"><close-session/></rpc>]]>]]>`;
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const ssh = spawn('ssh', ['-s', '-p', String(t!.port), '-i', key, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'LogLevel=ERROR', 'erin@127.0.0.1', 'netconf'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let so = '';
      let se = '';
      ssh.stdout.setEncoding('utf8').on('data', (d: string) => { so += d; });
      ssh.stderr.setEncoding('utf8').on('data', (d: string) => { se += d; });
      const timer = setTimeout(() => {
        ssh.kill('SIGKILL');
        reject(new Error(`ssh did not finish\n${so}\n${se}`));
      }, 30000);
      ssh.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: so, stderr: se });
      });
      ssh.stdin.end(input);
    });
    expect(out.stdout, out.stderr).to.contain('<session-id>');
    expect(out.stdout).to.match(/<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1\.0" message-id="101"><data[ >/]/);
    expect(out.stdout).to.match(/<rpc-reply [^>]*message-id="102"><ok\/><\/rpc-reply>\]\]>\]\]>/);
    expect(out.code).to.equal(0);
  });

  it('serves ncclient: get-config, get, an unknown operation and close-session', async function () {
    if (!existsSync(DEBIAN_PYTHON)) this.skip();
    t = await startTandem();
    const { result } = await runPython<Record<string, unknown>>(`${NCCLIENT_PRELUDE}
from ncclient.xml_ import to_ele
m = connect()
out = {'caps': list(m.server_capabilities)}
out['running'] = m.get_config(source='running').ok
out['get'] = m.get().ok
try:
    m.dispatch(to_ele('<frobnicate xmlns="urn:example:none"/>'))
except RPCError as e:
    out['err'] = [e.tag, e.type]
m.close_session()
print(json.dumps(out))
`, { host: t.host, port: t.port, username: t.username, password: t.password });
    expect(result.caps).to.include('urn:ietf:params:netconf:capability:candidate:1.0');
    expect(result).to.deep.include({ running: true, get: true, err: ['operation-not-supported', 'protocol'] });
  });

  it("works with Debian's yangcli (libssh2, password login, base:1.1)", async function () {
    if (!existsSync('/usr/bin/yangcli')) this.skip();
    t = await startTandem();
    const home = await mkdtemp(path.join(os.tmpdir(), 'tandem-yangcli-'));
    try {
      const r = spawnSync('/usr/bin/yangcli', [`--user=${t.username}`, '--server=127.0.0.1', `--ncport=${t.port}`, `--password=${t.password}`,
        '--batch-mode', '--run-command=get-config source=running', '--log-level=info'], { env: { ...process.env, HOME: home }, cwd: home, encoding: 'utf8', timeout: 60000 });
      expect(r.status, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout).to.contain('Protocol version set to: RFC 6241 (base:1.1)');
      expect(r.stdout).to.match(/RPC Data Reply \d+ for session \d+:\s+rpc-reply \{\s+data \{/);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
