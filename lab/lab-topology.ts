// The lab's namespace topology:
//
//   client --[lan switch]-- ha1 / ha2 --[wan switch]-- server        ha1 ==[sync link]== ha2
//
// - client 10.1.0.2/24, default route via the lan gateway 10.1.0.1 (a virtual address);
// - server 10.77.0.2/24, routes to the NAT pool (192.0.2.0/28) and the client lan via 10.77.0.1;
// - ha1/ha2: lan 10.1.0.11/12, wan 10.77.0.11/12, sync 10.150.0.1/2 (a link of its own, apart
//   from the data links), forwarding on;
// - the two switches are bridges: by default (`edges: 'bridged'`) the lan switch is the client's
//   own `eth0` (a bridge in the client's namespace with the routers' lan links as ports) and the
//   wan switch the server's `eth0`; `edges: 'switch'` puts both bridges in a namespace of their own
//   (the older lab: two more veth crossings per packet, each one a pass through the host's per-CPU
//   backlog, for the same frames on the routers' links). The routers cannot tell the two apart:
//   the same veth, the same L2 segment shared with the other router (VRRP adverts, gratuitous ARP,
//   the virtual MAC), the same frames in and out;
// - br_netfilter (if loaded on the host) sends bridged IPv4 through the netfilter hooks of the
//   bridge's namespace: off there (nothing filters in a switch), so a switch costs what a switch does;
// - each router has, per data side, a macvlan `vlan`/`vwan` carrying the gateway address with a
//   VRRP-style virtual MAC (00:00:5e:00:01:<vrid>), up only on the node that owns the gateway;
//   arp_notify makes it announce itself (gratuitous ARP) when it comes up, so a takeover is seen
//   by the client, the server and the switches at once.
// Every name starts with a per-run prefix; teardown() removes it all, and is safe to call twice.
import type { VrfDataplaneConfig } from '../fastpath/engine.js';
import { NamespaceFixture } from './namespace-fixture.js';

export type RouterName = 'ha1' | 'ha2';

/** Where the lan and wan switches are: the client's and the server's own bridge, or a switch namespace. */
export type LabEdges = 'bridged' | 'switch';

const BRIDGE_NETFILTER = ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables', 'net.bridge.bridge-nf-call-arptables'];

/** br_netfilter's calls into the namespace's netfilter hooks for bridged frames off (per namespace; absent when br_netfilter is not loaded). */
function offBridgeNetfilter(fx: NamespaceFixture, ns: string): void {
  for (const key of BRIDGE_NETFILTER) {
    try {
      fx.exec(ns, 'sysctl', ['-q', '-w', `${key}=0`]);
    } catch {
      continue; // br_netfilter not loaded: bridged frames do not meet netfilter anyway
    }
  }
}

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
  /** The namespaces; `switch` is '' with the default bridged edges (the bridges are the client's and the server's eth0). */
  readonly ns = { client: '', server: '', ha1: '', ha2: '', switch: '' };
  readonly edges: LabEdges;

  /** Whether br_netfilter's hooks stay on in the bridges' namespaces (the host's default; an experiment: off unless asked). */
  readonly bridgeNetfilter: boolean;

  constructor(tag = 'lab', opts: { edges?: LabEdges; bridgeNetfilter?: boolean } = {}) {
    this.fx = new NamespaceFixture(tag);
    this.edges = opts.edges ?? 'bridged';
    this.bridgeNetfilter = opts.bridgeNetfilter ?? false;
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
    if (this.edges === 'switch') this.ns.switch = fx.add('sw');
    this.ns.client = fx.add('client');
    this.ns.server = fx.add('server');
    this.ns.ha1 = fx.add('ha1');
    this.ns.ha2 = fx.add('ha2');
    // Where each switch's bridge lives and what it is called there.
    const bridges = this.edges === 'switch'
      ? { lan: { ns: this.ns.switch, name: 'brlan' }, wan: { ns: this.ns.switch, name: 'brwan' } }
      : { lan: { ns: this.ns.client, name: 'eth0' }, wan: { ns: this.ns.server, name: 'eth0' } };
    for (const { ns, name } of Object.values(bridges)) {
      fx.exec(ns, 'ip', ['link', 'add', name, 'type', 'bridge']);
      fx.exec(ns, 'ip', ['link', 'set', name, 'up']);
      if (!this.bridgeNetfilter) offBridgeNetfilter(fx, ns);
    }
    const port = (ns: string, ifname: string, cidr: string, swPort: string, side: 'lan' | 'wan') => {
      const bridge = bridges[side];
      fx.link(ns, ifname, cidr, bridge.ns, swPort, undefined);
      fx.exec(bridge.ns, 'ip', ['link', 'set', swPort, 'master', bridge.name]);
    };
    if (this.edges === 'switch') {
      port(this.ns.client, 'eth0', `${LAB.client}/24`, 'client', 'lan');
      port(this.ns.server, 'eth0', `${LAB.server}/24`, 'server', 'wan');
    } else {
      fx.exec(this.ns.client, 'ip', ['addr', 'add', `${LAB.client}/24`, 'dev', 'eth0']);
      fx.exec(this.ns.server, 'ip', ['addr', 'add', `${LAB.server}/24`, 'dev', 'eth0']);
    }
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
      port(ns, 'lan', `${a.lan}/24`, `${name}lan`, 'lan');
      port(ns, 'wan', `${a.wan}/24`, `${name}wan`, 'wan');
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
