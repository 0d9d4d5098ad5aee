// The linux engine on the real kernel: a VRF configured into a router namespace reports the
// conntracks of real TCP connections (new, established, destroy; dump); a second engine as backup
// holds them (written, not expiring, no traffic) and releases them on the switch to master.
import { expect } from 'chai';
import type { ConntrackEntry, ConntrackEvent, VrfDataplaneConfig } from '../../fastpath/engine.js';
import { BACKUP_TIMEOUT_S, LinuxEngine, SYNCED_MARK } from '../../fastpath/linux/linux-engine.js';
import { JsonLines, NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { routedPath, TCP_LOAD } from './routed-path.js';


function vrfConfig(): VrfDataplaneConfig {
  return {
    name: 'main',
    conntrackMax: 1 << 20,
    networkProfiles: [{ name: 'mirrored', type: 'tcp-fast-path', 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': true } }],
    json: {
      name: 'main',
      'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, rule: [] },
      'tandem-cg-nat:cg-nat': {
        pool: [{ name: 'pub', prefix: '192.0.2.0/30', 'port-range': { start: 1024, end: 65535 }, 'port-block-size': 512 }],
        rule: [{ name: 'subscribers', 'source-prefix': '10.1.0.0/24', pool: 'pub' }],
      },
      'tandem-virtual-service:virtual-service': [{
        name: 'web', vip: '10.9.9.9', port: 80, protocol: 'tcp', persistence: 'none', 'network-profile': 'mirrored',
        'pool-member': [{ address: '10.77.1.2', port: 7301, weight: 1 }],
      }],
      'tandem-conntrack:network-stack': { 'fast-path': { conntrack: { timeouts: {
        tcp: { 'syn-sent': 120, 'syn-recv': 60, established: 7200, 'fin-wait': 120, 'close-wait': 60, 'last-ack': 30, 'time-wait': 120, close: 10, undefined: 10 },
        udp: 120, icmp: 30,
      } } } },
    },
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('linux: the linux engine', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture();
  let client = '';
  let router = '';
  let backupNs = '';
  let master: LinuxEngine | undefined;
  let backup: LinuxEngine | undefined;
  const events: ConntrackEvent[] = [];

  before(async function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ({ client, router } = await routedPath(fx, [7300, 7301]));
    backupNs = fx.add('bak');
    master = new LinuxEngine({ namespaceOf: () => router, workers: 4 });
    backup = new LinuxEngine({ namespaceOf: () => backupNs, workers: 4 });
    master.onEvent((ev) => events.push(ev));
  });

  after(async () => {
    await master?.close();
    await backup?.close();
    await fx.cleanup();
  });

  async function connect(address: string, port: number, count: number) {
    const proc = fx.spawn(client, process.execPath, [TCP_LOAD, 'client', address, String(port), String(count), '3000']);
    const lines = new JsonLines(proc);
    const ready = await lines.next((l) => l.ready === true);
    return { proc, lines, connected: ready.connected as number };
  }

  it('refuses a VRF whose namespace does not exist, and bad configuration, at prepare', async () => {
    const engine = new LinuxEngine({ namespaceOf: () => `${fx.prefix}-nowhere` });
    await engine.prepareVrf(vrfConfig()).then(() => expect.fail('prepared'), (err: Error) => expect(err.message).to.match(/namespace .*-nowhere does not exist/));
    const bad = vrfConfig();
    (bad.json['tandem-cg-nat:cg-nat'] as { rule: { 'source-prefix': string }[] }).rule[0]['source-prefix'] = '10.0.0.0/8';
    await master!.prepareVrf(bad).then(() => expect.fail('prepared'), (err: Error) => expect(err.message).to.match(/holds 16777216 subscribers/));
    await engine.close();
  });

  it('applies a VRF: its table and the conntrack settings of its namespace', async () => {
    await master!.prepareVrf(vrfConfig());
    await master!.applyVrf('main', vrfConfig());
    expect(fx.exec(router, 'nft', ['list', 'tables'])).to.include('table inet tandem');
    expect(fx.exec(router, 'sysctl', ['-n', 'net.netfilter.nf_conntrack_tcp_timeout_established']).trim()).to.equal('7200');
    expect(fx.exec(router, 'sysctl', ['-n', 'net.netfilter.nf_conntrack_tcp_loose']).trim()).to.equal('0');
    expect(master!.role('main')).to.equal('master');
  });

  it('reports new and established conntracks of real connections, NATed, with their virtual service', async () => {
    events.length = 0;
    const plain = await connect('10.77.1.2', 7300, 5);
    const viaVip = await connect('10.9.9.9', 80, 3);
    expect(plain.connected + viaVip.connected).to.equal(8);
    await until(() => events.filter((e) => e.kind === 'established').length >= 8, '8 established events');
    const established = events.filter((e) => e.kind === 'established').map((e) => e.entry);
    const toServer = established.filter((e) => e.orig.dport === 7300);
    expect(toServer).to.have.length(5);
    for (const e of toServer) {
      expect(e.reply.dst).to.equal('192.0.2.0'); // SNAT to the pool's shared address
      expect(e.reply.dport).to.be.within(2048, 2559); // in 10.1.0.2's port block
      expect(e.state).to.equal('established');
      expect(e.establishedAt).to.be.greaterThan(0);
      expect(e.virtualService).to.equal(undefined);
    }
    const vs = established.filter((e) => e.orig.dport === 80);
    expect(vs).to.have.length(3);
    for (const e of vs) {
      expect(e.virtualService).to.equal('web');
      expect(e.noSync).to.equal(undefined); // connection-mirror true
      expect(e.reply).to.deep.include({ src: '10.77.1.2', sport: 7301 });
    }
    expect(events.filter((e) => e.kind === 'new').length).to.be.at.least(8);
    for (const e of events) expect(e.worker).to.be.within(0, 3);
    plain.proc.stdin?.end();
    viaVip.proc.stdin?.end();
  });

  it('holds synced conntracks on a backup without expiry and without events, then releases them as master', async () => {
    const c = await connect('10.77.1.2', 7300, 20);
    expect(c.connected).to.equal(20);
    const entries: ConntrackEntry[] = [];
    await master!.dump('main', (batch) => { entries.push(...batch.filter((e) => e.orig.dport === 7300 && e.state === 'established')); });
    expect(entries.length).to.be.at.least(20);

    const cfg = vrfConfig();
    await backup!.prepareVrf(cfg);
    await backup!.applyVrf('main', cfg);
    await backup!.setRole('main', 'backup');
    expect(fx.exec(backupNs, 'nft', ['list', 'chain', 'inet', 'tandem', 'backup_guard'])).to.include('backup_drops" drop');
    const backupEvents: ConntrackEvent[] = [];
    backup!.onEvent((ev) => backupEvents.push(ev));
    expect(await backup!.upsert(entries)).to.equal(entries.length);
    const listed = fx.exec(backupNs, 'conntrack', ['-L', '-p', 'tcp', '--dport', '7300']).trim().split('\n');
    expect(listed).to.have.length(entries.length);
    for (const line of listed) {
      const timeout = Number(line.split(/\s+/)[2]);
      expect(timeout).to.be.greaterThan(BACKUP_TIMEOUT_S - 60);
      expect(line).to.match(/src=10\.77\.1\.2 dst=192\.0\.2\.0 sport=7300 dport=2[0-9]{3} /); // the NAT binding came along
      const mark = Number(/mark=(\d+)/.exec(line)?.[1]);
      expect(mark & SYNCED_MARK).to.not.equal(0);
      expect(mark & 0x7fffffff).to.be.within(7100, 7200); // the real timeout, kept for the switch
    }
    await until(() => backup!.counters('main').synced === entries.length, 'synced counter');
    expect(backupEvents).to.deep.equal([]);

    await backup!.setRole('main', 'master');
    // The release runs after forwarding started (setRole does not wait for it): wait for it here.
    expect(await backup!.releasedSynced('main')).to.equal(entries.length);
    // The switch touched only the guard chain: gone, the rest of the table as applied.
    const table = fx.exec(backupNs, 'nft', ['list', 'table', 'inet', 'tandem']);
    expect(table).to.not.include('backup_guard');
    expect(table).to.include('chain forward');
    const after = fx.exec(backupNs, 'conntrack', ['-L', '-p', 'tcp', '--dport', '7300']).trim().split('\n');
    expect(after).to.have.length(entries.length);
    for (const line of after) {
      expect(Number(line.split(/\s+/)[2])).to.be.within(7090, 7200); // the real timeout, from the switch (released ~1 s after it)
      expect(line).to.include('mark=0 ');
    }
    expect(backup!.counters('main').synced).to.equal(0);
    c.proc.stdin?.end();
  });

  it('applies the grace period of the failover policy', async () => {
    const e: ConntrackEntry = {
      vrf: 'main', state: 'established', timeout: 3000, alg: false, establishedAt: 1, lastActivity: 1,
      orig: { proto: 'tcp', src: '10.1.0.9', dst: '10.77.1.2', sport: 5555, dport: 7399 },
      reply: { proto: 'tcp', src: '10.77.1.2', dst: '192.0.2.3', sport: 7399, dport: 60000 },
    };
    await backup!.setRole('main', 'backup');
    backup!.setFailoverPolicy('main', { graceSeconds: { tcp: 100 } });
    const many = Array.from({ length: 50 }, (_, i) => ({ ...e, orig: { ...e.orig, sport: 5000 + i }, reply: { ...e.reply, dport: 60000 + i } }));
    expect(await backup!.upsert(many)).to.equal(50);
    await backup!.setRole('main', 'master');
    expect(await backup!.releasedSynced('main')).to.equal(50);
    const timeouts = fx.exec(backupNs, 'conntrack', ['-L', '-p', 'tcp', '--dport', '7399']).trim().split('\n').map((l) => Number(l.split(/\s+/)[2]));
    expect(timeouts).to.have.length(50);
    // Counted from the switch: the release (~1 s later, more under load) writes them shortened by the wait.
    for (const t of timeouts) expect(t).to.be.within(90, 3000);
    expect(new Set(timeouts).size).to.be.greaterThan(5); // dropped at random moments, not all at once
    expect(await backup!.remove('main', many.map((m) => m.orig))).to.equal(50);
  });

  it('removes a VRF: its table goes, the namespace stays', async () => {
    await backup!.applyVrf('main', undefined);
    expect(fx.exec(backupNs, 'nft', ['list', 'tables'])).to.not.include('table inet tandem');
    expect(() => backup!.role('main')).to.throw(/not configured/);
  });
});
