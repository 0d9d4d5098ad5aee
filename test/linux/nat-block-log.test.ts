// CG-NAT port block logs on the linux engine for blocks inherited through sync: a backup holds
// synchronised conntracks NATed into a subscriber's block; on the switch to master it logs the
// block as allocated (inherited), and when the last of those conntracks ends, its release.
import { expect } from 'chai';
import type { ConntrackEntry, VrfDataplaneConfig } from '../../fastpath/engine.js';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { LinuxEngine } from '../../fastpath/linux/linux-engine.js';
import type { LinuxNatBlockLog } from '../../fastpath/linux/nat-block-log.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

function vrfConfig(): VrfDataplaneConfig {
  return {
    name: 'main',
    conntrackMax: 1 << 20,
    json: {
      name: 'main',
      'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, rule: [] },
      'tandem-cg-nat:cg-nat': {
        pool: [{ name: 'pub', prefix: '192.0.2.0/30', 'port-range': { start: 1024, end: 65535 }, 'port-block-size': 512 }],
        rule: [{ name: 'subscribers', 'source-prefix': '10.1.0.0/24', pool: 'pub' }],
        logging: { allocation: true, destroy: true },
      },
      'tandem-conntrack:network-stack': { 'fast-path': { conntrack: { timeouts: {
        tcp: { 'syn-sent': 120, 'syn-recv': 60, established: 7200, 'fin-wait': 120, 'close-wait': 60, 'last-ack': 30, 'time-wait': 120, close: 10, undefined: 10 },
        udp: 120, icmp: 30,
      } } } },
    },
  };
}

/** Subscriber 10.1.0.2 has block 2 of the pool: 192.0.2.0, ports 2048-2559 (nft-ruleset.ts). */
function synced(i: number): ConntrackEntry {
  return {
    vrf: 'main',
    orig: { proto: 'tcp', src: '10.1.0.2', dst: '10.77.1.2', sport: 30000 + i, dport: 443 },
    reply: { proto: 'tcp', src: '10.77.1.2', dst: '192.0.2.0', sport: 443, dport: 2048 + i },
    state: 'established', timeout: 7200, alg: false, establishedAt: 1, lastActivity: 1, synced: true,
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('linux: CG-NAT logs of port blocks inherited through sync', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture();
  let ns = '';
  let engine: LinuxEngine | undefined;
  let other: ConntrackNetlink | undefined;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ns = fx.add('nbl');
  });

  after(async () => {
    other?.close();
    await engine?.close();
    await fx.cleanup();
  });

  it('logs the inherited block at the switch to master and its release when its conntracks end', async () => {
    engine = new LinuxEngine({ namespaceOf: () => ns, workers: 2 });
    const logs: LinuxNatBlockLog[] = [];
    engine.onNatLog((l) => logs.push(l));
    const cfg = vrfConfig();
    await engine.prepareVrf(cfg);
    await engine.applyVrf('main', cfg);
    await engine.setRole('main', 'backup');
    const entries = [synced(0), synced(1), synced(2)];
    expect(await engine.upsert(entries)).to.equal(3);
    expect(logs, 'a backup logs nothing').to.deep.equal([]);

    await engine.setRole('main', 'master');
    // Inherited blocks are logged by the release that follows the switch (after forwarding started).
    await engine.releasedSynced('main');
    const block = { pool: 'pub', subscriber: '10.1.0.2', address: '192.0.2.0', portStart: 2048, portEnd: 2559 };
    expect(logs).to.have.length(1);
    expect(logs[0]).to.deep.include({ event: 'allocation', vrf: 'main', inherited: true, ...block });

    // The conntracks end (deleted from another socket, as the kernel's expiry would report them).
    other = new ConntrackNetlink({ namespace: ns });
    await other.delete([entries[0]!.orig, entries[1]!.orig]);
    await new Promise((r) => setTimeout(r, 300));
    expect(logs.filter((l) => l.event === 'destroy'), 'the block is still in use').to.have.length(0);
    await other.delete([entries[2]!.orig]);
    await until(() => logs.some((l) => l.event === 'destroy'), 'the release log');
    expect(logs.filter((l) => l.event === 'destroy')).to.have.length(1);
    expect(logs.find((l) => l.event === 'destroy')).to.deep.include({ vrf: 'main', ...block });
  });
});
