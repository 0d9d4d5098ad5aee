// A commit touches only what it changes (issue 8 item 1) and divergence detection names what
// differs (issue 10): two agents synced over loopback, configured over NETCONF; firewall and
// timeout edits on one node leave every sync connection up (no "ha-fp-conntrack removed", no
// connection-down), and the peer's state reports config-fingerprint mismatch naming the part
// that differs until both nodes agree again.
import { expect } from 'chai';
import { freePort, waitFor } from '../sync/two-nodes.js';
import type { VrfSync } from '../../sync/vrf-sync.js';
import { editAndCommit, haConfig, startTestAgent, stopTestAgent, type TestAgent } from './netconf-agent.js';

const PEER_STATE = '<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><peer/></ha-fp-conntrack></vrf></filter></get>';

function firewall(rules: string): string {
  return `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <firewall xmlns="urn:tandem:yang:tandem-firewall">${rules}</firewall></vrf></config>`;
}

const RULE_SSH = '<rule><name>ssh</name><action>accept</action><protocol>tcp</protocol><destination-port><start>22</start></destination-port></rule>';

function timeouts(established: number): string {
  return `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <network-stack xmlns="urn:tandem:yang:tandem-conntrack"><fast-path><conntrack><timeouts><tcp><established>${established}</established></tcp></timeouts></conntrack></fast-path></network-stack>
  </vrf></config>`;
}

describe('commit isolation: a firewall or timeout edit over NETCONF leaves sync up; divergence names the part', function () {
  this.timeout(60000);
  let ha1: TestAgent | undefined;
  let ha2: TestAgent | undefined;

  before(async () => {
    const port = await freePort();
    ha1 = await startTestAgent('ha1');
    ha2 = await startTestAgent('ha2');
    expect(await editAndCommit(ha1, haConfig('master', '127.0.0.1', '127.0.0.2', port))).to.include('<ok/>');
    expect(await editAndCommit(ha2, haConfig('backup', '127.0.0.2', '127.0.0.1', port))).to.include('<ok/>');
    await waitFor(() => ha1!.parts.service.ready() && ha2!.parts.service.ready(), 'sync connections up', 20000);
  });
  after(async () => {
    await stopTestAgent(ha1);
    await stopTestAgent(ha2);
  });

  async function peerState(a: TestAgent): Promise<string> {
    return a.client.rpc(PEER_STATE);
  }

  async function until(a: TestAgent, what: RegExp, label: string): Promise<string> {
    const deadline = Date.now() + 10000;
    let last = '';
    while (Date.now() < deadline) {
      last = await peerState(a);
      if (what.test(last)) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${label}: not seen in ${last}`);
  }

  it('keeps every sync connection across edits and reports which part differs', async () => {
    const a = ha1 as TestAgent, b = ha2 as TestAgent;
    await until(a, /<config-fingerprint>match<\/config-fingerprint>/, 'match at start');
    const syncA = a.parts.service.vrfs.get('main') as VrfSync, syncB = b.parts.service.vrfs.get('main') as VrfSync;
    const downs = (x: TestAgent): number => x.notifications.filter((n) => 'tandem-ha-fp-conntrack:sync-connection-down' in n).length;
    const downsBefore = downs(a) + downs(b);

    // A firewall rule on ha1 only: ha2 learns of it on the open connections.
    expect(await editAndCommit(a, firewall(RULE_SSH))).to.include('<ok/>');
    const mismatch = await until(b, /<config-fingerprint>mismatch<\/config-fingerprint>/, 'ha2 sees the mismatch');
    expect(mismatch).to.include('<config-difference>firewall</config-difference>');
    expect(mismatch).to.not.include('<config-difference>timeouts</config-difference>');
    expect(b.notifications.some((n) => 'tandem-ha-fp-conntrack:peer-configuration-mismatch' in n)).to.equal(true);
    // The same rule on ha2: both agree again.
    expect(await editAndCommit(b, firewall(RULE_SSH))).to.include('<ok/>');
    await until(a, /<config-fingerprint>match<\/config-fingerprint>/, 'ha1 sees the match');
    await until(b, /<config-fingerprint>match<\/config-fingerprint>/, 'ha2 sees the match');

    // A timeout on ha1: named as timeouts, not firewall.
    expect(await editAndCommit(a, timeouts(3600))).to.include('<ok/>');
    const t = await until(b, /<config-difference>timeouts<\/config-difference>/, 'timeouts named');
    expect(t).to.not.include('<config-difference>firewall</config-difference>');
    expect(await editAndCommit(b, timeouts(3600))).to.include('<ok/>');
    await until(b, /<config-fingerprint>match<\/config-fingerprint>/, 'match after both');

    // Nothing was torn down: same VrfSync objects, no connection went down, all still established.
    expect(a.parts.service.vrfs.get('main')).to.equal(syncA);
    expect(b.parts.service.vrfs.get('main')).to.equal(syncB);
    expect(downs(a) + downs(b)).to.equal(downsBefore);
    expect(a.parts.service.ready() && b.parts.service.ready()).to.equal(true);
  });
});
