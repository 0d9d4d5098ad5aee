// Counters of the linux engine on the real kernel (root): per-rule firewall counters (nft named
// counters) move when real connections hit a rule and survive the edit of another rule; conntracks
// by state and the virtual services' tcpstat follow real connections opened and closed from the
// conntrack events, without a dump of the table at read time (the engine counts its dumps); a
// backup counts from its own writes; lost events are counted and trigger a re-seed.
import { expect } from 'chai';
import type { ConntrackEntry, VrfDataplaneConfig } from '../../fastpath/engine.js';
import { LinuxEngine } from '../../fastpath/linux/linux-engine.js';
import { STATES_PER_PROTO } from '../../fastpath/soft/conntrack-table.js';
import { JsonLines, NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { routedPath, TCP_LOAD } from './routed-path.js';

const TCP_ESTABLISHED = 0 * STATES_PER_PROTO + 2;

function vrfConfig(rules: Record<string, unknown>[]): VrfDataplaneConfig {
  return {
    name: 'main',
    conntrackMax: 1 << 20,
    networkProfiles: [{ name: 'mirrored', type: 'tcp-fast-path', 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': true } }],
    json: {
      name: 'main',
      'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, rule: rules },
      'tandem-virtual-service:virtual-service': [{
        name: 'web', vip: '10.9.9.9', port: 80, protocol: 'tcp', persistence: 'none', 'network-profile': 'mirrored',
        'pool-member': [{ address: '10.77.1.2', port: 7301, weight: 1 }],
      }],
      // Closed connections expire within a second.
      'tandem-conntrack:network-stack': { 'fast-path': { conntrack: { timeouts: {
        tcp: { 'syn-sent': 120, 'syn-recv': 60, established: 7200, 'fin-wait': 1, 'close-wait': 1, 'last-ack': 1, 'time-wait': 1, close: 1, undefined: 10 },
        udp: 120, icmp: 30,
      } } } },
    },
  };
}

const RULES = [
  { name: 'to-7300', protocol: 'tcp', 'destination-port': { start: 7300 }, action: 'accept' },
  { name: 'deny-7302', protocol: 'tcp', 'destination-port': { start: 7302 }, action: 'drop' },
];

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('linux: live counters of the linux engine', function () {
  this.timeout(90_000);
  const fx = new NamespaceFixture('lc');
  let client = '';
  let router = '';
  let backupNs = '';
  const engines: LinuxEngine[] = [];

  before(async function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ({ client, router } = await routedPath(fx, [7300, 7301, 7302]));
    backupNs = fx.add('bak');
  });

  after(async () => {
    for (const e of engines) await e.close();
    await fx.cleanup();
  });

  async function engineOn(ns: string, options: { eventBufferBytes?: number } = {}): Promise<LinuxEngine> {
    const engine = new LinuxEngine({ namespaceOf: () => ns, workers: 2, ...options });
    engines.push(engine);
    const cfg = vrfConfig(RULES);
    await engine.prepareVrf(cfg);
    await engine.applyVrf('main', cfg);
    return engine;
  }

  async function connect(address: string, port: number, count: number, timeoutMs = 3000) {
    const proc = fx.spawn(client, process.execPath, [TCP_LOAD, 'client', address, String(port), String(count), String(timeoutMs)]);
    const lines = new JsonLines(proc);
    const ready = await lines.next((l) => l.ready === true, timeoutMs + 20_000);
    return { proc, lines, connected: ready.connected as number };
  }

  /** Conntracks of the VIP in the kernel, as conntrack(8) lists them. */
  function kernelVipConntracks(ns: string): number {
    return fx.exec(ns, 'conntrack', ['-L', '-p', 'tcp', '--orig-dst', '10.9.9.9']).split('\n').filter((l) => l.includes('dport=80 ')).length;
  }

  it('per-rule firewall counters move with real connections and survive the edit of another rule', async () => {
    const master = await engineOn(router);
    const ok = await connect('10.77.1.2', 7300, 3);
    expect(ok.connected).to.equal(3);
    const denied = await connect('10.77.1.2', 7302, 2, 1000);
    expect(denied.connected).to.equal(0);
    const d1 = await master.counterDetail('main');
    const rule = (name: string) => d1.firewall.rules.find((r) => r[0] === name);
    expect(rule('to-7300')?.[1]).to.be.at.least(3);
    expect(rule('to-7300')?.[2]).to.equal(0);
    expect(rule('deny-7302')?.[1]).to.equal(0);
    expect(rule('deny-7302')?.[2]).to.be.at.least(2);
    expect(d1.counters.dropsFirewall).to.equal(rule('deny-7302')?.[2]);
    // Edit deny-7302 (now port 7303) and add a rule: to-7300 keeps its count, the edited rule starts again.
    const edited = vrfConfig([RULES[0] as Record<string, unknown>, { ...RULES[1], 'destination-port': { start: 7303 } },
      { name: 'extra', protocol: 'udp', 'destination-port': { start: 53 }, action: 'accept' }]);
    await master.prepareVrf(edited);
    await master.applyVrf('main', edited);
    const d2 = await master.counterDetail('main');
    expect(d2.firewall.rules.find((r) => r[0] === 'to-7300')?.[1]).to.equal(rule('to-7300')?.[1]);
    expect(d2.firewall.rules.find((r) => r[0] === 'deny-7302')).to.deep.equal(['deny-7302', 0, 0]);
    // The edited rule counts again from 0; new connections through to-7300 add to the kept count.
    const more = await connect('10.77.1.2', 7300, 2);
    expect(more.connected).to.equal(2);
    const d3 = await master.counterDetail('main');
    expect(d3.firewall.rules.find((r) => r[0] === 'to-7300')?.[1]).to.be.at.least((rule('to-7300')?.[1] ?? 0) + 2);
    // The default action (accept) counted connections no rule matched? None were made yet.
    ok.proc.stdin?.end();
    more.proc.stdin?.end();
    await master.applyVrf('main', vrfConfig(RULES)); // back to the original rules for the next tests
  });

  it('conntracks by state and tcpstat follow connections opened and closed, with no dump at read time', async () => {
    const master = engines[0] as LinuxEngine;
    await until(() => kernelVipConntracks(router) === 0, 'no VIP conntrack left');
    const dumpsBefore = (await master.counterDetail('main')).tableDumps;
    const tcpEstablished = (await master.counterDetail('main')).byState[TCP_ESTABLISHED] as number;
    const c = await connect('10.9.9.9', 80, 25);
    expect(c.connected).to.equal(25);
    await until(async () => (await master.virtualServiceStats('main')).get('web')?.mirrorConnListOnActive === 25, '25 established at the VIP');
    const stats = (await master.virtualServiceStats('main')).get('web');
    expect(stats).to.deep.equal({ connections: 25, mirrorConnListOnActive: 25, mirroredConnectionsOnStandby: 0 });
    expect(kernelVipConntracks(router)).to.equal(25);
    const open = await master.counterDetail('main');
    expect(open.byState[TCP_ESTABLISHED]).to.equal(tcpEstablished + 25);
    // Closed: the FIN exchange takes them out of established at once (update events). They leave
    // the table when the kernel's garbage collector reaps them after their timeout (up to a minute
    // later: until then the kernel counts them too); conntrack -D ends them now (destroy events).
    c.proc.stdin?.write('close\n');
    await c.lines.next((l) => typeof l.closed === 'number');
    await until(async () => (await master.virtualServiceStats('main')).get('web')?.mirrorConnListOnActive === 0, 'none established');
    try {
      fx.exec(router, 'conntrack', ['-D', '-p', 'tcp', '--orig-dst', '10.9.9.9']);
    } catch {
      // all reaped already (conntrack exits 1 when it deletes nothing)
    }
    await until(async () => (await master.virtualServiceStats('main')).get('web')?.connections === 0, 'all destroyed');
    expect(kernelVipConntracks(router)).to.equal(0);
    const closed = await master.counterDetail('main');
    expect(closed.byState[TCP_ESTABLISHED]).to.equal(tcpEstablished);
    // Every read above came from the live counts: not one dump of the kernel table.
    expect(closed.tableDumps).to.equal(dumpsBefore);
    expect(closed.eventsLost).to.equal(0);
  });

  it('a backup counts from its own writes; after the switch to master, from the events', async () => {
    const backup = await engineOn(backupNs);
    await backup.setRole('main', 'backup');
    const base: ConntrackEntry = {
      vrf: 'main', state: 'established', timeout: 3000, alg: false, establishedAt: 1, lastActivity: 1,
      orig: { proto: 'tcp', src: '10.1.0.9', dst: '10.9.9.9', sport: 5000, dport: 80 },
      reply: { proto: 'tcp', src: '10.77.1.2', dst: '10.1.0.9', sport: 7301, dport: 5000 },
    };
    const entries = Array.from({ length: 40 }, (_, i) => ({ ...base, orig: { ...base.orig, sport: 5000 + i }, reply: { ...base.reply, dport: 5000 + i } }));
    await until(async () => (await backup.counterDetail('main')).reseeds >= 1, 'the re-seed of the switch to backup');
    const dumps = (await backup.counterDetail('main')).tableDumps;
    expect(await backup.upsert(entries)).to.equal(40);
    expect((await backup.virtualServiceStats('main')).get('web')).to.deep.equal({ connections: 40, mirrorConnListOnActive: 0, mirroredConnectionsOnStandby: 40 });
    expect(await backup.upsert(entries.slice(0, 10))).to.equal(10); // updates count once
    expect(await backup.remove('main', entries.slice(30).map((e) => e.orig))).to.equal(10);
    expect((await backup.virtualServiceStats('main')).get('web')).to.deep.equal({ connections: 30, mirrorConnListOnActive: 0, mirroredConnectionsOnStandby: 30 });
    expect((await backup.counterDetail('main')).tableDumps).to.equal(dumps);
    expect(kernelVipConntracks(backupNs)).to.equal(30);
    await backup.setRole('main', 'master');
    expect((await backup.virtualServiceStats('main')).get('web')).to.deep.equal({ connections: 30, mirrorConnListOnActive: 30, mirroredConnectionsOnStandby: 0 });
    // Now keyed by the kernel's ids: a delete by the kernel is a destroy event.
    fx.exec(backupNs, 'conntrack', ['-D', '-p', 'tcp', '--orig-dst', '10.9.9.9', '--orig-port-src', '5000']);
    await until(async () => (await backup.virtualServiceStats('main')).get('web')?.connections === 29, 'the destroy event counted');
  });

  it('counts lost conntrack events and counts the table again from a dump', async () => {
    await engines[0]?.applyVrf('main', undefined);
    const small = await engineOn(router, { eventBufferBytes: 4096 });
    const before = await small.counterDetail('main');
    const c = await connect('10.9.9.9', 80, 400, 5000);
    expect(c.connected).to.equal(400);
    await until(async () => (await small.counterDetail('main')).eventsLost > 0, 'an overrun of the 4 KB event buffer');
    // After the re-seed (and the events after it) the counts are the kernel's again.
    await until(async () => (await small.virtualServiceStats('main')).get('web')?.connections === kernelVipConntracks(router), 'counts equal to the kernel table');
    const after = await small.counterDetail('main');
    expect(after.reseeds).to.be.greaterThan(before.reseeds);
    expect(after.tableDumps).to.be.greaterThan(before.tableDumps);
    expect((await small.virtualServiceStats('main')).get('web')?.connections).to.equal(400);
    c.proc.stdin?.end();
  });
});
