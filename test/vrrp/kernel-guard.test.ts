// The backup guard follows keepalived in the kernel, with no dataplane engine at all: a router
// namespace holds the guard chain exactly as a backup's table renders it (backup-guard.ts) and the
// BACKUP routing rule the engine puts in (kernel-role-rules.ts); its keepalived (run by a
// VrrpController with the rendered keepalived.conf) and a peer's keepalived elect a master on a
// shared LAN. Nothing ever touches the router's nft table after it is loaded, so whatever forwards
// or drops is keepalived's own switch: UDP through the router (IPv4 and IPv6) is dropped while it
// is backup, passes as soon as it is master, is dropped again when it goes back to backup, and a
// keepalived SIGKILLed as master does not leave the guard open (the controller removes its rule).
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { HaGroups } from '../../ha/ha-groups.js';
import { readVrrpConfigs, type VrfVrrpConfig } from '../../ha/vrrp/keepalived-config.js';
import { VrrpController, type VrrpInstanceEvent } from '../../ha/vrrp/vrrp-controller.js';
import { backupGuardLines } from '../../fastpath/linux/backup-guard.js';
import { ensureBackupRules, GUARD_TABLE, masterRulePresent } from '../../fastpath/linux/kernel-role-rules.js';
import { killKeepalived, requireRoot, run, waitUntil } from './vrrp-namespaces.js';

const ADVERT_CS = 20;
const GROUP = 'gateway';

// One datagram to the server's echo, answered or not within 0.5 s; fresh socket each time.
const PROBE = `
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
s.sendto(b'probe', (addr, 7777))
try:
    s.recvfrom(100); print('answered')
except socket.timeout:
    print('lost')
`;
// Echo server, dual stack, ends by itself after 120 s.
const ECHO = `
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', 7777)); s.settimeout(1)
end = time.time() + 120
while time.time() < end:
    try:
        d, a = s.recvfrom(100); s.sendto(d, a)
    except socket.timeout:
        pass
`;

interface Node {
  ns: string;
  groups: HaGroups;
  controller: VrrpController;
  events: VrrpInstanceEvent[];
}

describe('backup guard lifted and restored by keepalived in the kernel, without the agent (root)', function () {
  this.timeout(90_000);
  const tag = randomBytes(3).toString('hex');
  const ns = { client: `tkg-${tag}-c`, router: `tkg-${tag}-r`, peer: `tkg-${tag}-p`, server: `tkg-${tag}-s` };
  const net = 10 + (randomBytes(1)[0]! % 200);
  const lan = `10.${net}.1`;
  const wan = `10.${net}.2`;
  const lan6 = `fd${net.toString(16).padStart(2, '0')}:1`;
  const wan6 = `fd${net.toString(16).padStart(2, '0')}:2`;
  const vip = `${lan}.254`;
  const created: string[] = [];
  let echo: ChildProcess | undefined;
  let router: Node;
  let peer: Node;

  function vrrpConfig(vrf: string, priority: number): VrfVrrpConfig[] {
    return readVrrpConfigs({
      'tandem-vrf:vrf': [{
        name: vrf,
        vrrp: { enabled: true },
        interface: { vrrp: [{ name: 'lan', 'link-interface': 'lan', vrid: 51, priority, 'virtual-address': [vip], 'advert-interval': ADVERT_CS, preempt: true, 'ha-group': GROUP }] },
        'tandem-ha-fp-conntrack:ha-fp-conntrack': { 'listen-ha-group': GROUP },
      }],
    });
  }

  function node(name: string): Node {
    const groups = new HaGroups();
    groups.apply([{ name: GROUP }]);
    // A keepalived killed here comes back only after 4 s: the test looks at what it left first.
    const controller = new VrrpController(groups, { process: { backoffMinMs: 4000, backoffMaxMs: 4000, stopTimeoutMs: 5000 } });
    const events: VrrpInstanceEvent[] = [];
    controller.onInstanceState((ev) => events.push(ev));
    return { ns: name, groups, controller, events };
  }

  function reported(n: Node, state: string, since: number): boolean {
    return n.events.slice(since).some((e) => e.state === state);
  }

  function probe(addr: string): string {
    return run('ip', ['netns', 'exec', ns.client, 'python3', '-c', PROBE, addr]).trim();
  }

  function backupDrops(): number {
    const out = JSON.parse(run('ip', ['netns', 'exec', ns.router, 'nft', '-j', 'list', 'counter', 'inet', 'tandem', 'backup_drops'])) as { nftables: { counter?: { packets: number } }[] };
    return out.nftables.find((e) => e.counter)?.counter?.packets ?? -1;
  }

  function guardChainThere(): boolean {
    return run('ip', ['netns', 'exec', ns.router, 'nft', 'list', 'table', 'inet', 'tandem']).includes('chain backup_guard');
  }

  function holdsVip(name: string): boolean {
    return run('ip', ['-n', name, '-4', 'addr', 'show', 'dev', 'lan']).includes(`${vip}/`);
  }

  async function kill(n: Node): Promise<void> {
    await killKeepalived(n.controller.keepalived(n.ns));
  }

  before(async function () {
    requireRoot(this);
    for (const n of Object.values(ns)) {
      run('ip', ['netns', 'add', n]);
      created.push(n);
      run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
    }
    // The LAN: a bridge in the client's namespace with the router's and the peer's `lan` on it.
    run('ip', ['-n', ns.client, 'link', 'add', 'sw', 'type', 'bridge']);
    for (const r of [ns.router, ns.peer]) {
      const port = r === ns.router ? 'p-r' : 'p-p';
      run('ip', ['-n', ns.client, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'lan', 'netns', r]);
      run('ip', ['-n', ns.client, 'link', 'set', port, 'master', 'sw', 'up']);
    }
    run('ip', ['-n', ns.router, 'link', 'add', 'wan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.server]);
    const addrs: [string, string, string][] = [
      [ns.client, 'sw', `${lan}.10/24`], [ns.client, 'sw', `${lan6}::10/64`],
      [ns.router, 'lan', `${lan}.1/24`], [ns.router, 'lan', `${lan6}::1/64`],
      [ns.peer, 'lan', `${lan}.2/24`],
      [ns.router, 'wan', `${wan}.1/24`], [ns.router, 'wan', `${wan6}::1/64`],
      [ns.server, 'eth0', `${wan}.2/24`], [ns.server, 'eth0', `${wan6}::2/64`],
    ];
    for (const [n, dev, a] of addrs) run('ip', ['-n', n, 'addr', 'add', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : [])]);
    for (const [n, dev] of [[ns.client, 'sw'], [ns.router, 'lan'], [ns.router, 'wan'], [ns.peer, 'lan'], [ns.server, 'eth0']] as const) run('ip', ['-n', n, 'link', 'set', dev, 'up']);
    // The client reaches the server through the router's own address: the guard alone decides.
    run('ip', ['-n', ns.client, 'route', 'add', `${wan}.0/24`, 'via', `${lan}.1`]);
    run('ip', ['-n', ns.client, '-6', 'route', 'add', `${wan6}::/64`, 'via', `${lan6}::1`]);
    run('ip', ['-n', ns.server, 'route', 'add', 'default', 'via', `${wan}.1`]);
    run('ip', ['-n', ns.server, '-6', 'route', 'add', 'default', 'via', `${wan6}::1`]);
    run('ip', ['netns', 'exec', ns.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // The router's table as a backup's: the guard chain and its counter, nothing else.
    await ensureBackupRules(ns.router);
    const table = ['table inet tandem {', '  counter backup_drops { }', ...backupGuardLines(), '}', ''].join('\n');
    const file = join(mkdtempSync(join(tmpdir(), 'tkg-')), 'table.nft');
    writeFileSync(file, table);
    try {
      run('ip', ['netns', 'exec', ns.router, 'nft', '-f', file]);
    } finally {
      rmSync(dirname(file), { recursive: true, force: true });
    }
    echo = spawn('ip', ['netns', 'exec', ns.server, 'python3', '-c', ECHO], { stdio: 'ignore' });
    router = node(ns.router);
    peer = node(ns.peer);
  });

  after(async function () {
    await router?.controller.close();
    await peer?.controller.close();
    if (echo?.pid !== undefined && echo.exitCode === null) echo.kill('SIGKILL');
    for (const n of created.splice(0)) {
      try {
        run('ip', ['netns', 'del', n]);
      } catch {
        // already gone
      }
    }
  });

  it('keepalived.conf of the instance that drives the VRF\'s group carries the master rule', async function () {
    expect(vrrpConfig(ns.router, 100)[0]?.instances[0]?.liftsGuard).to.equal(true);
    expect(await router.controller.check(vrrpConfig(ns.router, 100))).to.deep.equal([]);
  });

  it('as backup the router forwards nothing: the guard drops and counts', async function () {
    await peer.controller.apply(vrrpConfig(ns.peer, 200));
    await waitUntil('the peer is master', () => peer.groups.state(GROUP) === 'master');
    await router.controller.apply(vrrpConfig(ns.router, 100));
    await waitUntil('the router reports BACKUP', () => reported(router, 'BACKUP', 0));
    const before = backupDrops();
    expect(probe(`${wan}.2`)).to.equal('lost');
    expect(probe(`${wan6}::2`)).to.equal('lost');
    expect(backupDrops() - before).to.be.at.least(2);
    expect(await masterRulePresent(ns.router)).to.equal(false);
    expect(holdsVip(ns.router)).to.equal(false);
  });

  it('becomes master when the peer dies: keepalived lifts the guard, nobody touches the table, traffic passes', async function () {
    const since = router.events.length;
    await kill(peer);
    await waitUntil('the router holds the gateway address', () => holdsVip(ns.router));
    // The kernel's view already says master: keepalived added its rule before its gratuitous ARP.
    expect(await masterRulePresent(ns.router), 'master rule when the address is there').to.equal(true);
    const routes = run('ip', ['-n', ns.router, 'route', 'show', 'table', String(GUARD_TABLE)]) + run('ip', ['-n', ns.router, '-6', 'route', 'show', 'table', String(GUARD_TABLE)]);
    expect(routes).to.include('default dev lan').and.to.match(/default dev lan[^\n]*\n[\s\S]*default dev lan/);
    await waitUntil('the router reported MASTER', () => reported(router, 'MASTER', since));
    expect(guardChainThere(), 'the guard chain is still loaded').to.equal(true);
    const before = backupDrops();
    expect(probe(`${wan}.2`)).to.equal('answered');
    expect(probe(`${wan6}::2`)).to.equal('answered');
    expect(backupDrops(), 'no guard drop as master').to.equal(before);
  });

  it('goes back to backup when the peer returns with its higher priority: the guard is on again', async function () {
    const since = router.events.length;
    // The peer's controller restarts its keepalived (4 s back-off); priority 200 with preempt.
    await waitUntil('the router reports BACKUP', () => reported(router, 'BACKUP', since), 20_000);
    await waitUntil('the address left the router', () => !holdsVip(ns.router), 5000);
    expect(await masterRulePresent(ns.router)).to.equal(false);
    const before = backupDrops();
    expect(probe(`${wan}.2`)).to.equal('lost');
    expect(probe(`${wan6}::2`)).to.equal('lost');
    expect(backupDrops() - before).to.be.at.least(2);
  });

  it('a keepalived SIGKILLed as master leaves no open guard: its controller removes the rule', async function () {
    const since = router.events.length;
    await kill(peer);
    await waitUntil('the router is master again', () => reported(router, 'MASTER', since));
    expect(probe(`${wan}.2`)).to.equal('answered');
    await kill(router);
    // keepalived removes nothing when killed (its address stays until it restarts in 4 s).
    await waitUntil('the master rule is gone', async () => !(await masterRulePresent(ns.router)), 3000);
    expect(holdsVip(ns.router), 'the killed keepalived\'s address is still there').to.equal(true);
    expect(probe(`${wan}.2`)).to.equal('lost');
  });
});
