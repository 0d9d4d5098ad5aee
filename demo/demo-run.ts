// The demo scenario of `npm run demo` (see demo.ts), kept importable so a test can run it: two
// `tandem start` processes on loopback, configured and driven over NETCONF only, as a user would
// with any NETCONF client. Traffic goes into ha1 (a capture of connections to a mirrored virtual
// service, plus the flow generator), the conntracks and counters arrive on ha2, a failover is made
// by editing the HA group, and the same connections carry on through ha2.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { XmlElement } from '../agent/netconf/xml-element.js';
import { findAll, findText, NetconfClient } from '../cli/netconf-client.js';
import { writePcap, type FrameSpec } from '../fastpath/traffic/pcap-writer.js';
import { AgentProcess } from './agent-process.js';

const TRAFFIC_NS = 'urn:tandem:yang:tandem-traffic';
const USER = 'admin';
const SYN = 0x02, ACK = 0x10;
const VIP = '192.0.2.1';
/** The pair's shared SNAT IP of virtual service web (the seed's "Legacy Active/Standby with SNAT IP"). */
const SNAT_IP = '203.0.113.1';

export interface DemoOptions {
  /** Connections in the capture replayed on ha1 (the ones followed through the failover). */
  connections?: number;
  /** Flow generator on ha1: new flows per second and for how many seconds. */
  rate?: number;
  seconds?: number;
  /** Control run: the same without ha-fp-conntrack; the connections must then NOT continue (the demo fails). */
  withoutSync?: boolean;
}

export interface DemoFigures {
  connections: number;
  generatorFlows: number;
  ha1Conntracks: number;
  ha1Synced: number;
  ha2Synced: number;
  heldOnBackup: number;
  mirrorActive: number;
  mirrorStandby: number;
  forwardedAfterFailover: number;
  failoverMs: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** What both nodes get (ha1 master, ha2 backup), as XML for edit-config. */
export function demoConfigXml(self: string, peer: string, port: number, state: 'master' | 'backup', sync = true): string {
  return `<ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>${state}</state></group></ha>
<network-profile xmlns="urn:tandem:yang:tandem-network-profile">
  <name>System-TCP-Fast-Path-Mirrored</name><type>tcp-fast-path</type>
  <tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>
</network-profile>
<vrf xmlns="urn:tandem:yang:tandem-vrf">
  <name>main</name>
  <firewall xmlns="urn:tandem:yang:tandem-firewall">
    <default-action>accept</default-action>
    <rule><name>no-telnet</name><protocol>tcp</protocol><destination-port><start>23</start></destination-port><action>drop</action></rule>
  </firewall>
  <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service">
    <name>web</name><vip>${VIP}</vip><port>80</port><network-profile>System-TCP-Fast-Path-Mirrored</network-profile>
    <snat-ip>${SNAT_IP}</snat-ip>
    <pool-member><address>198.51.100.10</address><port>8080</port></pool-member>
    <pool-member><address>198.51.100.11</address><port>8080</port></pool-member>
  </virtual-service>
  ${sync ? '' : '<!-- control run: no ha-fp-conntrack'}
  <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
    <peer><name>peer1</name><source>${self}</source><address>${peer}</address><port>${port}</port></peer>
    <listen-ha-group>ha-group1</listen-ha-group>
    <shared-secret>demo-shared-secret-change-me</shared-secret>
  </ha-fp-conntrack>
  ${sync ? '' : '-->'}
</vrf>`;
}

function client(i: number): { src: string; sport: number } {
  return { src: `10.50.${(i >> 8) & 255}.${i & 255}`, sport: 30000 + (i % 30000) };
}

/** The handshakes of n client connections to the virtual service, as captured on the client side. */
function handshakes(n: number, t0: number): FrameSpec[] {
  const out: FrameSpec[] = [];
  for (let i = 0; i < n; i++) {
    const { src, sport } = client(i);
    out.push({ timeMs: t0, proto: 'tcp', src, dst: VIP, sport, dport: 80, tcpFlags: SYN },
      { timeMs: t0, proto: 'tcp', src: VIP, dst: src, sport: 80, dport: sport, tcpFlags: SYN | ACK },
      { timeMs: t0, proto: 'tcp', src, dst: VIP, sport, dport: 80, tcpFlags: ACK });
  }
  return out;
}

/** One mid-stream data packet (ACK) of each of those connections: forwarded only where its conntrack is. */
function dataPackets(n: number, t0: number): FrameSpec[] {
  return Array.from({ length: n }, (_, i) => ({ timeMs: t0, proto: 'tcp' as const, ...client(i), dst: VIP, dport: 80, tcpFlags: ACK }));
}

export async function getState(c: NetconfClient, filter: string): Promise<XmlElement> {
  return c.rpc(`<get><filter type="subtree">${filter}</filter></get>`);
}

export async function syncState(c: NetconfClient): Promise<{ synced: number; pending: number; established: number; clients: number }> {
  const r = await getState(c, '<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf>');
  const statuses = findAll(r, 'connection-status').map((e) => e.text);
  return { synced: Number(findText(r, 'synced') ?? 0), pending: Number(findText(r, 'pending') ?? 0), established: statuses.filter((s) => s === 'established').length, clients: statuses.length };
}

export async function counters(c: NetconfClient): Promise<{ conntracks: number; synced: number; droppedBackup: number }> {
  const r = await getState(c, '<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"><total/></fast-path-counters></vrf>');
  const total = findAll(r, 'total')[0];
  if (!total) return { conntracks: 0, synced: 0, droppedBackup: 0 };
  return { conntracks: Number(findText(total, 'conntracks') ?? 0), synced: Number(findText(total, 'synced') ?? 0), droppedBackup: Number(findText(total, 'dropped-backup') ?? 0) };
}

async function tcpstat(c: NetconfClient): Promise<{ active: number; standby: number }> {
  const r = await getState(c, '<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>web</name><tcpstat/></virtual-service></vrf>');
  return { active: Number(findText(r, 'mirror-conn-list-on-active') ?? 0), standby: Number(findText(r, 'mirrored-connections-on-standby') ?? 0) };
}

/** Runs a traffic RPC and waits for its source to end; returns the <source> state. */
async function runSource(c: NetconfClient, rpc: string, timeoutMs = 60_000): Promise<XmlElement> {
  const id = findText(await c.rpc(rpc), 'id');
  if (!id) throw new Error(`no source id from ${rpc}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = findAll(await getState(c, `<traffic xmlns="${TRAFFIC_NS}"><source><id>${id}</id></source></traffic>`), 'source')[0];
    const status = s ? findText(s, 'status') : undefined;
    if (s && status !== 'running') {
      if (status !== 'completed') throw new Error(`traffic source ${id} ${status}: ${findText(s, 'error') ?? ''}`);
      return s;
    }
    if (Date.now() > deadline) throw new Error(`traffic source ${id} still running after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function until(cond: () => Promise<boolean>, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function runDemo(print: (line: string) => void, opts: DemoOptions = {}): Promise<DemoFigures> {
  const n = opts.connections ?? 1000;
  const rate = opts.rate ?? 1000;
  const seconds = opts.seconds ?? 5;
  const password = randomBytes(12).toString('base64url');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-demo-'));
  const agents: AgentProcess[] = [];
  const clients: NetconfClient[] = [];
  try {
    print('[1/6] two agents: `tandem start --engine soft` twice, NETCONF over SSH on loopback');
    const ha1 = await AgentProcess.start('ha1', USER, password);
    agents.push(ha1);
    const ha2 = await AgentProcess.start('ha2', USER, password);
    agents.push(ha2);
    const c1 = await NetconfClient.connect({ host: '127.0.0.1', port: ha1.port, username: USER, password });
    clients.push(c1);
    const c2 = await NetconfClient.connect({ host: '127.0.0.1', port: ha2.port, username: USER, password });
    clients.push(c2);
    print(`      ha1 on 127.0.0.1:${ha1.port} (pid ${ha1.child.pid}), ha2 on 127.0.0.1:${ha2.port} (pid ${ha2.child.pid})`);

    const syncPort = await freePort();
    print(`[2/6] configure both over NETCONF (edit-config + commit): HA group, virtual service web (mirrored profile, SNAT IP ${SNAT_IP}), sync ha1 127.0.0.1 <-> ha2 127.0.0.2 port ${syncPort}`);
    const sync = !opts.withoutSync;
    await c1.configure(demoConfigXml('127.0.0.1', '127.0.0.2', syncPort, 'master', sync));
    await c2.configure(demoConfigXml('127.0.0.2', '127.0.0.1', syncPort, 'backup', sync));
    if (sync) {
      await until(async () => { const s = await syncState(c1); return s.clients > 0 && s.established === s.clients; }, 'the sync connections', 30_000);
      print(`      sync connections established (${(await syncState(c1)).clients} per peer)`);
    } else {
      print('      CONTROL RUN: no ha-fp-conntrack, nothing is synchronised');
    }

    print(`[3/6] traffic on ha1: replay-pcap of ${n} connections to web (${VIP}:80), and start-traffic ${rate} flows/s for ${seconds} s (TCP, UDP, ICMP; 30% stay established)`);
    const capture = path.join(dir, 'handshakes.pcap');
    const data = path.join(dir, 'data.pcap');
    const t0 = Date.now();
    await writePcap(capture, handshakes(n, t0));
    await writePcap(data, dataPackets(n, t0 + 1000));
    const replayed = await runSource(c1, `<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${capture}</file></replay-pcap>`);
    print(`      capture replayed on ha1: ${findText(replayed, 'packets')} packets, ${findText(replayed, 'forwarded')} forwarded`);
    const genId = findText(await c1.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><rate>${rate}</rate><duration>${seconds}</duration>
      <protocol-mix><tcp>4</tcp><udp>1</udp><icmp>1</icmp></protocol-mix><established-share>30</established-share></start-traffic>`), 'id');
    const started = Date.now();
    for (;;) {
      await new Promise((r) => setTimeout(r, 1000));
      const [s1, k1, k2] = [await syncState(c1), await counters(c1), await counters(c2)];
      print(`      ${((Date.now() - started) / 1000).toFixed(0)} s: ha1 conntracks ${k1.conntracks} (synced to the peer ${s1.synced}, pending ${s1.pending}); ha2 holds ${k2.synced} synced conntracks`);
      const g = findAll(await getState(c1, `<traffic xmlns="${TRAFFIC_NS}"><source><id>${genId}</id></source></traffic>`), 'source')[0];
      if (!g || findText(g, 'status') !== 'running') break;
      if (Date.now() - started > (seconds + 30) * 1000) throw new Error('the flow generator did not end');
    }
    const gen = findAll(await getState(c1, `<traffic xmlns="${TRAFFIC_NS}"><source><id>${genId}</id></source></traffic>`), 'source')[0] as XmlElement;
    const generatorFlows = Number(findText(gen, 'flows-opened') ?? 0);

    print('[4/6] on ha2 (backup): the same connections are held and their packets blocked (rule 4)');
    // Replaying the data packets on a backup changes nothing: they are dropped (held) or invalid (not there).
    let heldOnBackup = 0;
    const holdCheck = async (): Promise<boolean> => {
      const before = (await counters(c2)).droppedBackup;
      await runSource(c2, `<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${data}</file></replay-pcap>`);
      heldOnBackup = (await counters(c2)).droppedBackup - before;
      return heldOnBackup === n;
    };
    if (sync) {
      await until(holdCheck, `ha2 to hold all ${n} connections`, 30_000);
      await until(async () => (await syncState(c1)).pending === 0, 'ha1 to have nothing pending', 30_000);
    } else {
      await holdCheck();
    }
    const [ha1Sync, ha1Counters, ha2Counters] = [await syncState(c1), await counters(c1), await counters(c2)];
    let mirror = { active: 0, standby: -1 };
    const readMirror = async (): Promise<boolean> => {
      mirror = { active: (await tcpstat(c1)).active, standby: (await tcpstat(c2)).standby };
      return mirror.active === mirror.standby;
    };
    if (sync) await until(readMirror, 'the mirroring counters to match', 10_000).catch(() => undefined);
    else await readMirror();
    print(`      ha2 blocked ${heldOnBackup} of ${n} data packets as backup; ha2 holds ${ha2Counters.synced} synced conntracks, ha1 reports ${ha1Sync.synced} synced`);
    print(`      virtual service web: mirror-conn-list-on-active ${mirror.active} on ha1, mirrored-connections-on-standby ${mirror.standby} on ha2 (${mirror.active === mirror.standby ? 'match' : 'MISMATCH'})`);

    print('[5/6] failover by editing the HA group: ha1 -> backup, ha2 -> master (edit-config + commit on each)');
    const f0 = Date.now();
    const group = (s: string): string => `<ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>${s}</state></group></ha>`;
    await c1.configure(group('backup'));
    await c2.configure(group('master'));
    const failoverMs = Date.now() - f0;
    const after = await runSource(c2, `<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${data}</file></replay-pcap>`);
    const forwardedAfterFailover = Number(findText(after, 'forwarded') ?? 0);
    print(`      data packets of the ${n} connections through ha2 (new master): ${forwardedAfterFailover} forwarded, `
      + `${findText(after, 'dropped-invalid')} invalid (no conntrack), ${findText(after, 'dropped-backup')} blocked`);

    const figures: DemoFigures = {
      connections: n, generatorFlows, ha1Conntracks: ha1Counters.conntracks, ha1Synced: ha1Sync.synced, ha2Synced: ha2Counters.synced,
      heldOnBackup, mirrorActive: mirror.active, mirrorStandby: mirror.standby, forwardedAfterFailover, failoverMs,
    };
    const ok = forwardedAfterFailover === n;
    print(`[6/6] summary: ${ok ? 'every' : 'NOT every'} connection continued through the new master (${forwardedAfterFailover}/${n}); `
      + `generator flows ${generatorFlows}; conntracks synchronised ${ha1Sync.synced}; mirroring ${mirror.active}/${mirror.standby}; failover commits ${failoverMs} ms`);
    if (!ok) throw new Error(`only ${forwardedAfterFailover} of ${n} connections continued after the failover`);
    return figures;
  } catch (err) {
    for (const a of agents) print(`--- ${a.name} output (last 3000 characters) ---\n${a.log.slice(-3000)}`);
    throw err;
  } finally {
    for (const c of clients) c.close();
    for (const a of agents) await a.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
