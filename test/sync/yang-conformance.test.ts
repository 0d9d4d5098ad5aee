// What sync and HA hand to the NETCONF layer must fit the YANG modules: the test configuration is
// valid configuration, the state data parses strictly as operational data, every notification
// parses as its YANG notification and the RPC reply as the RPC's output.
import { expect } from 'chai';
import { loadTandemContext, type YangContext } from '../../yang/libyang/index.js';
import { SyncStateProvider } from '../../sync/sync-state.js';
import { toYangNotification } from '../../sync/sync-notifications.js';
import { ManualSynchronizationRpc } from '../../sync/sync-rpc.js';
import { groupStateChangeNotification, HaStateProvider } from '../../ha/ha-state.js';
import { flow, Pair, reconfigure, waitFor } from './two-nodes.js';

describe('sync and HA data against the YANG modules', function () {
  this.timeout(60000);
  let yang: YangContext;
  let p: Pair;
  before(async () => {
    yang = await loadTandemContext();
  });
  after(async () => {
    await p?.close();
    yang?.free();
  });

  it('state data, notifications and the RPC reply parse strictly', async () => {
    p = await new Pair().start({
      vrfs: (port) => [{ name: 'main', port, grace: { tcp: 10, udp: 500 }, firewall: { 'default-action': 'accept' } }],
    });
    const fs = [flow(), flow()];
    for (const f of fs) p.ha1.engine.open('main', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 2, 'synced');
    await p.ha1.service.manualSync('main');
    await reconfigure(p.ha1, p.ha1Config({ g1: 'backup' }));
    await reconfigure(p.ha2, p.ha2Config({ g1: 'master' }));
    await p.ha2.service.vrfs.get('main')?.resyncIdle();
    const cfg = yang.parse(JSON.stringify(p.ha1.config), { format: 'json', kind: 'config' });
    cfg.free();
    for (const node of [p.ha1, p.ha2]) {
      const state = { ...new SyncStateProvider(node.service).state(), ...new HaStateProvider(node.ha.groups).state() };
      // Operational data carries the list keys of the configuration it extends: merge with it.
      const tree = yang.parse(JSON.stringify(node.config), { format: 'json', kind: 'config' });
      const st = yang.parse(JSON.stringify(state), { format: 'json', kind: 'data', validate: false });
      tree.merge(st);
      const printed = tree.print({ format: 'json' });
      st.free();
      tree.free();
      expect(printed).to.include('npf_event1');
      expect(printed).to.include('"current-state"');
    }
    const ha1State = JSON.stringify(new SyncStateProvider(p.ha1.service).state());
    expect(ha1State).to.include('"undefined-grace-period-effective":false'); // udp 500 > udp timeout 120
    const kinds = new Set<string>();
    for (const n of [...p.ha1.notifications, ...p.ha2.notifications]) {
      kinds.add(n.kind);
      const t = yang.parse(JSON.stringify(n.kind === 'ha-group-state-change' ? groupStateChangeNotification(n) : toYangNotification(n)), { format: 'json', kind: 'notification' });
      t.free();
    }
    expect([...kinds].sort()).to.include.members(['connection-up', 'full-resync-complete', 'ha-group-state-change', 'manual-synchronization-complete']);
    const rpc = new ManualSynchronizationRpc(p.ha2.service);
    const out = await rpc.invoke({ vrf: 'main' });
    // The binding parses a reply as the output's members, module-qualified.
    const qualified = Object.fromEntries(Object.entries(out).map(([k, v]) => [`tandem-ha-fp-conntrack:${k}`, v]));
    const reply = yang.parse(JSON.stringify(qualified), {
      format: 'json', kind: 'reply', rpcPath: rpc.rpcPath,
    });
    reply.free();
    let err: Error | undefined;
    try {
      await new ManualSynchronizationRpc(p.ha1.service).invoke({ vrf: 'main' });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/backup/);
  });
});
