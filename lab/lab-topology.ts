// The lab's namespace topology:
//
//   client --[lan switch]-- ha1 / ha2 --[wan switch]-- server        ha1 ==[sync link]== ha2
//
// - client 10.1.0.2/24, default route via the lan gateway 10.1.0.1 (a virtual address);
// - server 10.77.0.2/24, routes to the NAT pool (192.0.2.0/28) and the client lan via 10.77.0.1;
// - ha1/ha2: lan 10.1.0.11/12, wan 10.77.0.11/12, sync 10.150.0.1/2 (a link of its own, apart
//   from the data links), forwarding on;
// - the two switches are bridges in a namespace of their own;
// - each router has, per data side, a macvlan `vlan`/`vwan` carrying the gateway address with a
//   VRRP-style virtual MAC (00:00:5e:00:01:<vrid>), up only on the node that owns the gateway;
//   arp_notify makes it announce itself (gratuitous ARP) when it comes up, so a takeover is seen
//   by the client, the server and the switches at once.
// Every name starts with a per-run prefix; teardown() removes it all, and is safe to call twice.
import type { VrfDataplaneConfig } from '../fastpath/engine.js';
import { NamespaceFixture } from './namespace-fixture.js';

export type RouterName = 'ha1' | 'ha2';

export const LAB = {
  lanGateway: '10.1.0.1',
  client: '10.1.0.2',
  server: '10.77.0.2',
  wanGateway: '10.77.0.1',
  natPool: '192.0.2.0/28',
  clientLan: '10.1.0.0/24',
  routers: {
    ha1: { lan: '10.1.0.11', wan: '10.77.0.11', sync: '10.150.0.1' },
    ha2: { lan: '10.1.0.12', wan: '10.77.0.12', sync: '10.150.0.2' },
  },
  vrid: { lan: 1, wan: 2 },
} as const;

export class LabTopology {
  /** Topologies built and not yet torn down (for signal handlers). */
  static readonly active = new Set<LabTopology>();
  readonly fx: NamespaceFixture;
  readonly ns = { client: '', server: '', ha1: '', ha2: '', switch: '' };

  constructor(tag = 'lab') {
    this.fx = new NamespaceFixture(tag);
  }

  get prefix(): string {
    return this.fx.prefix;
  }

  exec(ns: string, cmd: string, args: string[]): string {
    return this.fx.exec(ns, cmd, args);
  }

  build(): void {
    LabTopology.active.add(this);
    const fx = this.fx;
    this.ns.switch = fx.add('sw');
    this.ns.client = fx.add('client');
    this.ns.server = fx.add('server');
    this.ns.ha1 = fx.add('ha1');
    this.ns.ha2 = fx.add('ha2');
    const sw = this.ns.switch;
    for (const bridge of ['brlan', 'brwan']) {
      fx.exec(sw, 'ip', ['link', 'add', bridge, 'type', 'bridge']);
      fx.exec(sw, 'ip', ['link', 'set', bridge, 'up']);
    }
    const port = (ns: string, ifname: string, cidr: string, swPort: string, bridge: string) => {
      fx.link(ns, ifname, cidr, sw, swPort, undefined);
      fx.exec(sw, 'ip', ['link', 'set', swPort, 'master', bridge]);
    };
    port(this.ns.client, 'eth0', `${LAB.client}/24`, 'client', 'brlan');
    port(this.ns.server, 'eth0', `${LAB.server}/24`, 'server', 'brwan');
    // Tens of thousands of connections: room in the accept queues and in the ephemeral ports.
    fx.exec(this.ns.server, 'sysctl', ['-q', '-w', 'net.core.somaxconn=65535', 'net.ipv4.tcp_max_syn_backlog=65535']);
    fx.exec(this.ns.client, 'sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000']);
    fx.exec(this.ns.client, 'ip', ['route', 'add', 'default', 'via', LAB.lanGateway]);
    fx.exec(this.ns.server, 'ip', ['route', 'add', LAB.natPool, 'via', LAB.wanGateway]);
    fx.exec(this.ns.server, 'ip', ['route', 'add', LAB.clientLan, 'via', LAB.wanGateway]);
    for (const name of ['ha1', 'ha2'] as const) {
      const ns = this.ns[name];
      const a = LAB.routers[name];
      // arp_ignore=1: only the interface that holds an address answers ARP for it (the gateway
      // address is on the macvlan, so it is answered with the virtual MAC, and only by its owner).
      fx.exec(ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0',
        'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.default.arp_ignore=1']);
      port(ns, 'lan', `${a.lan}/24`, `${name}lan`, 'brlan');
      port(ns, 'wan', `${a.wan}/24`, `${name}wan`, 'brwan');
      for (const [side, vrid] of [['lan', LAB.vrid.lan], ['wan', LAB.vrid.wan]] as const) {
        const vif = side === 'lan' ? 'vlan' : 'vwan';
        fx.exec(ns, 'ip', ['link', 'add', vif, 'link', side, 'address', `00:00:5e:00:01:0${vrid}`, 'type', 'macvlan', 'mode', 'bridge']);
        fx.exec(ns, 'sysctl', ['-q', '-w', `net.ipv4.conf.${vif}.arp_notify=1`, `net.ipv4.conf.${vif}.rp_filter=0`, `net.ipv4.conf.${vif}.arp_ignore=1`]);
      }
    }
    fx.link(this.ns.ha1, 'sync', `${LAB.routers.ha1.sync}/30`, this.ns.ha2, 'sync', `${LAB.routers.ha2.sync}/30`);
  }

  /**
   * Source addresses for the client: 10.1.0.2 and more (up to 64) so that many connections fit
   * the ephemeral ports (~28,000 per address) and the CG-NAT port blocks (8,064 per subscriber).
   */
  clientSources(count: number): string[] {
    const sources = Array.from({ length: Math.max(1, Math.min(64, count)) }, (_, i) => `10.1.0.${2 + i}`);
    for (const address of sources.slice(1)) this.fx.exec(this.ns.client, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'eth0']);
    return sources;
  }

  /**
   * The router takes the gateway addresses (what VRRP does on becoming master). An address stays
   * local (and answered) on a down interface, so it is added here and deleted on release.
   */
  takeGateway(router: RouterName): void {
    for (const [vif, gateway] of [['vlan', LAB.lanGateway], ['vwan', LAB.wanGateway]]) {
      this.fx.exec(this.ns[router], 'ip', ['addr', 'replace', `${gateway}/32`, 'dev', vif]);
      this.fx.exec(this.ns[router], 'ip', ['link', 'set', vif, 'up']);
    }
  }

  releaseGateway(router: RouterName): void {
    for (const vif of ['vlan', 'vwan']) {
      this.fx.exec(this.ns[router], 'ip', ['link', 'set', vif, 'down']);
      this.fx.exec(this.ns[router], 'ip', ['addr', 'flush', 'dev', vif]);
    }
  }

  /**
   * The router's data links go down (a dead node: nothing in, nothing out), and its sync link too
   * with `sync`: one `ip -batch` process, so the links go at one moment (one process per link took
   * hundreds of ms on a loaded machine, the measured kill wave waiting behind it).
   */
  cutDataLinks(router: RouterName, opts: { sync?: boolean } = {}): void {
    const links = ['vlan', 'vwan', 'lan', 'wan', ...(opts.sync && router === 'ha1' ? ['sync'] : [])];
    this.fx.exec(this.ns[router], 'ip', ['-batch', '-'], links.map((l) => `link set ${l} down\n`).join(''));
  }

  restoreDataLinks(router: RouterName): void {
    for (const ifname of ['lan', 'wan']) this.fx.exec(this.ns[router], 'ip', ['link', 'set', ifname, 'up']);
  }

  setSyncLink(up: boolean): void {
    this.fx.exec(this.ns.ha1, 'ip', ['link', 'set', 'sync', up ? 'up' : 'down']);
  }

  async teardown(): Promise<void> {
    LabTopology.active.delete(this);
    await this.fx.cleanup();
  }
}

/** The dataplane configuration both routers share: drop-invalid firewall, CG-NAT of the client lan to the shared pool. */
export function labVrfConfig(): VrfDataplaneConfig {
  return {
    name: 'main',
    conntrackMax: 1 << 20,
    json: {
      name: 'main',
      'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, rule: [] },
      'tandem-cg-nat:cg-nat': {
        // 16 pool addresses x 8 blocks of 8,064 ports = one block for each of the 128 subscribers.
        pool: [{ name: 'shared', prefix: LAB.natPool, 'port-range': { start: 1024, end: 65535 }, 'port-block-size': 8064 }],
        rule: [{ name: 'clients', 'source-prefix': '10.1.0.0/25', pool: 'shared' }],
      },
    },
  };
}
