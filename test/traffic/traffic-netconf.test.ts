// Traffic into a running agent over NETCONF (the ssh2 client against `tandem start`): pcap and
// pcapng replay with exact verdicts and counters, the flow generator's progress in state data,
// stop-traffic, precise rpc-errors for bad input, and the linux engine's refusal.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writePcap, type FrameSpec } from '../../fastpath/traffic/pcap-writer.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { writePcapng } from './pcapng-file.js';

const SYN = 0x02, ACK = 0x10;
const TRAFFIC_NS = 'urn:tandem:yang:tandem-traffic';

const CONFIG = `<config>
  <vrf xmlns="urn:tandem:yang:tandem-vrf">
    <name>main</name>
    <firewall xmlns="urn:tandem:yang:tandem-firewall">
      <default-action>accept</default-action>
      <rule><name>block-dns</name><protocol>udp</protocol><destination-port><start>53</start></destination-port><action>drop</action></rule>
      <rule><name>web</name><protocol>tcp</protocol><destination-port><start>80</start></destination-port><action>accept</action></rule>
    </firewall>
  </vrf>
</config>`;

/** Three TCP handshakes to port 80, one DNS query (dropped by block-dns), one ping with its reply. */
function frames(clientNet: string, t0: number): FrameSpec[] {
  const out: FrameSpec[] = [];
  for (let i = 1; i <= 3; i++) {
    const c = `${clientNet}.${i}`;
    out.push({ timeMs: t0 + i, proto: 'tcp', src: c, dst: '198.51.100.10', sport: 40000 + i, dport: 80, tcpFlags: SYN },
      { timeMs: t0 + i, proto: 'tcp', src: '198.51.100.10', dst: c, sport: 80, dport: 40000 + i, tcpFlags: SYN | ACK },
      { timeMs: t0 + i, proto: 'tcp', src: c, dst: '198.51.100.10', sport: 40000 + i, dport: 80, tcpFlags: ACK });
  }
  out.push({ timeMs: t0 + 5, proto: 'udp', src: `${clientNet}.9`, dst: '198.51.100.53', sport: 5353, dport: 53 });
  out.push({ timeMs: t0 + 6, proto: 'icmp', src: `${clientNet}.9`, dst: '198.51.100.10', sport: 77, dport: 0, echoRequest: true },
    { timeMs: t0 + 6, proto: 'icmp', src: '198.51.100.10', dst: `${clientNet}.9`, sport: 77, dport: 0, echoRequest: false });
  return out;
}

function leaf(xml: string, name: string): string | undefined {
  return new RegExp(`<${name}(?: [^>]*)?>([^<]*)</${name}>`).exec(xml)?.[1];
}

function leafNum(xml: string, name: string): number {
  const v = leaf(xml, name);
  if (v === undefined) throw new Error(`no <${name}> in ${xml.slice(0, 2000)}`);
  return Number(v);
}

/** The <source> element of a traffic source in the operational state. */
async function source(c: NetconfTestClient, id: number): Promise<string> {
  const reply = await c.rpc(`<get><filter type="subtree"><traffic xmlns="${TRAFFIC_NS}"><source><id>${id}</id></source></traffic></filter></get>`);
  const m = /<source>[\s\S]*?<\/source>/.exec(reply);
  if (!m) throw new Error(`no source ${id} in ${reply}`);
  return m[0];
}

async function waitEnded(c: NetconfTestClient, id: number, ms = 20_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await source(c, id);
    if (leaf(s, 'status') !== 'running') return s;
    if (Date.now() > deadline) throw new Error(`source ${id} still running after ${ms} ms: ${s}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function counters(c: NetconfTestClient): Promise<string> {
  const reply = await c.rpc(`<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"/></vrf></filter></get>`);
  const total = /<total>[\s\S]*?<\/total>/.exec(reply);
  if (!total) throw new Error(`no counters total in ${reply}`);
  return reply;
}

function totalOf(reply: string): string {
  return (/<total>[\s\S]*?<\/total>/.exec(reply) as RegExpExecArray)[0];
}

function byState(total: string, proto: string, state: string): number {
  const m = new RegExp(`<conntracks-by-state>\\s*<protocol>${proto}</protocol>\\s*<state>${state}</state>\\s*<count>(\\d+)</count>`).exec(total);
  return m ? Number(m[1]) : 0;
}

function ruleCounts(total: string, name: string): { accepted: number; dropped: number } {
  const m = new RegExp(`<rule>\\s*<name>${name}</name>\\s*<accepted>(\\d+)</accepted>\\s*<dropped>(\\d+)</dropped>`).exec(total);
  return m ? { accepted: Number(m[1]), dropped: Number(m[2]) } : { accepted: 0, dropped: 0 };
}

function idOf(reply: string): number {
  const id = /<id[^>]*>(\d+)<\/id>/.exec(reply)?.[1];
  if (!id) throw new Error(`no id in ${reply}`);
  return Number(id);
}

function errorOf(reply: string): { tag?: string; message?: string } {
  expect(reply, reply).to.include('<rpc-error>');
  return { tag: leaf(reply, 'error-tag'), message: /<error-message[^>]*>([^<]*)</.exec(reply)?.[1] };
}

describe('traffic: RPCs and counters over NETCONF (tandem start, soft engine)', function () {
  this.timeout(120_000);
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-traffic-'));
    t = await startTandem();
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    const edit = await c.rpc(`<edit-config><target><candidate/></target>${CONFIG}</edit-config>`);
    expect(edit).to.include('<ok/>');
    expect(await c.rpc('<commit/>')).to.include('<ok/>');
  });

  after(async () => {
    c?.close();
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('replays a pcap: exact verdicts in the source, and the counters move by exactly as much', async () => {
    const client = c as NetconfTestClient;
    const before = totalOf(await counters(client));
    const file = path.join(dir, 'three-flows.pcap');
    await writePcap(file, frames('172.16.1', Date.UTC(2026, 0, 1)));
    const id = idOf(await client.rpc(`<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${file}</file></replay-pcap>`));
    const s = await waitEnded(client, id);
    expect(leaf(s, 'status')).to.equal('completed');
    expect(leaf(s, 'kind')).to.equal('pcap-replay');
    expect(leaf(s, 'format')).to.equal('pcap');
    expect(leafNum(s, 'packets-read')).to.equal(12);
    expect(leafNum(s, 'packets-skipped')).to.equal(0);
    expect(leafNum(s, 'packets')).to.equal(12);
    expect(leafNum(s, 'forwarded')).to.equal(11);
    expect(leafNum(s, 'dropped-firewall')).to.equal(1);
    expect(leaf(s, 'finished')).to.match(/^\d{4}-\d\d-\d\dT/);

    const after = totalOf(await counters(client));
    expect(leafNum(after, 'conntracks') - leafNum(before, 'conntracks')).to.equal(4);
    expect(leafNum(after, 'created') - leafNum(before, 'created')).to.equal(4);
    expect(leafNum(after, 'dropped-firewall') - leafNum(before, 'dropped-firewall')).to.equal(1);
    expect(byState(after, 'tcp', 'established') - byState(before, 'tcp', 'established')).to.equal(3);
    expect(byState(after, 'icmp', 'replied') - byState(before, 'icmp', 'replied')).to.equal(1);
    expect(ruleCounts(after, 'block-dns').dropped - ruleCounts(before, 'block-dns').dropped).to.equal(1);
    expect(ruleCounts(after, 'web').accepted - ruleCounts(before, 'web').accepted).to.equal(3);
    expect(leafNum(after, 'conntrack-events-lost')).to.equal(0);
  });

  it('replays pcapng (big-endian, nanosecond timestamps) the same way, and lists per-worker counters that add up', async () => {
    const client = c as NetconfTestClient;
    const file = path.join(dir, 'three-flows.pcapng');
    await writePcapng(file, frames('172.16.2', Date.UTC(2026, 0, 2)), { bigEndian: true, nanoseconds: true });
    const id = idOf(await client.rpc(`<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${file}</file></replay-pcap>`));
    const s = await waitEnded(client, id);
    expect(leaf(s, 'status'), s).to.equal('completed');
    expect(leaf(s, 'format')).to.equal('pcapng');
    expect(leafNum(s, 'packets-read')).to.equal(12);
    expect(leafNum(s, 'forwarded')).to.equal(11);
    expect(leafNum(s, 'dropped-firewall')).to.equal(1);

    const reply = await counters(client);
    const workers = [...reply.matchAll(/<worker>[\s\S]*?<\/worker>/g)].map((m) => m[0]);
    expect(workers.length).to.be.greaterThan(0);
    const total = totalOf(reply);
    expect(workers.reduce((n, w) => n + leafNum(w, 'conntracks'), 0)).to.equal(leafNum(total, 'conntracks'));
    expect(workers.reduce((n, w) => n + leafNum(w, 'created'), 0)).to.equal(leafNum(total, 'created'));
    expect(leafNum(total, 'conntracks')).to.equal(8);
  });

  it('runs the flow generator to its count with the established share open, its progress in state data', async () => {
    const client = c as NetconfTestClient;
    const before = totalOf(await counters(client));
    const id = idOf(await client.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><count>50</count><rate>500</rate>
      <duration>30</duration><source-prefix>10.20.0.0/16</source-prefix><destination-address>198.51.100.80</destination-address>
      <destination-port>80</destination-port><established-share>100</established-share></start-traffic>`));
    const s = await waitEnded(client, id);
    expect(leaf(s, 'status'), s).to.equal('completed');
    expect(leaf(s, 'kind')).to.equal('flow-generator');
    expect(leafNum(s, 'flows-opened')).to.equal(50);
    expect(leafNum(s, 'flows-open')).to.equal(50);
    expect(leafNum(s, 'flows-closed')).to.equal(0);
    expect(leafNum(s, 'packets')).to.equal(150); // SYN, SYN-ACK, ACK per flow
    expect(leafNum(s, 'forwarded')).to.equal(150);
    const after = totalOf(await counters(client));
    expect(byState(after, 'tcp', 'established') - byState(before, 'tcp', 'established')).to.equal(50);
    expect(ruleCounts(after, 'web').accepted - ruleCounts(before, 'web').accepted).to.equal(50);
  });

  it('stop-traffic stops a running generator; stopping an unknown source is an rpc-error', async () => {
    const client = c as NetconfTestClient;
    const id = idOf(await client.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><rate>20</rate><duration>600</duration>
      <protocol-mix><tcp>1</tcp><udp>1</udp><icmp>1</icmp></protocol-mix></start-traffic>`));
    await new Promise((r) => setTimeout(r, 500));
    expect(leaf(await source(client, id), 'status')).to.equal('running');
    const stop = await client.rpc(`<stop-traffic xmlns="${TRAFFIC_NS}"><id>${id}</id></stop-traffic>`);
    expect(leaf(stop, 'stopped')).to.equal('1');
    const s = await source(client, id);
    expect(leaf(s, 'status')).to.equal('stopped');
    expect(leafNum(s, 'flows-opened')).to.be.greaterThan(0);
    const e = errorOf(await client.rpc(`<stop-traffic xmlns="${TRAFFIC_NS}"><id>999</id></stop-traffic>`));
    expect(e.tag).to.equal('invalid-value');
    expect(e.message).to.include('no traffic source 999');
  });

  it('refuses bad input with precise rpc-errors', async () => {
    const client = c as NetconfTestClient;
    let e = errorOf(await client.rpc(`<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>relative.pcap</file></replay-pcap>`));
    expect(e.tag).to.equal('invalid-value');
    expect(e.message).to.include('absolute path');
    e = errorOf(await client.rpc(`<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${dir}/missing.pcap</file></replay-pcap>`));
    expect(e.message).to.include('ENOENT');
    e = errorOf(await client.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><virtual-service>nope</virtual-service></start-traffic>`));
    expect(e.message).to.include('no virtual service nope');
    e = errorOf(await client.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><rate>0</rate></start-traffic>`));
    expect(e.tag).to.equal('invalid-value');
    e = errorOf(await client.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><protocol-mix><tcp>0</tcp></protocol-mix></start-traffic>`));
    expect(e.message).to.include('protocol mix');
    // A file that is not a capture is accepted by the RPC and the source fails, saying why.
    const bogus = path.join(dir, 'bogus.pcap');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(bogus, 'not a capture at all');
    const id = idOf(await client.rpc(`<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${bogus}</file></replay-pcap>`));
    const s = await waitEnded(client, id);
    expect(leaf(s, 'status')).to.equal('failed');
    expect(leaf(s, 'error')).to.include('unknown magic number');
  });
});

describe('traffic: the linux engine refuses traffic sources', function () {
  this.timeout(60_000);
  let t: TandemProcess | undefined;

  before(function () {
    if (process.getuid?.() !== 0) this.skip(); // the linux engine needs root (netlink, nftables)
  });

  after(async () => {
    await t?.stop();
  });

  it('answers start-traffic, replay-pcap and stop-traffic with operation-not-supported', async () => {
    t = await startTandem({ args: ['--engine', 'linux'] });
    const client = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    try {
      for (const rpc of [`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf></start-traffic>`,
        `<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>/tmp/x.pcap</file></replay-pcap>`,
        `<stop-traffic xmlns="${TRAFFIC_NS}"/>`]) {
        const e = errorOf(await client.rpc(rpc));
        expect(e.tag, rpc).to.equal('operation-not-supported');
        expect(e.message).to.include('linux engine');
      }
    } finally {
      client.close();
    }
  });
});
