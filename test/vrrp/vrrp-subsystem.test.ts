// The VRRP commit subsystem wired to a sync service (createVrrp): configuration errors come back
// with their path, and on two nodes (keepalived in two namespaces, sync stacks on loopback) the
// VRRP election decides each node's HA group, which moves the VRF's dataplane and sync.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { CommitContext } from '../../core/subsystem.js';
import { HaGroups } from '../../ha/ha-groups.js';
import { VrrpController } from '../../ha/vrrp/vrrp-controller.js';
import { createVrrp, currentHaConfig, VrrpSubsystem, type VrrpParts } from '../../ha/vrrp/vrrp-subsystem.js';
import { MemoryEngine } from '../sync/memory-engine.js';
import { freePort, nodeConfig, startNode, type SyncNode } from '../sync/two-nodes.js';
import { requireRoot, VrrpNamespacePair, waitUntil } from './vrrp-namespaces.js';

type Json = Record<string, unknown>;

function ctx(newConfig: Json, oldConfig: Json = {}): CommitContext {
  return { id: 1, oldConfig, newConfig };
}

describe('VRRP commit subsystem', function () {
  this.timeout(60_000);

  it('reports bad VRRP configuration with its path, and accepts a VRF without VRRP', async function () {
    const sub = new VrrpSubsystem(new VrrpController(new HaGroups()));
    const bad = { 'tandem-vrf:vrf': [{ name: 'main', vrrp: { enabled: true }, interface: { vrrp: [{ name: 'v', 'link-interface': 'eth0', vrid: 300, priority: 100, 'virtual-address': ['10.0.0.1'], 'advert-interval': 100, preempt: true }] } }] };
    const errors = sub.validate(ctx(bad));
    expect(errors).to.have.length(1);
    expect(errors[0]?.message).to.match(/vrid must be an integer in 1..255, got 300/);
    expect(errors[0]?.path).to.equal("/tandem-vrf:vrf[name='main']/interface/vrrp[name='v']/vrid");
    expect(await sub.prepare(ctx(bad))).to.deep.equal(errors);
    expect(sub.validate(ctx({ 'tandem-vrf:vrf': [{ name: 'main', vrrp: { enabled: false } }] }))).to.deep.equal([]);
    expect(sub.owns).to.deep.equal(['/tandem-vrf:vrf/vrrp', '/tandem-vrf:vrf/interface']);
  });

  it('refuses enabled VRRP when the agent is not root (prepare)', async function () {
    if (typeof process.getuid === 'function' && process.getuid() === 0) {
      console.log('    (skipped: checks the refusal made to a non-root agent)');
      this.skip();
    }
    const sub = new VrrpSubsystem(new VrrpController(new HaGroups()));
    const cfg = { 'tandem-vrf:vrf': [{ name: 'main', vrrp: { enabled: true }, interface: { vrrp: [{ name: 'v', 'link-interface': 'eth0', vrid: 3, priority: 100, 'virtual-address': ['10.0.0.1'], 'advert-interval': 100, preempt: true }] } }] };
    expect(sub.validate(ctx(cfg))).to.deep.equal([]);
    expect(await sub.prepare(ctx(cfg))).to.deep.equal([{ message: 'VRRP of VRF main needs the agent to run as root (keepalived)', path: "/tandem-vrf:vrf[name='main']/vrrp/enabled" }]);
    await sub.controller.close();
  });

  it('rebuilds /ha from the groups as they are: static states kept, VRRP groups without a state', function () {
    const groups = new HaGroups();
    groups.apply([{ name: 's', state: 'master' }, { name: 'v' }, { name: 'n' }]);
    groups.setVrrpState('v', 'master');
    expect(currentHaConfig(groups)).to.deep.equal({ 'tandem-ha:ha': { group: [{ name: 's', state: 'master' }, { name: 'v' }, { name: 'n' }] } });
  });

  describe('two nodes (root)', function () {
    const pair = new VrrpNamespacePair();
    const vip = `${pair.subnet}.100`;
    const clock = new ManualClock();
    let ha1: SyncNode<MemoryEngine> | undefined;
    let ha2: SyncNode<MemoryEngine> | undefined;
    let vrrp1: VrrpParts | undefined;
    let vrrp2: VrrpParts | undefined;

    /** A node's configuration: VRF main synced to the peer, its group 'gw' driven by VRRP. */
    function config(source: string, address: string, port: number, priority: number): Json {
      const c = nodeConfig({ source, address, states: {}, vrfs: [{ name: 'main', port, group: 'gw' }] });
      c['tandem-ha:ha'] = { group: [{ name: 'gw' }] };
      const vrf = (c['tandem-vrf:vrf'] as Json[])[0]!;
      vrf['vrrp'] = { enabled: true };
      vrf['interface'] = {
        vrrp: [{ name: 'gw', 'link-interface': pair.link, vrid: 11, priority, 'virtual-address': [vip], 'advert-interval': 50, preempt: true, 'ha-group': 'gw' }],
      };
      return c;
    }

    before(async function () {
      requireRoot(this);
      pair.setup();
    });

    after(async function () {
      await vrrp1?.close();
      await vrrp2?.close();
      await ha1?.service.close();
      await ha2?.service.close();
      await ha1?.engine.close();
      await ha2?.engine.close();
      pair.cleanup();
    });

    it("elects a master whose VRF dataplane and sync become master, and moves both when its keepalived dies", async function () {
      const port = await freePort();
      const c1 = config('127.0.0.1', '127.0.0.2', port, 150);
      const c2 = config('127.0.0.2', '127.0.0.1', port, 100);
      ha1 = await startNode('ha1', new MemoryEngine(clock), clock, c1);
      ha2 = await startNode('ha2', new MemoryEngine(clock), clock, c2);
      expect(ha1.engine.role('main')).to.equal('backup');
      // VRF main of each node runs its keepalived in that node's namespace.
      // threadNice undefined: both nodes run in the test process, whose thread keeps its priority.
      vrrp1 = createVrrp(ha1.ha, { netnsOf: () => pair.a, process: { backoffMinMs: 3000, backoffMaxMs: 3000 }, threadNice: undefined });
      vrrp2 = createVrrp(ha2.ha, { netnsOf: () => pair.b, process: { backoffMinMs: 3000, backoffMaxMs: 3000 }, threadNice: undefined });
      for (const [parts, c] of [[vrrp1, c1], [vrrp2, c2]] as const) {
        expect(parts.subsystem.validate(ctx(c))).to.deep.equal([]);
        expect(await parts.subsystem.prepare(ctx(c))).to.deep.equal([]);
        await parts.subsystem.apply(ctx(c));
      }
      const n1 = ha1;
      const n2 = ha2;
      await waitUntil('ha1 master and ha2 backup', () => n1.engine.role('main') === 'master' && n1.service.vrfs.get('main')?.role === 'master' && vrrp2!.controller.instanceState('main', 'gw') === 'BACKUP');
      expect(n2.engine.role('main')).to.equal('backup');
      expect(n2.service.vrfs.get('main')?.role).to.equal('backup');
      expect(n1.ha.groups.list().find((g) => g.name === 'gw')).to.include({ state: 'master', controller: 'vrrp' });
      const change = n1.notifications.find((n) => n.kind === 'ha-group-state-change' && n.newState === 'master');
      expect(change).to.include({ group: 'gw', controller: 'vrrp' });

      // A later commit of /ha alone (the VRRP subsystem is not concerned) must survive VRRP events.
      const withExtra = { ...c1, 'tandem-ha:ha': { group: [{ name: 'gw' }, { name: 'extra', state: 'master' }] } };
      await n1.ha.apply(withExtra);
      expect(n1.ha.groups.state('gw')).to.equal('master');

      const ka = vrrp1.controller.keepalived('main')!;
      const child = await ka.vrrpPid();
      expect(child).to.be.a('number');
      process.kill(child!, 'SIGKILL');
      process.kill(ka.pid!, 'SIGKILL');
      await waitUntil('ha2 master and ha1 backup', () => n2.engine.role('main') === 'master' && n2.service.vrfs.get('main')?.role === 'master' && n1.engine.role('main') === 'backup');
      expect(pair.addresses(pair.b)).to.include(vip);
      expect(n1.ha.groups.list().find((g) => g.name === 'extra')).to.include({ state: 'master', controller: 'static' });
    });
  });
});
