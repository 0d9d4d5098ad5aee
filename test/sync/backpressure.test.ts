// Backpressure (issue item 5) and configuration divergence (item 6): a slow peer overflows the
// bounded queue, is marked out of sync and gets a full resync once it catches up; a dead peer
// costs no memory; a peer with another firewall/CG-NAT configuration is reported.
import { expect } from 'chai';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { toYangNotification } from '../../sync/sync-notifications.js';
import { SyncStateProvider } from '../../sync/sync-state.js';
import { flow, Pair, reconfigure, waitFor } from './two-nodes.js';

describe('sync backpressure: bounded queues, overflow repaired by a full resync', function () {
  this.timeout(30000);
  let p: Pair;
  afterEach(async () => p?.close());

  it('drops the queue of a slow peer, counts it, and resyncs everything when it catches up', async () => {
    p = await new Pair().start({ workers: 1, queueLimit: 200 });
    // ha2's engine is stalled: nothing it receives is applied until the gate opens.
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const upsert = p.ha2.engine.upsert.bind(p.ha2.engine);
    p.ha2.engine.upsert = async (entries: ConntrackEntry[]) => {
      await gate;
      return upsert(entries);
    };
    const client = p.ha1.service.vrfs.get('main')?.peers[0]?.clients[0];
    if (!client) throw new Error('no client');
    const n = 5000;
    let maxQueued = 0;
    for (let i = 0; i < n; i++) {
      p.ha1.engine.open('main', flow());
      maxQueued = Math.max(maxQueued, client.queued());
    }
    expect(maxQueued).to.be.at.most(200);
    expect(client.stats.overflows).to.be.at.least(1);
    expect(client.stats.transmitError).to.be.at.least(200);
    open();
    await waitFor(() => p.ha2.engine.counters('main').conntracks === n, 'every conntrack on ha2 after the resync', 20000);
    await p.ha1.service.vrfs.get('main')?.resyncIdle();
    expect(client.outOfSync).to.equal(false);
    expect(p.ha1.service.vrfs.get('main')?.lastFullResync?.count).to.equal(n);
    const state = new SyncStateProvider(p.ha1.service).state() as { 'tandem-vrf:vrf': Array<Record<string, Record<string, unknown>>> };
    const ha = state['tandem-vrf:vrf'][0]?.['tandem-ha-fp-conntrack:ha-fp-conntrack'] as { peer: Array<{ client: Array<{ statistics: Record<string, string> }> }> };
    expect(Number(ha.peer[0]?.client[0]?.statistics['transmit-error'])).to.equal(client.stats.transmitError);
  });

  it('does not cut a live peer it is itself holding back', async () => {
    p = await new Pair().start({ workers: 1 }); // keepalive 500 ms: silence is cut after 1.5 s
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const upsert = p.ha2.engine.upsert.bind(p.ha2.engine);
    p.ha2.engine.upsert = async (entries: ConntrackEntry[]) => {
      await gate;
      return upsert(entries);
    };
    // 40 separate frames: ha2 applies 8 at once and pauses its socket beyond 16 waiting.
    for (let i = 0; i < 40; i++) {
      for (let k = 0; k < 10; k++) p.ha1.engine.open('main', flow());
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 2500)); // ha2's engine is stuck longer than the silence limit
    open();
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 400, 'every conntrack on ha2');
    expect(p.ha1.notifications.filter((n) => n.kind === 'connection-down')).to.have.length(0);
  });

  it('queues nothing for a dead peer', async () => {
    p = await new Pair().start({ workers: 2 });
    await p.ha2.service.close();
    await waitFor(() => p.ha1.service.vrfs.get('main')?.clientStats().every((c) => c.status !== 'established') ?? false, 'connections down');
    for (let i = 0; i < 3000; i++) p.ha1.engine.open('main', flow());
    for (const c of p.ha1.service.vrfs.get('main')?.clientStats() ?? []) expect(c.queued).to.equal(0);
  });
});

describe('sync configuration divergence: the firewall/CG-NAT fingerprint is compared in the hello', function () {
  let p: Pair;
  afterEach(async () => p?.close());

  it('reports a mismatch in state data and as a notification, and a match once fixed', async () => {
    p = await new Pair().start();
    const peerState = (): unknown => {
      const s = new SyncStateProvider(p.ha1.service).state() as { 'tandem-vrf:vrf': Array<Record<string, { peer: Array<Record<string, unknown>> }>> };
      return s['tandem-vrf:vrf'][0]?.['tandem-ha-fp-conntrack:ha-fp-conntrack']?.peer[0]?.['config-fingerprint'];
    };
    expect(peerState()).to.equal('match');
    const firewall = { 'default-action': 'drop', rule: [{ name: 'r1', action: 'accept', protocol: 'tcp', 'destination-port': 22 }] };
    const cfg = p.ha2Config();
    (cfg['tandem-vrf:vrf'] as Array<Record<string, unknown>>)[0]!['tandem-firewall:firewall'] = firewall;
    await reconfigure(p.ha2, cfg);
    await waitFor(() => peerState() === 'mismatch', 'ha1 sees the mismatch');
    const n = p.ha1.notifications.find((x) => x.kind === 'peer-configuration-mismatch');
    expect(n).to.not.equal(undefined);
    const yang = toYangNotification(n!) as Record<string, Record<string, string>>;
    expect(yang['tandem-ha-fp-conntrack:peer-configuration-mismatch']?.['peer']).to.equal('peer1');
    expect(yang['tandem-ha-fp-conntrack:peer-configuration-mismatch']?.['local-fingerprint']).to.match(/^[0-9a-f]{64}$/);
    const fixed = p.ha1Config();
    (fixed['tandem-vrf:vrf'] as Array<Record<string, unknown>>)[0]!['tandem-firewall:firewall'] = firewall;
    await reconfigure(p.ha1, fixed);
    await waitFor(() => peerState() === 'match', 'match after the same configuration on both');
  });
});
