// Two agents on loopback configured over NETCONF (SSH, edit-config on the candidate, commit): each
// composes the operations layer with the fastpath subsystem and the sync/ha subsystems on its own
// soft engine. Traffic on ha1 reaches ha2's table, state data and the RPC answer over NETCONF, and
// a planned failover made by editing the HA group state leaves ha2 forwarding every connection.
import { expect } from 'chai';
import { Verdict, TCP_ACK } from '../../fastpath/soft/vrf-dataplane.js';
import { waitFor } from '../sync/two-nodes.js';
import { commit, flows, haConfig, openFlows, AgentPair } from './netconf-agent.js';

describe('HA: two agents configured over NETCONF on loopback', function () {
  this.timeout(60000);
  const pair = new AgentPair();

  it('synchronises, reports state, runs the RPC and fails over by an edit of the HA group', async () => {
    const a = pair.ha1;
    const b = pair.ha2;
    await commit(a, haConfig('master', '127.0.0.1', '127.0.0.2', pair.port));
    await commit(b, haConfig('backup', '127.0.0.2', '127.0.0.1', pair.port));
    await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up', 20000);
    const fs = flows(200);
    await openFlows(a, fs);
    await waitFor(() => b.engine.counters('main').conntracks === 200, '200 conntracks on ha2');

    // synced counts what ha2 acknowledged: its acks follow its writes by up to a few tens of ms.
    await waitFor(() => a.parts.service.vrfs.get('main')?.syncedCount() === 200, 'ha2 acknowledged the 200 conntracks');
    const filter = '<filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf></filter>';
    const s1 = await a.client.rpc(`<get>${filter}</get>`);
    expect(s1).to.include('<name>npf_event0</name>').and.include('<name>npf_event1</name>');
    expect(s1).to.include('<connection-status>established</connection-status>');
    expect(s1).to.match(/<synced>200<\/synced>/);
    const s2 = await b.client.rpc(`<get>${filter}</get>`);
    expect(s2).to.match(/<receive>200<\/receive>/);
    const groups = await a.client.rpc('<get><filter type="subtree"><ha xmlns="urn:tandem:yang:tandem-ha"/></filter></get>');
    expect(groups).to.include('<current-state>master</current-state>').and.include('<controller>static</controller>');

    const reply = await a.client.rpc('<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>');
    expect(reply).to.include('Synchronization started');
    await waitFor(() => a.notifications.some((n) => 'tandem-ha-fp-conntrack:manual-synchronization-complete' in n), 'manual synchronization complete');
    const onBackup = await b.client.rpc('<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>');
    expect(onBackup).to.include('<rpc-error>').and.include('backup');

    // Planned failover: the HA group state is edited on both nodes.
    await commit(a, '<config><ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>backup</state></group></ha></config>');
    await commit(b, '<config><ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>master</state></group></ha></config>');
    expect(b.engine.role('main')).to.equal('master');
    expect(a.engine.role('main')).to.equal('backup');
    const verdicts = await b.engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_ACK })));
    expect(verdicts.filter((v) => v === Verdict.Forward)).to.have.length(200);
    expect(b.notifications.some((n) => 'tandem-ha:group-state-change' in n)).to.equal(true);
  });

  it('refuses a configuration sync cannot run with a precise error', async () => {
    const a = pair.ha1;
    const edit = await a.client.rpc(`<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
      <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><peer><name>peer2</name><source>127.0.0.1</source><address>127.0.0.2</address></peer></ha-fp-conntrack>
      </vrf></config></edit-config>`);
    expect(edit).to.include('<ok/>');
    const res = await a.client.rpc('<commit/>');
    expect(res).to.include('<rpc-error>').and.include('have the same address 127.0.0.2');
    await a.client.rpc('<discard-changes/>');
  });
});
