// Debian's Ansible (ansible.netcommon netconf_config, netconf_get, netconf_rpc over the
// ansible.netcommon.netconf connection) against `tandem start`.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ansibleAvailable, runPlaybook } from '../helpers/ansible-playbook.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { foldedRunningXml } from '../helpers/folded-running.js';


const PROFILE = `<config><network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>ansible</name><type>tcp-fast-path</type>
<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path></network-profile></config>`;

export const PLAYBOOK = `
- hosts: tandem
  gather_facts: false
  tasks:
    - name: Configure a network profile (candidate, lock, commit)
      ansible.netcommon.netconf_config:
        content: |
${PROFILE.split('\n').map((l) => `          ${l}`).join('\n')}
      register: first
    - name: The same again changes nothing
      ansible.netcommon.netconf_config:
        content: |
${PROFILE.split('\n').map((l) => `          ${l}`).join('\n')}
      register: second
    - name: Read it back
      ansible.netcommon.netconf_get:
        source: running
        filter: <network-profile xmlns="urn:tandem:yang:tandem-network-profile"/>
        display: xml
      register: got
    - name: A YANG RPC with its namespace
      ansible.netcommon.netconf_rpc:
        rpc: get-schema
        xmlns: urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring
        content: "<identifier>tandem-network-profile</identifier>"
        display: xml
      register: schema
    - name: An operation without a namespace is resolved by name
      ansible.netcommon.netconf_rpc:
        rpc: discard-changes
      register: plain
    # netconf_config's own 'confirm: N' fails inside Debian's ansible.netcommon 4.1.0 before anything is
    # sent ("Argument must be bytes or unicode, got 'int'", ansible.netcommon issue 551), so the
    # confirmed commit is an explicit rpc; confirm_commit then confirms it on the same session.
    - name: Edit the candidate only
      ansible.netcommon.netconf_config:
        content: |
          <config><network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>confirmed</name><type>udp-fast-path</type></network-profile></config>
        commit: false
    - name: A confirmed commit (reverted unless confirmed within 60 s)
      ansible.netcommon.netconf_rpc:
        rpc: commit
        xmlns: urn:ietf:params:xml:ns:netconf:base:1.0
        content: "<confirmed/><confirm-timeout>60</confirm-timeout>"
    - name: Its confirmation
      ansible.netcommon.netconf_config:
        confirm_commit: true
    - name: A refused edit fails the task with the rpc-error
      ansible.netcommon.netconf_config:
        content: |
          <config><network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>proxy</name><type>tcp-proxy</type>
          <tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path></network-profile></config>
      register: refused
      ignore_errors: true
    - ansible.builtin.assert:
        that:
          - first.changed
          - not second.changed
          - "'<name>ansible</name>' in got.stdout"
          - "'module tandem-network-profile' in schema.stdout"
          - refused.failed
          - "'connection-mirror' in refused.msg"
`;

describe('netconf-ops: Ansible netconf modules against tandem start', function () {
  this.timeout(180000);
  let agent: TandemProcess;
  let dir: string;

  before(async function () {
    if (!ansibleAvailable()) this.skip();
    agent = await startTandem();
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-ansible-'));
  });
  after(async () => {
    await agent?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('netconf_config is idempotent, netconf_get and netconf_rpc work, a refused edit fails', async () => {
    const { code, out } = await runPlaybook(dir, PLAYBOOK,
      [{ name: 'tandem', host: agent.host, port: agent.port, user: agent.username, password: agent.password }], 150000);
    expect(code, out).to.equal(0);
    expect(out).to.match(/ok=\d+\s+changed=\d+\s/);
    expect(out).to.not.match(/changed: \[tandem\][^\n]*\n[^\n]*The same again/);
    const running = await foldedRunningXml(agent.stateDir);
    expect(running).to.contain('<name>ansible</name>').and.contain('<name>confirmed</name>');
    // Confirmed: nothing left to revert.
    expect(existsSync(path.join(agent.stateDir, 'rollback.xml'))).to.equal(false);
  });
});
