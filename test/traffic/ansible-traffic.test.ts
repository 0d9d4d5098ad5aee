// The traffic RPCs and state through Ansible's netconf modules (Debian `ansible`), as in
// docs/traffic.md: netconf_config for the VRF, netconf_rpc replay-pcap and start-traffic,
// netconf_get of the progress; the agent's state is then checked over NETCONF.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writePcap } from '../../fastpath/traffic/pcap-writer.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { ansibleAvailable, runPlaybook } from '../helpers/ansible-playbook.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';


describe('traffic: through Ansible netconf modules', function () {
  this.timeout(180_000);
  let agent: TandemProcess | undefined;
  let dir = '';

  before(async function () {
    if (!ansibleAvailable()) {
      console.log('    (skipped: needs Debian ansible and /usr/bin/python3: sudo bash .ci/setup-debian)');
      this.skip();
    }
    agent = await startTandem();
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-ansible-traffic-'));
  });
  after(async () => {
    await agent?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('configures a VRF, replays a capture, starts the generator and reads the progress', async () => {
    const a = agent as TandemProcess;
    const capture = path.join(dir, 'two.pcap');
    await writePcap(capture, [
      { timeMs: 1, proto: 'udp', src: '10.8.0.1', dst: '198.51.100.1', sport: 1000, dport: 2000 },
      { timeMs: 2, proto: 'udp', src: '198.51.100.1', dst: '10.8.0.1', sport: 2000, dport: 1000 },
    ]);
    const playbook = `- hosts: tandem
  gather_facts: false
  tasks:
    - name: VRF main
      ansible.netcommon.netconf_config:
        target: candidate
        commit: true
        content: '<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name></vrf></config>'
    - name: Replay a capture from the agent's host
      ansible.netcommon.netconf_rpc:
        rpc: replay-pcap
        xmlns: urn:tandem:yang:tandem-traffic
        content: "<vrf>main</vrf><file>${capture}</file>"
    - name: Start 200 flows/s for a second into VRF main
      ansible.netcommon.netconf_rpc:
        rpc: start-traffic
        xmlns: urn:tandem:yang:tandem-traffic
        content: "<vrf>main</vrf><rate>200</rate><duration>1</duration><established-share>50</established-share>"
    - name: Progress and counters
      ansible.netcommon.netconf_get:
        filter: <traffic xmlns="urn:tandem:yang:tandem-traffic"/>
      register: progress
    - name: Show it
      ansible.builtin.debug:
        var: progress.stdout
`;
    const { code, out } = await runPlaybook(dir, playbook,
      [{ name: 'tandem', host: a.host, port: a.port, user: a.username, password: a.password }], 150_000);
    expect(code, out).to.equal(0);
    expect(out).to.match(/ok=5\s+changed=\d+\s+unreachable=0\s+failed=0/);
    expect(out).to.include('pcap-replay').and.include('flow-generator');
    const c = await NetconfTestClient.connect({ host: a.host, port: a.port, username: a.username, password: a.password });
    try {
      let reply = '';
      for (let i = 0; i < 50; i++) {
        reply = await c.rpc('<get><filter type="subtree"><traffic xmlns="urn:tandem:yang:tandem-traffic"/></filter></get>');
        if (!reply.includes('<status>running</status>')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(reply).to.match(/<id>1<\/id>\s*<kind>pcap-replay<\/kind>[\s\S]*?<status>completed<\/status>[\s\S]*?<forwarded>2<\/forwarded>/);
      expect(reply).to.match(/<id>2<\/id>\s*<kind>flow-generator<\/kind>[\s\S]*?<status>completed<\/status>/);
    } finally {
      c.close();
    }
  });
});
