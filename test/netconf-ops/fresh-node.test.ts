// A fresh node (`tandem start` on an empty state directory), as a NETCONF client sees it: the
// factory configuration (NSX's system network profiles) in running, a startup datastore equal to
// it from the first start (netconf-state, get-config, Ansible netconf_get source: startup), the
// ietf-netconf features that are implemented in the hello and in yang-library, and factory
// profiles removable like any configuration.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const NP = 'urn:tandem:yang:tandem-network-profile';
const ANSIBLE = '/usr/bin/ansible-playbook';
/** What the server implements of ietf-netconf's features (no url: no <url> source or target). */
const IMPLEMENTED = ['candidate', 'confirmed-commit', 'rollback-on-error', 'startup', 'validate', 'writable-running', 'xpath'];

/** The <data> content of a reply, without the envelope. */
function dataOf(reply: string): string {
  const m = /<data[^>]*>([\s\S]*)<\/data>/.exec(reply);
  return m ? m[1]! : '';
}

describe('netconf-ops: a fresh node', function () {
  this.timeout(180000);
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  let stateDir: string;

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'tandem-fresh-'));
    t = await startTandem({ stateDir });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
  });
  after(async () => {
    c?.close();
    await t?.stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('announces exactly the implemented ietf-netconf features in the hello', () => {
    const cap = /<capability>urn:ietf:params:xml:ns:netconf:base:1\.0\?module=ietf-netconf&amp;revision=[\d-]+&amp;features=([^<]*)<\/capability>/.exec(c!.serverHello);
    expect(cap, c!.serverHello).to.not.equal(null);
    expect(cap![1]!.split(',').sort()).to.deep.equal(IMPLEMENTED);
    expect(c!.serverHello).to.contain('urn:ietf:params:netconf:capability:startup:1.0');
    expect(c!.serverHello).to.contain('urn:ietf:params:netconf:capability:confirmed-commit:1.1');
  });

  it('lists the same features in yang-library', async () => {
    const reply = await c!.rpc('<get><filter type="subtree"><yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library"/></filter></get>');
    const mod = /<module><name>ietf-netconf<\/name>([\s\S]*?)<\/module>/.exec(reply);
    expect(mod, reply).to.not.equal(null);
    const features = [...mod![1]!.matchAll(/<feature>([^<]+)<\/feature>/g)].map((m) => m[1]).sort();
    expect(features).to.deep.equal(IMPLEMENTED);
  });

  it('has a startup datastore from the first start, equal to running, in netconf-state', async () => {
    expect(existsSync(path.join(stateDir, 'startup.xml'))).to.equal(true);
    const state = await c!.rpc('<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><datastores/></netconf-state></filter></get>');
    expect(state).to.contain('<name>startup</name>');
    const running = dataOf(await c!.rpc('<get-config><source><running/></source></get-config>'));
    const startup = dataOf(await c!.rpc('<get-config><source><startup/></source></get-config>'));
    expect(startup).to.equal(running);
    expect(running).to.contain('<name>System-TCP-Fast-Path</name>');
  });

  it('holds NSX\'s system network profiles with the seed\'s values', async () => {
    const reply = await c!.rpc(`<get-config><source><running/></source><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all</with-defaults><filter type="subtree"><network-profile xmlns="${NP}"/></filter></get-config>`);
    const profiles = [...reply.matchAll(/<network-profile[^>]*>([\s\S]*?)<\/network-profile>/g)].map((m) => m[1]!);
    const byName = new Map(profiles.map((p) => [/<name>([^<]+)<\/name>/.exec(p)![1], p]));
    expect([...byName.keys()].sort()).to.deep.equal(['System-TCP-Fast-Path', 'System-TCP-Proxy', 'System-UDP-Fast-Path']);
    const fast = byName.get('System-TCP-Fast-Path')!;
    expect(fast).to.contain('<type>tcp-fast-path</type>');
    expect(fast).to.contain('<session-idle-timeout>300</session-idle-timeout>');
    expect(fast).to.contain('<enable-syn-protection>false</enable-syn-protection>');
    expect(fast).to.contain('<connection-mirror>false</connection-mirror>');
    expect(byName.get('System-TCP-Proxy')).to.contain('<type>tcp-proxy</type>');
    expect(byName.get('System-UDP-Fast-Path')).to.contain('<type>udp-fast-path</type>');
  });

  it('a factory profile is configuration like any other: mirrored on edit, removed on delete, not recreated at restart', async () => {
    const on = await c!.rpc(`<edit-config><target><running/></target><config><network-profile xmlns="${NP}"><name>System-TCP-Fast-Path</name><tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path></network-profile></config></edit-config>`);
    expect(on).to.contain('<ok/>');
    const del = await c!.rpc(`<edit-config><target><running/></target><config><network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>System-UDP-Fast-Path</name></network-profile></config></edit-config>`);
    expect(del).to.contain('<ok/>');
    c!.close();
    await t!.stop();
    t = await startTandem({ stateDir, users: [] });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: 'admin', password: 'admin-secret' });
    const running = dataOf(await c.rpc('<get-config><source><running/></source></get-config>'));
    expect(running).not.to.contain('System-UDP-Fast-Path');
    expect(running).to.contain('<connection-mirror>true</connection-mirror>');
    // Startup still holds the factory configuration: nothing copied running to it.
    const startup = dataOf(await c.rpc('<get-config><source><startup/></source></get-config>'));
    expect(startup).to.contain('System-UDP-Fast-Path');
  });
});

describe('netconf-ops: Ansible netconf_get source: startup on a fresh node', function () {
  this.timeout(180000);
  let agent: TandemProcess | undefined;
  let dir: string | undefined;

  before(async function () {
    if (!existsSync(ANSIBLE) || !existsSync('/usr/bin/python3')) this.skip(); // Debian's ansible (sudo bash .ci/setup-debian)
    agent = await startTandem();
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-ansible-startup-'));
  });
  after(async () => {
    await agent?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads the startup datastore', async () => {
    await writeFile(path.join(dir!, 'playbook.yml'), `
- hosts: tandem
  gather_facts: false
  tasks:
    - name: Read startup on a node nothing ever saved to
      ansible.netcommon.netconf_get:
        source: startup
        display: xml
      register: got
    - ansible.builtin.assert:
        that:
          - "'<name>System-TCP-Fast-Path</name>' in got.stdout"
`);
    await writeFile(path.join(dir!, 'inventory.yml'), `all:
  hosts:
    tandem:
      ansible_host: ${agent!.host}
      ansible_port: ${agent!.port}
      ansible_user: ${agent!.username}
      ansible_password: ${agent!.password}
      ansible_connection: ansible.netcommon.netconf
      ansible_network_os: ansible.netcommon.default
      ansible_python_interpreter: /usr/bin/python3
`);
    const env = {
      ...process.env, ANSIBLE_HOST_KEY_CHECKING: 'False', ANSIBLE_LOCAL_TEMP: path.join(dir!, 'tmp'),
      ANSIBLE_PERSISTENT_CONTROL_PATH_DIR: path.join(dir!, 'pc'), ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0',
      HOME: dir!, PATH: `/usr/bin:${process.env.PATH ?? ''}`,
    };
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn(ANSIBLE, ['-i', path.join(dir!, 'inventory.yml'), path.join(dir!, 'playbook.yml')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => { text += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { text += d; });
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`ansible-playbook timed out\n${text}`)); }, 150000);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('exit', (exitCode) => { clearTimeout(timer); resolve({ code: exitCode, out: text }); });
    });
    expect(code, out).to.equal(0);
    expect(out).to.match(/ok=2\s+changed=0\s+unreachable=0\s+failed=0/);
  });
});
