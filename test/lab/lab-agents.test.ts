// The lab's agents: `tandem start --engine linux` in ha1's and ha2's namespaces, configured over
// NETCONF by real clients run in those namespaces — ncclient for ha1, an Ansible playbook for ha2 —
// and the running configuration read back from each.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { LAB_CONFIG_XML, LabAgent } from '../../lab/lab-agents.js';
import { LAB, LabTopology } from '../../lab/lab-topology.js';

describe('lab: both agents configured over NETCONF (ncclient, Ansible)', function () {
  this.timeout(240_000);
  const lab = new LabTopology('ag');
  const agents: LabAgent[] = [];

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    if (!existsSync('/usr/bin/python3') || !existsSync('/usr/bin/ansible-playbook')) {
      console.log('    (skipped: needs Debian python3-ncclient and ansible)');
      this.skip();
    }
    lab.build();
  });

  after(async () => {
    for (const agent of agents) await agent.stop();
    await lab.teardown();
  });

  it('starts tandem inside each router namespace', async () => {
    agents.push(await LabAgent.start(lab.ns.ha1), await LabAgent.start(lab.ns.ha2));
    expect(agents.map((a) => a.port).every((p) => p > 0)).to.equal(true);
  });

  it('configures ha1 with ncclient and ha2 with ansible-playbook, and reads both back', async () => {
    const [ha1, ha2] = agents;
    await ha1.configureWithNcclient(LAB_CONFIG_XML);
    const recap = await ha2.configureWithAnsible(LAB_CONFIG_XML);
    expect(recap).to.match(/ok=1\s+changed=1\s+unreachable=0\s+failed=0/);
    for (const agent of [ha1, ha2]) {
      const running = await agent.runningConfig();
      expect(running).to.include('<engine>linux</engine>');
      expect(running).to.include(`<prefix>${LAB.natPool}</prefix>`);
      expect(running).to.include('<drop-invalid>true</drop-invalid>');
    }
  });

  it('after ha1\'s agent is SIGKILLed, it answers no more and ha2\'s still does', async () => {
    const [ha1, ha2] = agents;
    await ha1.stop('SIGKILL');
    expect(ha1.child.signalCode).to.equal('SIGKILL');
    await ha1.runningConfig().then(() => expect.fail('a killed agent answered'), (err: Error) => expect(err.message).to.match(/failed/));
    expect(await ha2.runningConfig()).to.include(`<prefix>${LAB.natPool}</prefix>`);
  });
});
