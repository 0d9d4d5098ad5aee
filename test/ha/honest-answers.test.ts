// Issue 10 item 3 (sync parts), over NETCONF with two agents on loopback (soft engine): the
// answers say what happened. The manual synchronisation with no sync connection up is an
// rpc-error; `synced` reads 0 while the peer was never reached, and on the backup reads what it
// holds; the receiver's last-full-resync count covers every connection; a static master restarted
// with an empty table takes its peer's conntracks first, then pushes (it does not wipe its peer).
import { expect } from 'chai';
import { waitFor } from '../sync/two-nodes.js';
import { commit, flows, haConfig, openFlows, AgentPair, stateLeaf } from './netconf-agent.js';

const SYNC_RPC = '<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>';

describe('HA honest answers over NETCONF (two agents on loopback)', function () {
  this.timeout(90_000);
  const pair = new AgentPair();

  it('with the peer never reached: synced reads 0 and the manual synchronisation is an rpc-error', async () => {
    const a = pair.ha1;
    await commit(a, haConfig('master', '127.0.0.1', '127.0.0.2', pair.port)); // nobody listens on ha2 yet
    await openFlows(a, flows(10));
    expect(a.engine.counters('main').conntracks).to.equal(10);
    await new Promise((r) => setTimeout(r, 300));
    expect(await stateLeaf(a, 'connection-status')).to.not.equal('established');
    expect(await stateLeaf(a, 'synced')).to.equal('0');
    const reply = await a.client.rpc(SYNC_RPC);
    expect(reply).to.include('<rpc-error>').and.include('<error-tag>operation-failed</error-tag>')
      .and.include('no sync connection to the peer is up').and.not.include('Synchronization started');
    expect(a.notifications.some((n) => 'tandem-ha-fp-conntrack:manual-synchronization-complete' in n)).to.equal(false);
  });

  it('once the peer is up: both sides read what was delivered / held, and the resync count covers every connection', async () => {
    const a = pair.ha1;
    const b = pair.ha2;
    await commit(b, haConfig('backup', '127.0.0.2', '127.0.0.1', pair.port));
    await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up', 20000);
    await waitFor(() => b.engine.counters('main').conntracks === 10, 'the 10 conntracks on ha2 by the full resync');
    await a.parts.service.vrfs.get('main')?.resyncIdle();
    // Both workers' connections carried part of the resync: the receiver's count is the sum.
    await waitFor(() => b.parts.service.vrfs.get('main')?.lastFullResync?.count === 10, 'receiver last-full-resync covers both connections', 5000)
      .catch(() => undefined);
    const b1 = await b.client.rpc(`<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><last-full-resync/></ha-fp-conntrack></vrf></filter></get>`);
    expect(/<last-full-resync>[\s\S]*<count>(\d+)<\/count>/.exec(b1)?.[1]).to.equal('10');
    await openFlows(a, flows(30).slice(10));
    await waitFor(() => b.engine.counters('main').conntracks === 30, '30 conntracks on ha2');
    // synced counts what ha2 acknowledged: its acks follow its writes by up to a few tens of ms.
    await waitFor(() => a.parts.service.vrfs.get('main')?.syncedCount() === 30, 'ha2 acknowledged the 30 conntracks');
    expect(await stateLeaf(a, 'synced')).to.equal('30');
    expect(await stateLeaf(b, 'synced'), 'the backup shows the synced conntracks it holds').to.equal('30');
    const reply = await a.client.rpc(SYNC_RPC);
    expect(reply).to.include('Synchronization started').and.not.include('<rpc-error>');
    await waitFor(() => a.notifications.some((n) => 'tandem-ha-fp-conntrack:manual-synchronization-complete' in n), 'manual synchronization complete');
  });

  it('a static master restarted with an empty table takes its peer\'s conntracks first, then pushes: nothing wiped', async () => {
    const b = pair.ha2;
    const a = await pair.restart('ha1');
    await commit(a, haConfig('master', '127.0.0.1', '127.0.0.2', pair.port)); // a fresh engine: an empty table
    await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up again', 20000);
    // As with VRRP (the restarted node comes back as backup and receives the table first): ha1
    // asks ha2 for the synchronised conntracks it holds, then sends its full resync.
    await waitFor(() => a.engine.counters('main').conntracks === 30, 'ha1 took the 30 conntracks ha2 held', 20000);
    const vs = a.parts.service.vrfs.get('main');
    await waitFor(() => vs?.syncedCount() === 30, 'ha1\'s full resync acknowledged by ha2', 20000);
    await vs?.resyncIdle();
    expect(b.engine.counters('main').conntracks, 'ha2 keeps what it held').to.equal(30);
    expect(await stateLeaf(b, 'synced')).to.equal('30');
    expect(await stateLeaf(a, 'synced')).to.equal('30');
    // New traffic on the restarted master still reaches the peer.
    await openFlows(a, flows(35).slice(30));
    await waitFor(() => b.engine.counters('main').conntracks === 35, 'new conntracks on ha2');
  });
});
