// Real VRRP between two network namespaces: one keepalived per node, started and watched by a
// VrrpController each, driving that node's HA group. Election by priority, failover when the
// master's keepalived is killed, preempt and nopreempt, reload of a changed priority, and stop.
import { expect } from 'chai';
import { HaGroups } from '../../ha/ha-groups.js';
import { readVrrpConfigs, type VrfVrrpConfig } from '../../ha/vrrp/keepalived-config.js';
import { VrrpController, type VrrpInstanceEvent } from '../../ha/vrrp/vrrp-controller.js';
import { killKeepalived, requireRoot, VrrpNamespacePair, waitUntil } from './vrrp-namespaces.js';

/** 0.5 s adverts: the master-down interval is about 1.5 s, and a loaded CI machine does not flap. */
const ADVERT_CS = 50;

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

interface Node {
  vrf: string;
  groups: HaGroups;
  controller: VrrpController;
  events: VrrpInstanceEvent[];
}

describe('VRRP with keepalived between two namespaces (root)', function () {
  this.timeout(60_000);
  const pair = new VrrpNamespacePair();
  const vip = `${pair.subnet}.100`;
  let a: Node;
  let b: Node;

  function vrrpConfig(vrf: string, priority: number, preempt: boolean, enabled = true, link = pair.link): VrfVrrpConfig[] {
    return readVrrpConfigs({
      'tandem-vrf:vrf': [
        {
          name: vrf,
          vrrp: { enabled },
          interface: {
            vrrp: [{ name: 'gw', 'link-interface': link, vrid: 42, priority, 'virtual-address': [vip], 'advert-interval': ADVERT_CS, preempt, 'ha-group': 'gateway' }],
          },
        },
      ],
    });
  }

  function node(vrf: string): Node {
    const groups = new HaGroups();
    groups.apply([{ name: 'gateway' }]);
    // A dead keepalived comes back after 3 s: long enough for the peer's takeover to be seen.
    const controller = new VrrpController(groups, { process: { backoffMinMs: 3000, backoffMaxMs: 3000, stopTimeoutMs: 5000 } });
    const events: VrrpInstanceEvent[] = [];
    controller.onInstanceState((ev) => events.push(ev));
    return { vrf, groups, controller, events };
  }

  function reported(n: Node, state: string, since = 0): boolean {
    return n.events.slice(since).some((e) => e.instance === 'gw' && e.state === state);
  }

  before(async function () {
    requireRoot(this);
    pair.setup();
    a = node(pair.a);
    b = node(pair.b);
  });

  after(async function () {
    await a?.controller.close();
    await b?.controller.close();
    pair.cleanup();
  });

  it('keepalived accepts the rendered configuration in the namespace, and refuses a missing link', async function () {
    expect(await a.controller.check(vrrpConfig(pair.a, 150, true))).to.deep.equal([]);
    const errors = await a.controller.check(vrrpConfig(pair.a, 150, true, true, 'nolink0'));
    expect(errors).to.have.length(1);
    expect(errors[0]?.message).to.match(/rejected by keepalived: .*nolink0/);
    expect(errors[0]?.path).to.equal(`/tandem-vrf:vrf[name='${pair.a}']/interface/vrrp`);
  });

  it('elects the higher priority as master: it holds the virtual address and its HA group is master', async function () {
    await a.controller.apply(vrrpConfig(pair.a, 150, true));
    await b.controller.apply(vrrpConfig(pair.b, 100, true));
    await waitUntil('a is master and b backup', () => a.groups.state('gateway') === 'master' && reported(b, 'BACKUP'));
    await sleep(ADVERT_CS * 10 * 3);
    expect(b.controller.instanceState(pair.b, 'gw')).to.equal('BACKUP');
    expect(b.groups.state('gateway')).to.equal('backup');
    expect(a.groups.list()[0]).to.include({ controller: 'vrrp', state: 'master' });
    expect(pair.addresses(pair.a)).to.include(vip);
    expect(pair.addresses(pair.b)).to.not.include(vip);
  });

  it('moves master and the address to the backup when the master keepalived dies, then preempts back', async function () {
    const aSince = a.events.length;
    const bSince = b.events.length;
    await killKeepalived(a.controller.keepalived(a.vrf)); // a crash: no priority-0 advert, the peer must notice the silence
    // The controller notices the death at once: the group must not stay master.
    await waitUntil("a's group falls to backup", () => a.groups.state('gateway') === 'backup', 5000);
    await waitUntil('b reports MASTER through its FIFO', () => reported(b, 'MASTER', bSince));
    expect(b.groups.state('gateway')).to.equal('master');
    await waitUntil('the virtual address is on b', () => pair.addresses(pair.b).includes(vip), 5000);
    // a's keepalived is restarted by the controller; priority 150 with preempt takes master back.
    await waitUntil('a restarted and master again', () => reported(a, 'MASTER', aSince) && a.groups.state('gateway') === 'master');
    await waitUntil('b back to backup', () => b.groups.state('gateway') === 'backup');
    expect(a.controller.keepalived(pair.a)?.restarts).to.equal(1);
    await waitUntil('the virtual address left b', () => !pair.addresses(pair.b).includes(vip), 5000);
    expect(pair.addresses(pair.a)).to.include(vip);
  });

  it('reloads a changed priority: b at 200 with preempt takes over', async function () {
    const pidBefore = b.controller.keepalived(pair.b)?.pid;
    await b.controller.apply(vrrpConfig(pair.b, 200, true));
    await waitUntil('b master, a backup', () => b.groups.state('gateway') === 'master' && a.groups.state('gateway') === 'backup');
    expect(b.controller.keepalived(pair.b)?.pid, 'reloaded, not restarted').to.equal(pidBefore);
    await waitUntil('the virtual address is on b only', () => pair.addresses(pair.b).includes(vip) && !pair.addresses(pair.a).includes(vip), 5000);
  });

  it('honours nopreempt: a higher priority that comes back stays backup', async function () {
    await a.controller.apply(vrrpConfig(pair.a, 150, false));
    await b.controller.apply(vrrpConfig(pair.b, 200, false));
    await sleep(ADVERT_CS * 10 * 3);
    expect(b.groups.state('gateway'), 'a reload alone moves nothing').to.equal('master');
    const bSince = b.events.length;
    const aSince = a.events.length;
    await killKeepalived(b.controller.keepalived(b.vrf)); // a crash: no priority-0 advert, the peer must notice the silence
    await waitUntil('a master', () => reported(a, 'MASTER', aSince) && a.groups.state('gateway') === 'master');
    await waitUntil('b restarted and backup', () => reported(b, 'BACKUP', bSince) && (b.controller.keepalived(pair.b)?.restarts ?? 0) >= 1);
    // Several advert intervals with b (priority 200) hearing a (150): with preempt it would take over.
    await sleep(ADVERT_CS * 10 * 6);
    expect(a.groups.state('gateway')).to.equal('master');
    expect(b.groups.state('gateway')).to.equal('backup');
    expect(reported(b, 'MASTER', bSince)).to.equal(false);
    // The killed keepalived left its address behind; the restarted one, as backup, removed it.
    expect(pair.addresses(pair.b)).to.not.include(vip);
    expect(pair.addresses(pair.a)).to.include(vip);
  });

  it('stops keepalived when VRRP is disabled: the group stays backup and the peer takes over', async function () {
    const pid = a.controller.keepalived(pair.a)?.pid;
    expect(pid).to.be.a('number');
    await a.controller.apply(vrrpConfig(pair.a, 150, false, false));
    expect(a.controller.keepalived(pair.a)).to.equal(undefined);
    expect(() => process.kill(pid!, 0), 'keepalived ended').to.throw();
    expect(a.groups.list()[0]).to.include({ controller: 'vrrp', state: 'backup' });
    await waitUntil('b master', () => b.groups.state('gateway') === 'master');
    await waitUntil('the virtual address is on b', () => pair.addresses(pair.b).includes(vip), 5000);
    expect(pair.addresses(pair.a)).to.not.include(vip);
  });
});
