// keepalived.conf rendering from VRRP configuration that went through libyang (so every default
// comes from the YANG module, as in a commit), and the refusal of bad JSON.
import { expect } from 'chai';
import { loadTandemContext, type YangContext } from '../../yang/libyang/index.js';
import { advertIntSeconds, readVrrpConfigs, renderKeepalivedConf, VrrpConfigError } from '../../ha/vrrp/keepalived-config.js';

const FIFO = '/run/tandem/vrrp/main/notify.fifo';

const CONFIG_XML = `
<ha xmlns="urn:tandem:yang:tandem-ha">
  <group><name>gw</name></group>
  <group><name>lb</name></group>
</ha>
<vrf xmlns="urn:tandem:yang:tandem-vrf">
  <name>main</name>
  <vrrp>
    <enabled>true</enabled>
    <router-id>10.150.0.2</router-id>
  </vrrp>
  <interface>
    <vrrp>
      <name>gateway</name>
      <link-interface>eth1</link-interface>
      <vrid>51</vrid>
      <virtual-address>10.1.1.1</virtual-address>
      <ha-group>gw</ha-group>
    </vrrp>
    <vrrp>
      <name>lb_vip</name>
      <link-interface>eth2</link-interface>
      <vrid>7</vrid>
      <priority>200</priority>
      <virtual-address>192.0.2.10</virtual-address>
      <virtual-address>192.0.2.11</virtual-address>
      <virtual-address>2001:db8::10</virtual-address>
      <advert-interval>20</advert-interval>
      <preempt>false</preempt>
      <ha-group>lb</ha-group>
    </vrrp>
  </interface>
</vrf>
<vrf xmlns="urn:tandem:yang:tandem-vrf">
  <name>blue</name>
  <interface>
    <vrrp>
      <name>v6</name>
      <link-interface>eth3</link-interface>
      <vrid>9</vrid>
      <virtual-address>fe80::1</virtual-address>
      <virtual-address>2001:db8:1::1</virtual-address>
    </vrrp>
  </interface>
</vrf>
<vrf xmlns="urn:tandem:yang:tandem-vrf">
  <name>red</name>
</vrf>`;

const MAIN_CONF = `# keepalived.conf of VRF main, written by tandem; edits are overwritten at the next commit.
global_defs {
  router_id 10.150.0.2
  vrrp_version 3
  notify_fifo /run/tandem/vrrp/main/notify.fifo
  fifo_write_vrrp_states_on_reload
}

vrrp_instance gateway {
  state BACKUP
  interface eth1
  virtual_router_id 51
  priority 100
  advert_int 0.05
  version 3
  virtual_ipaddress {
    10.1.1.1
  }
}

vrrp_instance lb_vip {
  state BACKUP
  interface eth2
  virtual_router_id 7
  priority 200
  advert_int 0.2
  version 3
  nopreempt
  virtual_ipaddress {
    192.0.2.10
    192.0.2.11
  }
  virtual_ipaddress_excluded {
    2001:db8::10
  }
}
`;

describe('VRRP keepalived.conf rendering', function () {
  this.timeout(30_000);
  let ctx: YangContext;
  let json: Record<string, unknown>;

  before(async function () {
    ctx = await loadTandemContext();
    const tree = ctx.parse(CONFIG_XML, { format: 'xml', kind: 'config' });
    try {
      json = JSON.parse(tree.print({ format: 'json', withDefaults: 'report-all' })) as Record<string, unknown>;
    } finally {
      tree.free();
    }
  });
  after(function () {
    ctx?.free();
  });

  it('reads the VRFs that have VRRP, with the YANG defaults', function () {
    const configs = readVrrpConfigs(json);
    expect(configs.map((c) => c.vrf)).to.deep.equal(['main', 'blue']);
    const [main, blue] = configs;
    expect(main?.enabled).to.equal(true);
    expect(main?.routerId).to.equal('10.150.0.2');
    expect(main?.instances[0]).to.deep.equal({
      name: 'gateway',
      linkInterface: 'eth1',
      vrid: 51,
      priority: 100,
      virtualAddresses: ['10.1.1.1'],
      advertIntervalCs: 5, // the YANG default: 0.05 s adverts (issue 11 item 5, second pass)
      preempt: true,
      haGroup: 'gw',
    });
    // vrrp/enabled defaults to false: the instance is configured but inactive.
    expect(blue?.enabled).to.equal(false);
    expect(blue?.instances.map((i) => i.name)).to.deep.equal(['v6']);
  });

  it('renders priority, advert_int, nopreempt, virtual addresses per family, VRRPv3 and the notify FIFO', function () {
    const main = readVrrpConfigs(json)[0];
    expect(main).to.not.equal(undefined);
    expect(renderKeepalivedConf(main!, { notifyFifo: FIFO })).to.equal(MAIN_CONF);
  });

  it('renders no instance for a VRF whose VRRP is disabled', function () {
    const blue = readVrrpConfigs(json)[1];
    const text = renderKeepalivedConf(blue!, { notifyFifo: '/tmp/x/notify.fifo' });
    expect(text).to.contain('router_id tandem-blue');
    expect(text).to.not.contain('vrrp_instance');
  });

  it('renders an IPv6 instance with the link-local address first', function () {
    const blue = readVrrpConfigs(json)[1]!;
    const text = renderKeepalivedConf({ ...blue, enabled: true }, { notifyFifo: '/tmp/x/notify.fifo' });
    expect(text).to.contain('  virtual_ipaddress {\n    fe80::1\n    2001:db8:1::1\n  }\n');
    expect(text).to.not.contain('excluded');
  });

  it('converts centiseconds to keepalived seconds', function () {
    expect([1, 20, 100, 150, 4095].map(advertIntSeconds)).to.deep.equal(['0.01', '0.2', '1', '1.5', '40.95']);
  });

  function vrfWith(instance: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const base = { name: 'i1', 'link-interface': 'eth1', vrid: 1, priority: 100, 'virtual-address': ['10.0.0.1'], 'advert-interval': 100, preempt: true };
    return { 'tandem-vrf:vrf': [{ name: 'main', vrrp: { enabled: true }, interface: { vrrp: [{ ...base, ...instance }] }, ...extra }] };
  }

  const BAD: [string, Record<string, unknown>, RegExp, string][] = [
    ['no virtual address', vrfWith({ 'virtual-address': [] }), /at least one virtual-address/, "/tandem-vrf:vrf[name='main']/interface/vrrp[name='i1']/virtual-address"],
    ['a bad virtual address', vrfWith({ 'virtual-address': ['10.0.0.300'] }), /bad virtual-address "10.0.0.300"/, "/tandem-vrf:vrf[name='main']/interface/vrrp[name='i1']/virtual-address"],
    ['vrid 0', vrfWith({ vrid: 0 }), /vrid must be an integer in 1..255, got 0/, "/tandem-vrf:vrf[name='main']/interface/vrrp[name='i1']/vrid"],
    ['priority 255 (owner)', vrfWith({ priority: 255 }), /priority must be an integer in 1..254/, "/tandem-vrf:vrf[name='main']/interface/vrrp[name='i1']/priority"],
    ['a missing advert-interval', vrfWith({ 'advert-interval': undefined }), /advert-interval must be an integer/, "/tandem-vrf:vrf[name='main']/interface/vrrp[name='i1']/advert-interval"],
    ['an interface name that would break the file', vrfWith({ 'link-interface': 'eth1 }' }), /link-interface: bad value/, "/tandem-vrf:vrf[name='main']/interface/vrrp[name='i1']/link-interface"],
    ['a router-id that is not IPv4', vrfWith({}, { vrrp: { enabled: true, 'router-id': 'r1' } }), /router-id must be an IPv4 address/, "/tandem-vrf:vrf[name='main']/vrrp/router-id"],
  ];
  for (const [what, config, message, path] of BAD) {
    it(`refuses ${what} with the path of the node`, function () {
      let caught: unknown;
      try {
        readVrrpConfigs(config);
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(VrrpConfigError);
      expect((caught as VrrpConfigError).message).to.match(message);
      expect((caught as VrrpConfigError).path).to.equal(path);
    });
  }

  it('refuses two instances with the same vrid on the same link', function () {
    const config = vrfWith({});
    const vrf = (config['tandem-vrf:vrf'] as Record<string, unknown>[])[0]!;
    const list = (vrf['interface'] as { vrrp: Record<string, unknown>[] }).vrrp;
    list.push({ ...list[0], name: 'i2' });
    expect(() => readVrrpConfigs(config)).to.throw(VrrpConfigError, 'VRRP instances i1 and i2 both use vrid 1 on eth1');
  });

  it('refuses a notify FIFO path keepalived.conf cannot hold', function () {
    const main = readVrrpConfigs(json)[0]!;
    expect(() => renderKeepalivedConf(main, { notifyFifo: '/tmp/a b/fifo' })).to.throw(/cannot be written/);
  });

  it('gives the instance that drives the VRF\'s own listen-ha-group the master route and rule of the backup guard, and only it', () => {
    const vrf = (listen: string) => ({
      name: 'main',
      vrrp: { enabled: true },
      interface: { vrrp: [
        { name: 'lan', 'link-interface': 'lan', vrid: 1, priority: 100, 'virtual-address': ['10.1.0.1'], 'advert-interval': 5, preempt: true, 'ha-group': 'g1' },
        { name: 'wan', 'link-interface': 'wan', vrid: 2, priority: 100, 'virtual-address': ['10.77.0.1'], 'advert-interval': 5, preempt: true },
      ] },
      'tandem-ha-fp-conntrack:ha-fp-conntrack': { 'listen-ha-group': listen },
    });
    const [cfg] = readVrrpConfigs({ 'tandem-vrf:vrf': [vrf('g1')] });
    expect(cfg!.instances.map((i) => i.liftsGuard === true)).to.deep.equal([true, false]);
    const text = renderKeepalivedConf(cfg!, { notifyFifo: '/tmp/x/notify.fifo' });
    const lan = text.slice(text.indexOf('vrrp_instance lan'), text.indexOf('vrrp_instance wan'));
    expect(lan).to.include('  virtual_routes {\n    0.0.0.0/0 dev lan table 25200\n    ::/0 dev lan table 25200\n  }');
    expect(lan).to.include('  virtual_rules {\n    from all fwmark 0x20000000/0x20000000 table 25200 preference 1000\n    from all fwmark 0x20000000/0x20000000 table 25200 preference 1000 inet6\n  }');
    expect(text.slice(text.indexOf('vrrp_instance wan'))).to.not.match(/virtual_(rules|routes)/);
    // The dataplane listens to another group: keepalived must not lift its guard.
    const [other] = readVrrpConfigs({ 'tandem-vrf:vrf': [vrf('g2')] });
    expect(renderKeepalivedConf(other!, { notifyFifo: '/tmp/x/notify.fifo' })).to.not.match(/virtual_(rules|routes)/);
  });
});
