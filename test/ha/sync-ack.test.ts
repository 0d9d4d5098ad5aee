// Issue 10 item 3, "`synced` means acknowledged by the peer", over NETCONF with two agents on
// loopback (soft engine): the master's `synced` stays 0 while the peer is unreachable and while
// the peer has not yet written what it received (`in-flight` shows it), reaches N once the peer
// acknowledged, and a full resync completes only then; a peer whose engine refuses conntracks (its
// VRF's conntrack limit) shows them in `receive-error` and the master in `peer-refused`, not in
// `synced`; the manual synchronisation's completion says how many the peer acknowledged; a
// connection lost while records are in flight leaves nothing counted as synced.
import { expect } from 'chai';
import type { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { waitFor } from '../sync/two-nodes.js';
import { commit, flows, haConfig, openFlows, AgentPair, stateLeaf, type TestAgent as Agent } from './netconf-agent.js';

const HFC = 'tandem-ha-fp-conntrack';
const SYNC_RPC = `<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:${HFC}"><vrf>main</vrf></ha-fp-conntrack-synchronization>`;

function conntrackMax(max: number): string {
  return `<config><system xmlns="urn:tandem:yang:tandem-system"><fast-path><limits><conntrack><max>${max}</max></conntrack></limits></fast-path></system></config>`;
}

/** Holds every sync write of `engine` until release() (the writes then run in their order). */
function holdWrites(engine: SoftEngine): { release(): void; restore(): void } {
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  const target = engine as unknown as Record<string, unknown>;
  const upsert = engine.upsert.bind(engine);
  const upsertIPv4 = engine.upsertIPv4Records.bind(engine);
  target['upsert'] = async (...args: Parameters<SoftEngine['upsert']>) => {
    await gate;
    return upsert(...args);
  };
  target['upsertIPv4Records'] = async (...args: Parameters<SoftEngine['upsertIPv4Records']>) => {
    await gate;
    return upsertIPv4(...args);
  };
  return {
    release: open,
    restore: () => {
      delete target['upsert'];
      delete target['upsertIPv4Records'];
    },
  };
}

function notificationsOf(a: Agent, name: string): Record<string, unknown>[] {
  return a.notifications.filter((n) => `${HFC}:${name}` in n).map((n) => n[`${HFC}:${name}`] as Record<string, unknown>);
}

describe('HA sync acknowledgements over NETCONF (two agents on loopback)', function () {
  this.timeout(90_000);
  const pair = new AgentPair();

  it('synced stays 0 while the peer is unreachable or has not written, and reaches N once it acknowledged', async () => {
    const a = pair.ha1;
    const b = pair.ha2;
    await commit(a, haConfig('master', '127.0.0.1', '127.0.0.2', pair.port)); // nobody listens on ha2 yet
    await openFlows(a, flows(20));
    await new Promise((r) => setTimeout(r, 300));
    expect(await stateLeaf(a, 'synced'), 'peer unreachable').to.equal('0');
    expect(await stateLeaf(a, 'in-flight')).to.equal('0');

    // ha2 comes up but its engine does not finish a write until released: delivered, not acknowledged.
    const held = holdWrites(b.engine);
    try {
      await commit(b, haConfig('backup', '127.0.0.2', '127.0.0.1', pair.port));
      await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up', 20000);
      const vs = a.parts.service.vrfs.get('main');
      await waitFor(() => vs?.inFlightCount() === 20, 'the full resync written to ha2, not acknowledged');
      await new Promise((r) => setTimeout(r, 200)); // acks would have come by now
      expect(await stateLeaf(a, 'synced'), 'delivered but not acknowledged').to.equal('0');
      expect(await stateLeaf(a, 'in-flight')).to.equal('20');
      expect(notificationsOf(a, 'full-resync-complete'), 'no completion before the peer acknowledged the end').to.deep.equal([]);
      expect(b.engine.counters('main').conntracks).to.equal(0);
      held.release();
      await waitFor(() => vs?.syncedCount() === 20, 'ha2 acknowledged the resync');
    } finally {
      held.release();
      held.restore();
    }
    expect(await stateLeaf(a, 'synced')).to.equal('20');
    expect(await stateLeaf(a, 'in-flight')).to.equal('0');
    expect(await stateLeaf(a, 'peer-refused')).to.equal('0');
    expect(await stateLeaf(a, 'events-lost'), 'no conntrack event lost on the master').to.equal('0');
    expect(await stateLeaf(a, 'event-loss-resyncs')).to.equal('0');
    expect(b.engine.counters('main').conntracks).to.equal(20);
    // One resync per connection as each came up; the count covers both workers' connections.
    await waitFor(() => notificationsOf(a, 'full-resync-complete').some((n) => n['count'] === '20'), 'full resync of 20 complete on ha1');
    expect(notificationsOf(a, 'full-resync-complete').at(-1)).to.include({ peer: 'peer1', count: '20' });
    expect(await stateLeaf(b, 'synced'), 'the backup shows what its engine holds').to.equal('20');
  });

  it('conntracks the peer engine refuses: receive-error on the backup, peer-refused on the master, not synced', async () => {
    const a = pair.ha1;
    const b = pair.ha2;
    const vs = a.parts.service.vrfs.get('main');
    await commit(b, conntrackMax(25)); // ha2 holds 20: room for 5 more
    await openFlows(a, flows(30).slice(20));
    await waitFor(() => vs?.peerRefusedCount() === 5 && vs.inFlightCount() === 0, 'ha2 acknowledged 5 written and 5 refused');
    expect(b.engine.counters('main').conntracks).to.equal(25);
    expect(await stateLeaf(b, 'receive-error')).to.equal('5');
    expect(await stateLeaf(a, 'peer-refused')).to.equal('5');
    expect(await stateLeaf(a, 'synced'), 'the refused ones are not synced').to.equal('25');
    expect(a.engine.counters('main').conntracks).to.equal(30);

    // The manual synchronisation re-sends all 30: its completion says the peer took 25.
    const reply = await a.client.rpc(SYNC_RPC);
    expect(reply).to.include('Synchronization started');
    await waitFor(() => notificationsOf(a, 'manual-synchronization-complete').length > 0, 'manual synchronization complete');
    expect(notificationsOf(a, 'manual-synchronization-complete')[0]).to.include({ count: '30', acknowledged: '25', 'peer-refused': '5', complete: true });
    expect(await stateLeaf(a, 'peer-refused')).to.equal('10');
    expect(await stateLeaf(b, 'receive-error')).to.equal('10');
    expect(await stateLeaf(a, 'synced')).to.equal('25');

    // Room again: the next manual synchronisation is acknowledged whole.
    await commit(b, conntrackMax(1000));
    a.notifications.length = 0;
    await a.client.rpc(SYNC_RPC);
    await waitFor(() => notificationsOf(a, 'manual-synchronization-complete').length > 0, 'second manual synchronization complete');
    expect(notificationsOf(a, 'manual-synchronization-complete')[0]).to.include({ count: '30', acknowledged: '30', 'peer-refused': '0', complete: true });
    expect(await stateLeaf(a, 'synced')).to.equal('30');
    expect(b.engine.counters('main').conntracks).to.equal(30);
  });

  it('a connection lost with records in flight: they are not synced, the resync that follows is', async () => {
    const a = pair.ha1;
    const b = pair.ha2;
    const vs = a.parts.service.vrfs.get('main');
    const held = holdWrites(b.engine);
    try {
      await openFlows(a, flows(40).slice(30));
      await waitFor(() => (vs?.inFlightCount() ?? 0) === 10, '10 records in flight to ha2');
      expect(await stateLeaf(a, 'synced'), 'the new ones are not acknowledged').to.equal('30');
      // ha2's sync goes away (its HA configuration removed): the connections drop mid-flight.
      await commit(b, `<config><vrf xmlns="urn:tandem:yang:tandem-vrf" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:${HFC}" nc:operation="remove"/></vrf></config>`);
      await waitFor(() => !a.parts.service.ready(), 'sync connections down on ha1');
      expect(await stateLeaf(a, 'synced'), 'nothing counts as synced while the peer is gone').to.equal('0');
      expect(await stateLeaf(a, 'in-flight'), 'what was in flight is lost, not pending an ack').to.equal('0');
    } finally {
      held.release();
      held.restore();
    }
    a.notifications.length = 0;
    await commit(b, haConfig('backup', '127.0.0.2', '127.0.0.1', pair.port));
    await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up again', 20000);
    await waitFor(() => vs?.syncedCount() === 40, 'the full resync after the reconnect acknowledged: 40 synced');
    expect(b.engine.counters('main').conntracks).to.equal(40);
    expect(await stateLeaf(a, 'synced')).to.equal('40');
    await waitFor(() => notificationsOf(a, 'full-resync-complete').length > 0, 'full resync complete');
  });
});
