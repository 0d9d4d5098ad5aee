// The linux engine's counters over NETCONF (root): a real `tandem start --engine linux` owns a
// router namespace (the VRF), real TCP connections cross it from a client to a server namespace;
// the per-rule firewall counters and the virtual service's tcpstat are read with <get> from an
// ssh2 NETCONF client, and a commit that edits another rule keeps a rule's counts.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { JsonLines, NamespaceFixture, ROOT_SKIP_REASON, isRoot, run } from '../../lab/namespace-fixture.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const TCP_LOAD = fileURLToPath(new URL('../../lab/tcp-load.js', import.meta.url));

function vrfXml(vrf: string, denyPort: number): string {
  return `<config><system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system>
    <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name>
      <firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action>
        <rule><name>to-7300</name><action>accept</action><protocol>tcp</protocol><destination-port><start>7300</start></destination-port></rule>
        <rule><name>deny</name><action>drop</action><protocol>tcp</protocol><destination-port><start>${denyPort}</start></destination-port></rule>
      </firewall>
      <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>web</name><vip>10.9.9.9</vip><port>80</port><protocol>tcp</protocol>
        <pool-member><address>10.77.1.2</address><port>7301</port><weight>1</weight></pool-member></virtual-service>
    </vrf></config>`;
}

function countersFilter(vrf: string): string {
  return `<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name>
    <fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"/></vrf></filter></get>`;
}

function tcpstatFilter(vrf: string): string {
  return `<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name>
    <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>web</name><tcpstat/></virtual-service></vrf></filter></get>`;
}

function ruleCounts(reply: string, name: string): { accepted: number; dropped: number } | undefined {
  const m = new RegExp(`<rule>\\s*<name>${name}</name>\\s*<accepted>(\\d+)</accepted>\\s*<dropped>(\\d+)</dropped>`).exec(reply);
  return m ? { accepted: Number(m[1]), dropped: Number(m[2]) } : undefined;
}

function leaf(reply: string, name: string): number | undefined {
  const m = new RegExp(`<${name}>(\\d+)</${name}>`).exec(reply);
  return m ? Number(m[1]) : undefined;
}

describe('linux: counters over NETCONF on tandem start --engine linux', function () {
  this.timeout(120_000);
  const fx = new NamespaceFixture('lcn');
  // The VRF is the namespace of the same name: at most 15 characters.
  const vrf = `lc${randomBytes(3).toString('hex')}`;
  let client = '';
  let server = '';
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;

  before(async function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    run('ip', ['netns', 'add', vrf]);
    fx.namespaces.push(vrf); // removed by cleanup with the others
    run('ip', ['-n', vrf, 'link', 'set', 'lo', 'up']);
    client = fx.add('cli');
    server = fx.add('srv');
    fx.link(client, 'eth0', '10.1.0.2/24', vrf, 'eth0', '10.1.0.1/24');
    fx.link(vrf, 'eth1', '10.77.1.1/24', server, 'eth0', '10.77.1.2/24');
    fx.exec(vrf, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    fx.exec(client, 'ip', ['route', 'add', 'default', 'via', '10.1.0.1']);
    fx.exec(server, 'ip', ['route', 'add', 'default', 'via', '10.77.1.1']);
    for (const port of [7300, 7301, 7302]) {
      const proc = fx.spawn(server, process.execPath, [TCP_LOAD, 'server', '0.0.0.0', String(port)]);
      await new JsonLines(proc).next((l) => l.ready === true);
    }
    t = await startTandem({ args: ['--engine', 'linux'] });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
  });

  after(async () => {
    c?.close();
    await t?.stop();
    await fx.cleanup();
  });

  async function commit(xml: string): Promise<void> {
    expect(await c!.rpc(`<edit-config><target><candidate/></target>${xml}</edit-config>`)).to.include('<ok/>');
    expect(await c!.rpc('<commit/>')).to.include('<ok/>');
  }

  async function connect(address: string, port: number, count: number, timeoutMs = 3000) {
    const proc = fx.spawn(client, process.execPath, [TCP_LOAD, 'client', address, String(port), String(count), String(timeoutMs)]);
    const lines = new JsonLines(proc);
    const ready = await lines.next((l) => l.ready === true, timeoutMs + 20_000);
    return { proc, lines, connected: ready.connected as number };
  }

  it('reads per-rule accepts and drops and the default action; an edit of another rule keeps them', async () => {
    await commit(vrfXml(vrf, 7302));
    const ok = await connect('10.77.1.2', 7300, 4);
    expect(ok.connected).to.equal(4);
    expect((await connect('10.77.1.2', 7302, 2, 1000)).connected).to.equal(0);
    const vs = await connect('10.9.9.9', 80, 3); // no rule matches the member's port 7301: the default action
    expect(vs.connected).to.equal(3);
    const first = await c!.rpc(countersFilter(vrf));
    expect(first).to.include('<engine>linux</engine>');
    expect(first).to.include('<not-supported>syn-cookies</not-supported>').and.not.include('<not-supported>dropped-firewall</not-supported>');
    const toPort = ruleCounts(first, 'to-7300');
    expect(toPort?.accepted).to.be.at.least(4);
    expect(toPort?.dropped).to.equal(0);
    const deny = ruleCounts(first, 'deny');
    expect(deny?.accepted).to.equal(0);
    expect(deny?.dropped).to.be.at.least(2);
    expect(/<default-action>\s*<accepted>(\d+)<\/accepted>/.exec(first)?.[1]).to.satisfy((n: string) => Number(n) >= 3);
    expect(leaf(first, 'dropped-firewall')).to.equal(deny?.dropped);
    expect(first).to.match(/<conntracks-by-state>\s*<protocol>tcp<\/protocol>\s*<state>established<\/state>\s*<count>(\d+)<\/count>/);
    expect(leaf(first, 'conntrack-events-lost')).to.equal(0);

    // A commit that edits rule `deny` only: to-7300 keeps counting from where it was.
    await commit(vrfXml(vrf, 7303));
    const second = await c!.rpc(countersFilter(vrf));
    expect(ruleCounts(second, 'to-7300')).to.deep.equal(toPort);
    expect(ruleCounts(second, 'deny'), 'an edited rule starts again (listed once it matches)').to.equal(undefined);
    const more = await connect('10.77.1.2', 7300, 2);
    expect(more.connected).to.equal(2);
    expect(ruleCounts(await c!.rpc(countersFilter(vrf)), 'to-7300')?.accepted).to.be.at.least((toPort?.accepted ?? 0) + 2);

    // tcpstat of the virtual service: its 3 connections, counted without a dump.
    const tcpstat = await c!.rpc(tcpstatFilter(vrf));
    expect(leaf(tcpstat, 'connections')).to.equal(3);
    for (const p of [ok, vs, more]) p.proc.stdin?.end();
  });
});
