// ctnetlink access on the real kernel: conntracks of real TCP connections between two namespaces
// appear in dumps and events; conntracks written in a third namespace appear in `conntrack -L`.
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { ConntrackEventStream } from '../../fastpath/linux/conntrack-events.js';
import type { ConntrackNotification, ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { JsonLines, NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const TCP_LOAD = fileURLToPath(new URL('../../lab/tcp-load.js', import.meta.url));
// A ruleset that makes the namespace track connections (conntrack is enabled per namespace on use).
const TRACKING_RULESET = `table inet tandem_test {
  chain input { type filter hook input priority 0; ct state established,related accept; }
  chain postrouting { type nat hook postrouting priority 100; }
}`;

function clientTuples(count: number, base = 20000): ConntrackWrite[] {
  return Array.from({ length: count }, (_, i) => ({
    orig: { proto: 'tcp' as const, src: '10.1.0.5', dst: '192.168.50.9', sport: base + i, dport: 443 },
    // Source NAT to a shared pool address, as CG-NAT does.
    reply: { proto: 'tcp' as const, src: '192.168.50.9', dst: '192.168.60.1', sport: 443, dport: 40000 + i },
    state: 'established' as const,
    timeout: 3000,
    mark: 0x80000000 | 3000,
  }));
}

describe('linux: conntrack access through ctnetlink', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture();
  let client = '';
  let server = '';
  let third = '';
  let serverProc: ChildProcess | undefined;
  const sockets: { close(): void }[] = [];

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    client = fx.add('cli');
    server = fx.add('srv');
    third = fx.add('bak');
    fx.link(client, 'eth0', '10.77.0.1/24', server, 'eth0', '10.77.0.2/24');
    for (const ns of [server, third]) fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
  });

  after(async () => {
    for (const s of sockets.splice(0)) s.close();
    await fx.cleanup();
  });

  async function startServer(port: number): Promise<void> {
    serverProc = fx.spawn(server, process.execPath, [TCP_LOAD, 'server', '10.77.0.2', String(port)]);
    await new JsonLines(serverProc).next((l) => l.ready === true);
  }

  async function connectClients(port: number, count: number): Promise<{ proc: ChildProcess; lines: JsonLines }> {
    const proc = fx.spawn(client, process.execPath, [TCP_LOAD, 'client', '10.77.0.2', String(port), String(count)]);
    const lines = new JsonLines(proc);
    const ready = await lines.next((l) => l.ready === true);
    expect(ready.connected).to.equal(count);
    return { proc, lines };
  }

  it('dumps the conntracks of real TCP connections into the namespace', async () => {
    await startServer(7001);
    const { proc } = await connectClients(7001, 20);
    const nl = new ConntrackNetlink({ namespace: server });
    sockets.push(nl);
    const seen: { sport: number; state: string }[] = [];
    const total = await nl.dump((batch) => {
      for (const ct of batch) {
        if (ct.orig.proto === 'tcp' && ct.orig.dport === 7001 && ct.orig.src === '10.77.0.1') {
          seen.push({ sport: ct.orig.sport, state: ct.state });
          expect(ct.reply).to.deep.include({ src: '10.77.0.2', dst: '10.77.0.1', sport: 7001, dport: ct.orig.sport });
          expect(ct.timeout).to.be.greaterThan(0);
        }
      }
    });
    expect(total).to.be.at.least(20);
    expect(seen).to.have.length(20);
    expect(new Set(seen.map((s) => s.sport)).size).to.equal(20);
    expect(seen.every((s) => s.state === 'established')).to.equal(true);
    proc.stdin?.end();
  });

  it('reports new, update and destroy events', async () => {
    const events: ConntrackNotification[] = [];
    const sub = ConntrackEventStream.start((n) => { if (n.conntrack.orig.dport === 7002) events.push(n); }, () => undefined, {
      namespace: server,
    });
    sockets.push(sub);
    await startServer(7002);
    const { proc, lines } = await connectClients(7002, 3);
    proc.stdin?.write('ping 5000\n');
    expect((await lines.next((l) => l.ping === true)).ok).to.equal(3);
    const deadline = Date.now() + 5000;
    const established = () => events.filter((e) => e.kind === 'update' && e.conntrack.state === 'established').length;
    while (Date.now() < deadline && (events.filter((e) => e.kind === 'new').length < 3 || established() < 3)) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(events.filter((e) => e.kind === 'new')).to.have.length(3);
    expect(established()).to.be.at.least(3);
    // Deleting with the conntrack tool raises destroy events.
    fx.exec(server, 'conntrack', ['-D', '-p', 'tcp', '--dport', '7002']);
    while (Date.now() < deadline + 5000 && events.filter((e) => e.kind === 'destroy').length < 3) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const destroyed = events.filter((e) => e.kind === 'destroy').map((e) => e.conntrack.orig.sport).sort();
    const created = events.filter((e) => e.kind === 'new').map((e) => e.conntrack.orig.sport).sort();
    expect(destroyed).to.deep.equal(created);
    expect(sub.overruns).to.equal(0);
    proc.stdin?.end();
  });

  it('creates, updates and deletes conntracks with NAT in batches, as conntrack -L shows', async () => {
    const nl = new ConntrackNetlink({ namespace: third });
    sockets.push(nl);
    const writes = clientTuples(1500);
    const created = await nl.upsert(writes);
    expect(created.failures).to.deep.equal([]);
    expect(created.written).to.equal(1500);
    const listed = fx.exec(third, 'conntrack', ['-L', '-p', 'tcp', '--dport', '443']).trim().split('\n');
    expect(listed).to.have.length(1500);
    const first = listed.find((l) => l.includes('sport=20000 '));
    expect(first).to.match(/ESTABLISHED src=10\.1\.0\.5 dst=192\.168\.50\.9 sport=20000 dport=443 .*src=192\.168\.50\.9 dst=192\.168\.60\.1 sport=443 dport=40000 /);
    expect(first).to.match(/mark=2147486648/);
    expect(first).to.include('[ASSURED]');

    // Creating the same entries again updates them (new timeout and mark) instead of failing.
    const again = await nl.upsert(writes.map((w) => ({ ...w, state: 'fin-wait' as const, timeout: 50, mark: 7 })));
    expect(again.failures).to.deep.equal([]);
    expect(again.written).to.equal(1500);
    const updated = fx.exec(third, 'conntrack', ['-L', '-p', 'tcp', '--dport', '443', '--sport', '20001']).trim();
    expect(updated).to.match(/^tcp\s+6\s+(4\d|50) FIN_WAIT /);
    expect(updated).to.match(/mark=7 /);

    const dumped: number[] = [];
    await nl.dump((batch) => { for (const ct of batch) if (ct.orig.dport === 443) dumped.push(ct.reply.dport); });
    expect(dumped.sort((a, b) => a - b)).to.deep.equal(writes.map((w) => w.reply.dport));

    const removed = await nl.delete(writes.slice(0, 1000).map((w) => w.orig));
    expect(removed.written).to.equal(1000);
    expect(fx.exec(third, 'conntrack', ['-C']).trim()).to.equal('500');
    // Deleting what is not there is not an error, and does not count.
    const removedAgain = await nl.delete(writes.slice(0, 1000).map((w) => w.orig));
    expect(removedAgain).to.deep.equal({ written: 0, failures: [] });
  });

  it('receives every event of a burst of 20,000 new conntracks', async () => {
    const nl = new ConntrackNetlink({ namespace: third });
    sockets.push(nl);
    let created = 0;
    const reply = new Set<string>();
    const sub = ConntrackEventStream.start((n) => {
      if (n.kind === 'new' && n.conntrack.orig.dport === 8443) { created++; reply.add(`${n.conntrack.reply.dst}:${n.conntrack.reply.dport}`); }
    }, () => undefined, { namespace: third });
    sockets.push(sub);
    const writes = clientTuples(20_000, 1).map((w, i) => ({
      ...w,
      orig: { ...w.orig, src: `10.2.${i >> 8}.${i & 255}`, dport: 8443 },
      reply: { ...w.reply, sport: 8443, dst: `192.168.61.${1 + (i >> 14)}`, dport: 1024 + (i & 0x3fff) },
    }));
    expect((await nl.upsert(writes)).written).to.equal(20_000);
    const deadline = Date.now() + 10_000;
    while (created < 20_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(created).to.equal(20_000);
    expect(reply.size).to.equal(20_000); // every NAT binding came through
    expect(sub.overruns).to.equal(0);
    await nl.delete(writes.map((w) => w.orig));
  });

  it('reports an overrun when a slow reader loses events, and keeps reading', async () => {
    let overrunCalls = 0;
    let after = 0;
    const sub = ConntrackEventStream.start((n) => { if (n.conntrack.orig.dport === 9999) after++; }, () => { overrunCalls++; }, {
      namespace: third,
      receiveBufferBytes: 64 * 1024,
    });
    sockets.push(sub);
    // Another process creates 5,000 conntracks while this one's event loop is blocked (execFileSync).
    const script = `import { ConntrackNetlink } from ${JSON.stringify(new URL('../../fastpath/linux/conntrack-netlink.js', import.meta.url).href)};
      const nl = new ConntrackNetlink();
      const w = Array.from({ length: 5000 }, (_, i) => ({ orig: { proto: 'udp', src: '10.3.0.1', dst: '10.3.0.2', sport: 1000 + i, dport: 53 },
        reply: { proto: 'udp', src: '10.3.0.2', dst: '10.3.0.1', sport: 53, dport: 1000 + i }, state: 'established', timeout: 60 }));
      const r = await nl.upsert(w); nl.close(); if (r.written !== 5000) process.exit(1);`;
    fx.exec(third, process.execPath, ['--input-type=module', '-e', script]);
    const deadline = Date.now() + 5000;
    while (overrunCalls === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(overrunCalls).to.be.at.least(1);
    expect(sub.overruns).to.equal(overrunCalls);
    const nl = new ConntrackNetlink({ namespace: third });
    sockets.push(nl);
    const one = { ...clientTuples(1)[0], orig: { ...clientTuples(1)[0].orig, dport: 9999 }, reply: { ...clientTuples(1)[0].reply, sport: 9999 } };
    expect((await nl.upsert([one])).written).to.equal(1);
    while (after === 0 && Date.now() < deadline + 5000) await new Promise((r) => setTimeout(r, 20));
    expect(after).to.equal(1);
  });

  it('refuses bad input with a clear error', async () => {
    const nl = new ConntrackNetlink({ namespace: third });
    sockets.push(nl);
    const bad = { ...clientTuples(1)[0], orig: { proto: 'tcp' as const, src: 'nope', dst: '1.2.3.4', sport: 1, dport: 2 } };
    await nl.upsert([bad]).then(() => expect.fail('accepted a bad address'), (err: Error) => {
      expect(err.message).to.include('not an IP address: "nope"');
    });
    expect(() => new ConntrackNetlink({ namespace: `${fx.prefix}-missing` })).to.throw(/does not exist/);
    expect(() => ConntrackEventStream.start(() => undefined, () => undefined, { namespace: `${fx.prefix}-missing` })).to.throw(/does not exist/);
  });
});
