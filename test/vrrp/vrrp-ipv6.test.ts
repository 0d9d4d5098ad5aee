// An IPv6 VRRPv3 instance next to an IPv4 one in the same VRF (root): each elects its own master
// (priorities crossed), holds its addresses, and drives its own HA group.
import { expect } from 'chai';
import { HaGroups } from '../../ha/ha-groups.js';
import { readVrrpConfigs, type VrfVrrpConfig } from '../../ha/vrrp/keepalived-config.js';
import { VrrpController } from '../../ha/vrrp/vrrp-controller.js';
import { requireRoot, run, VrrpNamespacePair, waitUntil } from './vrrp-namespaces.js';

function addresses6(ns: string, link: string): string[] {
  const out = JSON.parse(run('ip', ['-n', ns, '-j', '-6', 'addr', 'show', 'dev', link])) as { addr_info?: { local: string }[] }[];
  return out.flatMap((l) => l.addr_info ?? []).map((a) => a.local);
}

describe('VRRP IPv6 and IPv4 instances in one VRF (root)', function () {
  this.timeout(60_000);
  const pair = new VrrpNamespacePair();
  const v4 = `${pair.subnet}.100`;
  const v6 = ['fe80::43', 'fd00:43::100'];
  const nodes: { groups: HaGroups; controller: VrrpController }[] = [];

  function config(vrf: string, prio4: number, prio6: number): VrfVrrpConfig[] {
    const common = { 'link-interface': pair.link, 'advert-interval': 50, preempt: true };
    return readVrrpConfigs({
      'tandem-vrf:vrf': [{
        name: vrf,
        vrrp: { enabled: true },
        interface: {
          vrrp: [
            { ...common, name: 'gw4', vrid: 42, priority: prio4, 'virtual-address': [v4], 'ha-group': 'g4' },
            { ...common, name: 'gw6', vrid: 43, priority: prio6, 'virtual-address': v6, 'ha-group': 'g6' },
          ],
        },
      }],
    });
  }

  before(function () {
    requireRoot(this);
    pair.setup();
  });

  after(async function () {
    for (const n of nodes) await n.controller.close();
    pair.cleanup();
  });

  it('elects each family on its own and moves each address family with its instance', async function () {
    for (const [vrf, p4, p6] of [[pair.a, 150, 100], [pair.b, 100, 150]] as const) {
      const groups = new HaGroups();
      groups.apply([{ name: 'g4' }, { name: 'g6' }]);
      const controller = new VrrpController(groups);
      nodes.push({ groups, controller });
      expect(await controller.check(config(vrf, p4, p6))).to.deep.equal([]);
      await controller.apply(config(vrf, p4, p6));
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    await waitUntil('a master of g4, b master of g6', () =>
      a.groups.state('g4') === 'master' && b.groups.state('g6') === 'master' &&
      a.controller.instanceState(pair.a, 'gw6') === 'BACKUP' && b.controller.instanceState(pair.b, 'gw4') === 'BACKUP');
    expect(a.groups.state('g6')).to.equal('backup');
    expect(b.groups.state('g4')).to.equal('backup');
    await waitUntil('addresses in place', () => pair.addresses(pair.a).includes(v4) && v6.every((x) => addresses6(pair.b, pair.link).includes(x)), 5000);
    expect(pair.addresses(pair.b)).to.not.include(v4);
    for (const x of v6) expect(addresses6(pair.a, pair.link)).to.not.include(x);
  });
});
