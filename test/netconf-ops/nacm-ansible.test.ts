// NACM with Debian's Ansible (ansible.netcommon netconf_config / netconf_get / netconf_rpc) as each
// kind of user: an admin configures the HA secret and an operator rule-list (docs/nacm.md's
// example), the operator writes what it may and is refused the rest, a read-only user reads
// without the secret and writes nothing, the recovery user reads everything.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ansibleAvailable, runPlaybook } from '../helpers/ansible-playbook.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { freeTcpPort } from '../helpers/free-port.js';
import { foldedRunningXml } from '../helpers/folded-running.js';

const SECRET = 'ansible-nacm-secret-0123456789';

const USERS = [
  { name: 'admin', password: 'admin-secret', groups: ['admin'] },
  { name: 'ops1', password: 'ops1-secret', groups: ['operator'] },
  { name: 'viewer', password: 'viewer-secret' },
  { name: 'rescue', password: 'rescue-secret', recovery: true },
];

const indent = (text: string, n: number) => text.trim().split('\n').map((l) => `${' '.repeat(n)}${l}`).join('\n');

/** The sync listener binds 127.0.0.1 on this port: one the kernel says is free, not a fixed one. */
const SYNC_PORT = await freeTcpPort('127.0.0.1');

const HA = `<config>
  <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>backup</state></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <peer><name>peer1</name><source>127.0.0.1</source><address>127.0.0.2</address><port>${SYNC_PORT}</port></peer>
      <listen-ha-group>ha-group1</listen-ha-group>
      <shared-secret>${SECRET}</shared-secret>
    </ha-fp-conntrack>
  </vrf>
</config>`;

const OPERATOR_RULES = `<config>
  <nacm xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-acm" xmlns:np="urn:tandem:yang:tandem-network-profile">
    <rule-list>
      <name>operator</name>
      <group>operator</group>
      <rule>
        <name>network-profiles</name>
        <path>/np:network-profile</path>
        <access-operations>create update delete</access-operations>
        <action>permit</action>
      </rule>
    </rule-list>
  </nacm>
</config>`;

const PROFILE = `<config><network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>by-ops1</name><type>tcp-fast-path</type></network-profile></config>`;
const SECRET_EDIT = `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
  <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><shared-secret>stolen-by-an-operator-000</shared-secret></ha-fp-conntrack></vrf></config>`;

const PLAYBOOK = `
- hosts: admin
  gather_facts: false
  tasks:
    - name: HA with its shared secret
      ansible.netcommon.netconf_config:
        target: candidate
        commit: true
        content: |
${indent(HA, 10)}
    - name: Operators may change network profiles
      ansible.netcommon.netconf_config:
        target: candidate
        commit: true
        content: |
${indent(OPERATOR_RULES, 10)}

- hosts: ops1
  gather_facts: false
  tasks:
    - name: A network profile (permitted)
      ansible.netcommon.netconf_config:
        target: candidate
        commit: true
        content: |
${indent(PROFILE, 10)}
      register: profile
    - name: The shared secret (refused)
      ansible.netcommon.netconf_config:
        target: candidate
        commit: true
        content: |
${indent(SECRET_EDIT, 10)}
      register: secret
      ignore_errors: true
    - name: kill-session (default-deny-all)
      ansible.netcommon.netconf_rpc:
        rpc: kill-session
        xmlns: urn:ietf:params:xml:ns:netconf:base:1.0
        content: "<session-id>1</session-id>"
      register: kill
      ignore_errors: true
    - ansible.builtin.assert:
        that:
          - profile.changed
          - secret.failed
          - "'access denied' in secret.msg"
          - "'shared-secret' in secret.msg"
          - kill.failed
          - "'access denied' in kill.msg"

- hosts: viewer
  gather_facts: false
  tasks:
    - name: Read the running configuration
      ansible.netcommon.netconf_get:
        source: running
        display: xml
      register: running
    - name: Read the state
      ansible.netcommon.netconf_get:
        filter: <vrf xmlns="urn:tandem:yang:tandem-vrf"/>
        display: xml
      register: state
    - name: Write anything (refused)
      ansible.netcommon.netconf_config:
        content: |
${indent(PROFILE.replace('by-ops1', 'by-viewer'), 10)}
      register: write
      ignore_errors: true
    - ansible.builtin.assert:
        that:
          - "'peer1' in running.stdout"
          - "'by-ops1' in running.stdout"
          - "'${SECRET}' not in running.stdout"
          - "'shared-secret' not in state.stdout"
          - "'rule-list' not in running.stdout"
          - write.failed
          - "'access denied' in write.msg"

- hosts: rescue
  gather_facts: false
  tasks:
    - name: The recovery user reads everything
      ansible.netcommon.netconf_get:
        source: running
        display: xml
      register: running
    - ansible.builtin.assert:
        that:
          - "'${SECRET}' in running.stdout"
          - "'rule-list' in running.stdout"
`;

describe('netconf-ops: NACM with Ansible as admin, operator, read-only and recovery user', function () {
  this.timeout(240000);
  let agent: TandemProcess | undefined;
  let dir: string | undefined;

  before(async function () {
    if (!ansibleAvailable()) this.skip();
    agent = await startTandem({ users: USERS });
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-nacm-ansible-'));
  });
  after(async () => {
    await agent?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('each user gets exactly what NACM allows', async () => {
    const a = agent!;
    const d = dir!;
    const { code, out } = await runPlaybook(d, PLAYBOOK,
      USERS.map((u) => ({ name: u.name, host: a.host, port: a.port, user: u.name, password: u.password })), 200000);
    expect(code, out).to.equal(0);
    for (const u of USERS) expect(out, u.name).to.match(new RegExp(`${u.name}\\s+: ok=\\d+\\s+changed=\\d+\\s+unreachable=0\\s+failed=0`));
    const running = await foldedRunningXml(a.stateDir);
    expect(running).to.contain(SECRET).and.contain('<name>by-ops1</name>').and.not.contain('stolen').and.not.contain('by-viewer');
    expect(a.stdout()).to.match(/"user":"ops1".*shared-secret.*NACM: write denied/);
    expect(a.stdout()).to.match(/"user":"viewer".*NACM: write denied/);
  });
});
