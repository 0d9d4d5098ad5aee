// The rendered nftables ruleset on the real kernel: client -- router -- server namespaces, the
// router's table applied with nft -f; real TCP connections are accepted, dropped, source-NATed to
// the pool's port blocks and destination-NATed to a virtual service's member.
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { parseVrfConfig, type SoftVrfConfig } from '../../fastpath/config/vrf-config.js';
import {
  applyRuleset, assignPortBlocks, checkRuleset, readCounters, renderRemoval, renderRuleset,
} from '../../fastpath/linux/nft-ruleset.js';
import { NftCounterSocket } from '../../fastpath/linux/nft-counter-socket.js';
import { ensureBackupRules } from '../../fastpath/linux/kernel-role-rules.js';
import { JsonLines, NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { routedPath, TCP_LOAD } from './routed-path.js';


function vrfJson(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'main',
    'tandem-firewall:firewall': {
      'default-action': 'accept',
      'drop-invalid': true,
      rule: [{ name: 'no-7100', protocol: 'tcp', 'destination-port': { start: 7100 }, action: 'drop' }],
    },
    'tandem-cg-nat:cg-nat': {
      pool: [{ name: 'pub', prefix: '192.0.2.0/30', 'port-range': { start: 1024, end: 65535 }, 'port-block-size': 512 }],
      rule: [{ name: 'subscribers', 'source-prefix': '10.1.0.0/24', pool: 'pub' }],
      logging: { allocation: false, destroy: false },
    },
    'tandem-virtual-service:virtual-service': [{
      name: 'web', vip: '10.9.9.9', port: 80, protocol: 'tcp', persistence: 'none',
      'pool-member': [{ address: '10.77.1.2', port: 7200, weight: 1 }],
    }],
    ...over,
  };
}

function config(over: Record<string, unknown> = {}): SoftVrfConfig {
  return parseVrfConfig(vrfJson(over), new Map(), 1 << 20);
}

describe('linux: nftables ruleset of a VRF', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture();
  let client = '';
  let router = '';
  const servers: ChildProcess[] = [];

  before(async function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    const path = await routedPath(fx, [7100, 7101, 7200]);
    ({ client, router } = path);
    servers.push(...path.servers);
  });

  after(async () => {
    await fx.cleanup();
  });

  async function connect(address: string, port: number, count: number, timeoutMs = 3000) {
    const proc = fx.spawn(client, process.execPath, [TCP_LOAD, 'client', address, String(port), String(count), String(timeoutMs)]);
    const lines = new JsonLines(proc);
    const ready = await lines.next((l) => l.ready === true, timeoutMs + 10_000);
    return { proc, lines, connected: ready.connected as number };
  }

  async function serverPeers(index: number): Promise<string[]> {
    const proc = servers[index];
    const lines = new JsonLines(proc);
    proc.stdin?.write('peers\n');
    return (await lines.next((l) => Array.isArray(l.peers))).peers as string[];
  }

  it('assigns every subscriber a fixed port block of the shared pool', () => {
    const blocks = assignPortBlocks(config()).get('subscribers') ?? [];
    expect(blocks).to.have.length(256);
    expect(blocks[2]).to.deep.equal({ subscriber: '10.1.0.2', address: '192.0.2.0', portStart: 2048, portEnd: 2559 });
    // 126 blocks of 512 ports per address: block 126 starts the second address.
    expect(blocks[126]).to.deep.include({ address: '192.0.2.1', portStart: 1024 });
    expect(() => assignPortBlocks(config({ 'tandem-cg-nat:cg-nat': {
      pool: [{ name: 'tiny', prefix: '192.0.2.0/32', 'port-range': { start: 1024, end: 2047 }, 'port-block-size': 512 }],
      rule: [{ name: 'subscribers', 'source-prefix': '10.1.0.0/24', pool: 'tiny' }],
    } }))).to.throw(/pool tiny has 2 free port blocks of 512 ports, the rule's 10.1.0.0\/24 needs 256/);
  });

  it('applies atomically, owning only its table', async () => {
    fx.exec(router, 'nft', ['add', 'table', 'inet', 'somebody_else']);
    await applyRuleset(router, renderRuleset(config(), 'master'));
    await applyRuleset(router, renderRuleset(config(), 'master')); // re-applying replaces, never duplicates
    const tables = fx.exec(router, 'nft', ['list', 'tables']);
    expect(tables).to.include('table inet somebody_else').and.to.include('table inet tandem');
    expect(fx.exec(router, 'nft', ['list', 'chain', 'inet', 'tandem', 'forward']).match(/rule no-7100/g)).to.have.length(1);
    // A broken script changes nothing: the previous ruleset stays.
    await checkRuleset(router, 'table inet tandem { chain c { nonsense } }').then(
      () => expect.fail('nft accepted nonsense'), (err: Error) => expect(err.message).to.match(/nft -c -f - \(namespace .*\) failed: .*Error/));
    expect(fx.exec(router, 'nft', ['list', 'tables'])).to.include('table inet tandem');
  });

  it('firewall: accepts and drops new connections by rule', async () => {
    await applyRuleset(router, renderRuleset(config(), 'master'));
    const before = await readCounters(router);
    const allowed = await connect('10.77.1.2', 7101, 3);
    expect(allowed.connected).to.equal(3);
    const denied = await connect('10.77.1.2', 7100, 2, 1000);
    expect(denied.connected).to.equal(0);
    const after = await readCounters(router);
    // Each rule and the default action count into a counter of their own.
    expect(after['fw_rule_no-7100']).to.be.greaterThan(before['fw_rule_no-7100'] ?? 0);
    expect(after.fw_default_accept).to.be.at.least((before.fw_default_accept ?? 0) + 3);
    allowed.proc.stdin?.end();
  });

  it('firewall counters: a reload keeps the counts of unchanged rules, resets an edited rule, deletes a removed one', async () => {
    const rules = (r2Port: number) => config({ 'tandem-firewall:firewall': {
      'default-action': 'drop', 'drop-invalid': true,
      rule: [
        { name: 'r1', protocol: 'tcp', 'destination-port': { start: 7101 }, action: 'accept' },
        { name: 'r2', protocol: 'tcp', 'destination-port': { start: r2Port }, action: 'drop' },
      ],
    } });
    const first = rules(7100);
    await applyRuleset(router, renderRuleset(first, 'master', config()));
    const c = await connect('10.77.1.2', 7101, 3);
    expect(c.connected).to.equal(3);
    c.proc.stdin?.end();
    expect((await connect('10.77.1.2', 7100, 1, 1000)).connected).to.equal(0);
    const counted = await readCounters(router);
    expect(counted.fw_rule_r1).to.be.at.least(3);
    expect(counted.fw_rule_r2).to.be.at.least(1);
    expect(counted['fw_rule_no-7100']).to.equal(undefined, 'the counter of a rule no longer configured is deleted');
    // Edit r2 only: r1 keeps its count, r2 starts from 0.
    const second = rules(7200);
    await applyRuleset(router, renderRuleset(second, 'master', first));
    const afterEdit = await readCounters(router);
    expect(afterEdit.fw_rule_r1).to.equal(counted.fw_rule_r1);
    expect(afterEdit.fw_rule_r2).to.equal(0);
    // The same ruleset again, and a switch to backup and back: nothing is reset.
    await applyRuleset(router, renderRuleset(second, 'master', second));
    await applyRuleset(router, renderRuleset(second, 'backup'));
    await applyRuleset(router, renderRuleset(second, 'master'));
    expect((await readCounters(router)).fw_rule_r1).to.equal(counted.fw_rule_r1);
    // The default action counts what no rule matched.
    expect((await connect('10.77.1.2', 7101 + 1000, 1, 1000)).connected).to.equal(0);
    expect((await readCounters(router)).fw_default_drop).to.be.at.least(1);
  });

  it('reads the counters over nf_tables netlink exactly as nft lists them (and none without the table)', async () => {
    const socket = new NftCounterSocket(router);
    try {
      const viaNft = await readCounters(router);
      expect(Object.keys(viaNft)).to.include.members(['backup_drops', 'invalid_drops', 'fw_default_accept', 'fw_rule_r1', 'fw_rule_r2']);
      expect(viaNft.fw_rule_r1).to.be.greaterThan(0);
      expect(await socket.read()).to.deep.equal(viaNft);
      // Concurrent reads are answered one after the other, each complete.
      const [a, b] = await Promise.all([socket.read(), socket.read()]);
      expect(a).to.deep.equal(viaNft);
      expect(b).to.deep.equal(viaNft);
      const empty = fx.add('empty');
      const none = new NftCounterSocket(empty);
      try {
        expect(await none.read()).to.deep.equal({});
      } finally {
        none.close();
      }
    } finally {
      socket.close();
    }
  });

  it('CG-NAT: the server sees the subscriber as the pool address and a port of its block', async () => {
    await applyRuleset(router, renderRuleset(config(), 'master'));
    const c = await connect('10.77.1.2', 7101, 5);
    expect(c.connected).to.equal(5);
    // The server may accept a moment after the client sees its connection up: ask again (bounded).
    let peers: string[] = [];
    for (let i = 0; i < 50 && peers.length < 5; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      peers = (await serverPeers(1)).filter((p) => p.startsWith('192.0.2.'));
    }
    expect(peers.length).to.be.at.least(5);
    for (const peer of peers) {
      const [address, rest] = peer.split(':');
      const port = Number(rest.split('>')[0]);
      expect(address).to.equal('192.0.2.0');
      expect(port).to.be.within(2048, 2559);
    }
    c.proc.stdin?.end();
  });

  it('CG-NAT translates forwarded traffic only: the router\'s own connections keep its address', async () => {
    await applyRuleset(router, renderRuleset(config(), 'master'));
    // The router's lan address 10.1.0.1 lies in the subscriber prefix 10.1.0.0/24.
    const own = fx.spawn(router, process.execPath, [TCP_LOAD, 'client', '10.77.1.2', '7101', '2', '3000', '10.1.0.1']);
    const lines = new JsonLines(own);
    expect((await lines.next((l) => l.ready === true)).connected).to.equal(2);
    let peers: string[] = [];
    for (let i = 0; i < 50 && peers.length < 2; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      peers = (await serverPeers(1)).filter((p) => p.startsWith('10.1.0.1:'));
    }
    expect(peers).to.have.length(2);
    own.stdin?.end();
  });

  it('virtual service: connections to the vip reach the pool member', async () => {
    await applyRuleset(router, renderRuleset(config(), 'master'));
    const c = await connect('10.9.9.9', 80, 4);
    expect(c.connected).to.equal(4);
    c.proc.stdin?.write('ping 3000\n');
    expect((await c.lines.next((l) => l.ping === true)).ok).to.equal(4);
    let atMember: string[] = [];
    for (let i = 0; i < 50 && atMember.length < 4; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      atMember = (await serverPeers(2)).filter((p) => p.endsWith('>7200'));
    }
    expect(atMember.length).to.be.at.least(4);
    c.proc.stdin?.end();
  });

  it('virtual service with a snat-ip: the member sees the SNAT IP, not the client (and not CG-NAT)', async () => {
    const withSnat = config({ 'tandem-virtual-service:virtual-service': [{
      name: 'web', vip: '10.9.9.9', port: 80, protocol: 'tcp', persistence: 'none', 'snat-ip': '10.66.0.1',
      'pool-member': [{ address: '10.77.1.2', port: 7200, weight: 1 }],
    }] });
    await applyRuleset(router, renderRuleset(withSnat, 'master'));
    fx.exec(router, 'conntrack', ['-F']);
    const c = await connect('10.9.9.9', 80, 3);
    expect(c.connected).to.equal(3);
    c.proc.stdin?.write('ping 3000\n');
    expect((await c.lines.next((l) => l.ping === true)).ok).to.equal(3);
    let atMember: string[] = [];
    for (let i = 0; i < 50 && atMember.length < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      atMember = (await serverPeers(2)).filter((p) => p.startsWith('10.66.0.1:'));
    }
    expect(atMember).to.have.length(3);
    c.proc.stdin?.end();
  });

  it('drops mid-stream packets of connections it does not track', async () => {
    await applyRuleset(router, renderRuleset(config(), 'master'));
    const c = await connect('10.77.1.2', 7101, 3);
    c.proc.stdin?.write('ping 3000\n');
    expect((await c.lines.next((l) => l.ping === true)).ok).to.equal(3);
    fx.exec(router, 'conntrack', ['-F']); // the router forgets the connections
    const before = (await readCounters(router)).invalid_drops ?? 0;
    c.proc.stdin?.write('ping 1500\n');
    expect((await c.lines.next((l) => l.ping === true)).ok).to.equal(0);
    expect((await readCounters(router)).invalid_drops).to.be.greaterThan(before);
    c.proc.stdin?.end();
  });

  it('backup role: forwards nothing, before conntrack sees it', async () => {
    // The engine puts the guard's BACKUP routing rule in before a backup's table (linux-engine.ts
    // guardForm): without it the guard's marked FIB lookup would find the ordinary routes.
    await ensureBackupRules(router);
    await applyRuleset(router, renderRuleset(config(), 'backup'));
    fx.exec(router, 'conntrack', ['-F']);
    const c = await connect('10.77.1.2', 7101, 2, 1000);
    expect(c.connected).to.equal(0);
    expect((await readCounters(router)).backup_drops).to.be.greaterThan(0);
    expect(fx.exec(router, 'conntrack', ['-C']).trim()).to.equal('0');
    // Back to master: traffic flows again.
    await applyRuleset(router, renderRuleset(config(), 'master'));
    const again = await connect('10.77.1.2', 7101, 2);
    expect(again.connected).to.equal(2);
    again.proc.stdin?.end();
  });

  it('removes its table and only it', async () => {
    await applyRuleset(router, renderRemoval());
    await applyRuleset(router, renderRemoval()); // absent table: still fine
    const tables = fx.exec(router, 'nft', ['list', 'tables']);
    expect(tables).to.not.include('table inet tandem');
    expect(tables).to.include('table inet somebody_else');
  });
});
