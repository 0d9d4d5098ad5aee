// Strict input, nothing lost, with the real agent: invalid UTF-8 is refused (malformed-message on
// base:1.1, operation-failed on base:1.0) and nothing is stored; datastore elements and
// parameters in a foreign namespace are refused (ssh2 client and ncclient); the message size limit
// applies while the message is read, before parsing; damaged state files stop the start with an
// error naming the file and how to start anyway.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { DEBIAN_PYTHON, NCCLIENT_PRELUDE, runPython } from '../helpers/python-client.js';
import { ansibleAvailable, runPlaybook } from '../helpers/ansible-playbook.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { eomSession, hasOpenSsh, runOpenSsh } from '../helpers/openssh-client.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const NP = 'urn:tandem:yang:tandem-network-profile';

function secretConfig(secret: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`<config>
  <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>master</state></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <peer><name>peer1</name><source>10.150.0.1</source><address>10.150.0.2</address></peer>
      <listen-ha-group>ha-group1</listen-ha-group>
      <shared-secret>`), secret, Buffer.from(`</shared-secret>
    </ha-fp-conntrack>
  </vrf>
</config>`)]);
}

/** One rpc, chunk-framed by hand so that its bytes go out exactly as given. */
function chunked(messageId: string, op: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(`<rpc xmlns="${BASE}" message-id="${messageId}">`), op, Buffer.from('</rpc>')]);
  return Buffer.concat([Buffer.from(`\n#${body.length}\n`), body, Buffer.from('\n##\n')]);
}

describe('Strict input (real agent)', function () {
  this.timeout(120000);
  let t: TandemProcess;
  let c: NetconfTestClient;
  before(async () => {
    t = await startTandem();
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 60000 });
  });
  after(async () => {
    c?.close();
    await t?.stop();
  });

  it('refuses invalid UTF-8 with malformed-message (base:1.1) and stores nothing; valid UTF-8 is stored as sent', async () => {
    const good = Buffer.from('Sécret-ü-7f3a9c2e41d08b65e2c9d7', 'utf8');
    const edit = (secret: Buffer) => Buffer.concat([Buffer.from('<edit-config><target><candidate/></target>'), secretConfig(secret), Buffer.from('</edit-config>')]);
    c.sendRaw(chunked('u1', edit(Buffer.concat([Buffer.from('bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('-secret-7f3a9c2e41d08b65')]))));
    const bad = await c.next();
    expect(bad).to.contain('message-id="u1"');
    expect(bad).to.contain('<error-tag>malformed-message</error-tag>');
    expect(bad).to.match(/not valid UTF-8 \(invalid byte at offset \d+\)/);
    const cand = await c.rpc('<get-config><source><candidate/></source></get-config>');
    expect(cand).to.not.contain('shared-secret');
    expect(cand).to.not.contain('\uFFFD');
    // A truncated multi-byte sequence and a UTF-8-encoded surrogate are invalid too.
    for (const bytes of [[0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
      c.sendRaw(chunked('u2', edit(Buffer.concat([Buffer.from('x'), Buffer.from(bytes), Buffer.from('-secret-7f3a9c2e41d08b65')]))));
      expect(await c.next()).to.contain('<error-tag>malformed-message</error-tag>');
    }
    c.sendRaw(chunked('u3', edit(good)));
    expect(await c.next()).to.contain('<ok/>');
    const stored = await c.rpc('<get-config><source><candidate/></source></get-config>');
    expect(stored).to.contain(`<shared-secret>${good.toString('utf8')}</shared-secret>`);
    expect(await c.rpc('<discard-changes/>')).to.contain('<ok/>');
  });

  it("refuses invalid UTF-8 with operation-failed on a base:1.0 session (OpenSSH's ssh -s)", async function () {
    if (!hasOpenSsh()) this.skip();
    // ssh -s with a password is not scriptable: the agent gets a key user for it.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-utf8-'));
    try {
      const { spawnSync } = await import('node:child_process');
      const key = path.join(dir, 'k');
      expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status).to.equal(0);
      const { UserStore } = await import('../../agent/ssh/user-store.js');
      await new UserStore(t.stateDir).add('keyuser', { publicKey: await readFile(`${key}.pub`, 'utf8') });
      const head = eomSession([]);
      const rpc = Buffer.concat([Buffer.from(`<rpc xmlns="${BASE}" message-id="201"><edit-config><target><candidate/></target>`),
        secretConfig(Buffer.from([0x73, 0xe9, 0x63, 0x72, 0x65, 0x74])), // "sécret" in Latin-1, not UTF-8
        Buffer.from('</edit-config></rpc>]]>]]>'),
        Buffer.from(`<rpc xmlns="${BASE}" message-id="202"><get-config><source><candidate/></source></get-config></rpc>]]>]]>`),
        Buffer.from(`<rpc xmlns="${BASE}" message-id="203"><close-session/></rpc>]]>]]>`)]);
      const out = await runOpenSsh({ port: t.port, user: 'keyuser', key, input: Buffer.concat([Buffer.from(head), rpc]) });
      expect(out.stdout, out.stderr).to.match(/message-id="201"><rpc-error><error-type>rpc<\/error-type><error-tag>operation-failed<\/error-tag>/);
      expect(out.stdout).to.not.contain('malformed-message');
      const reply202 = /message-id="202">(.*?)<\/rpc-reply>/s.exec(out.stdout)?.[1] ?? '';
      expect(reply202).to.contain('<data');
      expect(reply202).to.not.contain('shared-secret');
      expect(out.code).to.equal(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses datastore elements and parameters in a foreign namespace with unknown-namespace', async () => {
    const cases = [
      '<get-config><source><running xmlns="urn:example:other"/></source></get-config>',
      `<edit-config><target><candidate xmlns="urn:example:other"/></target><config><network-profile xmlns="${NP}"><name>x</name><type>tcp-proxy</type></network-profile></config></edit-config>`,
      '<lock><target><running xmlns="urn:example:other"/></target></lock>',
      '<copy-config><target><startup xmlns="urn:example:other"/></target><source><running/></source></copy-config>',
      '<delete-config><target><startup xmlns="urn:example:other"/></target></delete-config>',
      '<validate><source><candidate xmlns="urn:example:other"/></source></validate>',
      '<get-config><source xmlns="urn:example:other"><running/></source></get-config>',
      '<commit><confirmed xmlns="urn:example:other"/></commit>',
    ];
    for (const op of cases) {
      const r = await c.rpc(op);
      expect(r, op).to.contain('<error-tag>unknown-namespace</error-tag>');
      expect(r, op).to.contain('<bad-namespace>urn:example:other</bad-namespace>');
    }
    const ds = await c.rpc('<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:example:other"><datastore>ds:running</datastore></get-data>');
    expect(ds).to.contain('<error-tag>invalid-value</error-tag>');
    // Nothing was changed, and the same operations in the right namespace work.
    expect(await c.rpc('<get-config><source><candidate/></source></get-config>')).to.not.contain('<name>x</name>');
    expect(await c.rpc('<get-config><source><running/></source></get-config>')).to.contain('<data');
    expect(await c.rpc('<lock><target><running/></target></lock>')).to.contain('<ok/>');
    expect(await c.rpc('<unlock><target><running/></target></unlock>')).to.contain('<ok/>');
    expect(await c.rpc('<get-config><source><running/></source><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all</with-defaults></get-config>')).to.contain('<data');
  });

  it('refuses a foreign-namespace datastore sent by ncclient', async function () {
    if (!existsSync(DEBIAN_PYTHON)) this.skip();
    const { result } = await runPython<Record<string, unknown>>(`${NCCLIENT_PRELUDE}
from ncclient.xml_ import to_ele
m = connect()
out = {}
try:
    m.dispatch(to_ele('<get-config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><source><running xmlns="urn:example:other"/></source></get-config>'))
    out['err'] = None
except RPCError as e:
    out['err'] = [e.tag, e.type, e.info]
out['ok'] = m.get_config(source='running').ok
m.close_session()
print(json.dumps(out))
`, { host: t.host, port: t.port, username: t.username, password: t.password });
    expect((result.err as string[])[0]).to.equal('unknown-namespace');
    expect((result.err as string[])[1]).to.equal('protocol');
    expect((result.err as string[])[2]).to.contain('urn:example:other');
    expect(result.ok).to.equal(true);
  });

  it('rejects a 55 MB edit-config while reading it (default limit 16 MiB), and serves another session meanwhile', async () => {
    const one = `<network-profile xmlns="${NP}"><name>p</name><type>bogus</type></network-profile>`;
    const msg = `<edit-config><target><candidate/></target><config>${one.repeat(Math.ceil(55e6 / one.length))}</config></edit-config>`;
    const other = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 60000 });
    try {
      const t0 = Date.now();
      const big = c.rpc(msg);
      const t1 = Date.now();
      expect(await other.rpc('<get-config><source><running/></source></get-config>')).to.contain('<data');
      const otherMs = Date.now() - t1;
      const reply = await big;
      const ms = Date.now() - t0;
      expect(reply).to.contain('<error-tag>too-big</error-tag>');
      expect(reply).to.match(/exceeds the limit of 16777216/);
      expect(ms).to.be.lessThan(20000); // 41.7 s before, parsed in full; about 1 s here when the machine is quiet
      expect(otherMs).to.be.lessThan(5000);
    } finally {
      other.close();
    }
    expect(await c.rpc('<get-config><source><candidate/></source></get-config>')).to.not.contain('<name>p</name>');
  });
});

describe('State files: damage stops the start, naming the file', function () {
  this.timeout(120000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-statefiles-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const failsToStart = async (args: string[] = []) => {
    try {
      const t = await startTandem({ stateDir: dir, args });
      await t.stop();
      return '';
    } catch (err) {
      return String(err);
    }
  };

  it('refuses to start on an empty or truncated running.xml, says how to start anyway, and then starts from --startup', async () => {
    const running = path.join(dir, 'running.xml');
    // A real running.xml first.
    const t = await startTandem({ stateDir: dir });
    const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    expect(await c.rpc(`<edit-config><target><running/></target><config><network-profile xmlns="${NP}"><name>kept</name><type>tcp-proxy</type></network-profile></config></edit-config>`)).to.contain('<ok/>');
    c.close();
    await t.stop();
    const full = await readFile(running);
    expect(full.toString()).to.contain('kept');

    await writeFile(running, '');
    const empty = await failsToStart();
    expect(empty).to.contain(`running configuration ${running} is empty (0 bytes); the agent did not start`);
    expect(empty).to.contain(`mv ${running} ${running}.broken`);
    expect(empty).to.contain('--startup FILE');

    await writeFile(running, full.subarray(0, Math.floor(full.length / 2)));
    const truncated = await failsToStart();
    expect(truncated).to.contain(`running configuration ${running} is not a readable configuration`);
    expect(truncated).to.contain('truncated?');

    await writeFile(running, Buffer.concat([full.subarray(0, 20), Buffer.from([0xff]), full.subarray(20)]));
    expect(await failsToStart()).to.contain(`running configuration ${running} is not valid UTF-8`);

    // The way out the message gives: move it aside, start from a known file.
    const known = path.join(dir, 'known.xml');
    await writeFile(known, full);
    await rename(running, `${running}.broken`);
    const again = await startTandem({ stateDir: dir, args: ['--startup', known] });
    try {
      const c2 = await NetconfTestClient.connect({ host: again.host, port: again.port, username: again.username, password: again.password });
      expect(await c2.rpc('<get-config><source><running/></source></get-config>')).to.contain('<name>kept</name>');
      c2.close();
    } finally {
      await again.stop();
    }
  });

  it('names users.json and host key files when they are damaged', async () => {
    const t = await startTandem({ stateDir: dir });
    await t.stop();
    const users = path.join(dir, 'users.json');
    const good = await readFile(users);
    await writeFile(users, '{"users": {"admin": ');
    const u = await failsToStart();
    expect(u).to.contain(`users file ${users} is not valid JSON`);
    await writeFile(users, good);
    const hostKey = path.join(dir, 'ssh_host_ed25519_key');
    await writeFile(hostKey, '-----BEGIN OPENSSH PRIVATE KEY-----\ntruncated\n');
    const h = await failsToStart();
    expect(h).to.contain(`host key ${hostKey} is unreadable`);
  });
});

describe('Strict input with Ansible (netconf_rpc)', function () {
  this.timeout(180000);
  let t: TandemProcess | undefined;
  let dir: string | undefined;
  after(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fails the task of a datastore in a foreign namespace with unknown-namespace, and a proper one succeeds', async function () {
    if (!ansibleAvailable()) this.skip();
    t = await startTandem();
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-ansible-ns-'));
    const playbook = `
- hosts: tandem
  gather_facts: false
  tasks:
    - name: Refused, nothing read (unknown-namespace; Ansible shows the error-message)
      ansible.netcommon.netconf_rpc:
        rpc: get-config
        xmlns: urn:ietf:params:xml:ns:netconf:base:1.0
        content: '<source><running xmlns="urn:example:other"/></source>'
      register: r
      failed_when: "'is in namespace' not in (r.msg | default(''))"
    - name: The same in the base namespace
      ansible.netcommon.netconf_rpc:
        rpc: get-config
        xmlns: urn:ietf:params:xml:ns:netconf:base:1.0
        content: '<source><running/></source>'
        display: xml
      register: ok
    - ansible.builtin.assert:
        that:
          - "'urn:example:other' in r.msg"
          - "'<data' in ok.stdout or 'data' in ok.stdout"
`;
    const res = await runPlaybook(dir, playbook, [{ name: 'tandem', host: t.host, port: t.port, user: t.username, password: t.password }], 150000);
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.match(/ok=3\s+changed=\d+\s+unreachable=0\s+failed=0/);
  });
});

describe('State files: a configuration YANG refuses at start', function () {
  this.timeout(120000);
  let dir: string | undefined;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('names the file and the refused node', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-statefiles-yang-'));
    const running = path.join(dir, 'running.xml');
    await writeFile(running, `<config xmlns="${BASE}"><network-profile xmlns="${NP}"><name>p</name><type>no-such-type</type></network-profile></config>\n`);
    let failure = '';
    try {
      const t = await startTandem({ stateDir: dir });
      await t.stop();
    } catch (err) {
      failure = String(err);
    }
    expect(failure).to.contain(`configuration ${running} was refused at start`);
    expect(failure).to.contain('no-such-type');
  });
});
