// CG-NAT port blocks and virtual services on the soft engine (real workers, manual clock).
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry, ConntrackEvent, FlowTuple } from '../../fastpath/engine.js';
import type { NatBlockLog } from '../../fastpath/soft/cg-nat-allocator.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, Verdict, type SoftPacket } from '../../fastpath/soft/vrf-dataplane.js';
import { encodeRecords, recordSize } from '../../sync/conntrack-codec.js';
import { tcpFastPathProfile, vrfJson } from './vrf-json.js';

function handshake(fs: FlowTuple[]): SoftPacket[][] {
  return [fs.map((flow) => ({ flow, flags: TCP_SYN })), fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), fs.map((flow) => ({ flow, flags: TCP_ACK }))];
}

async function allEntries(engine: SoftEngine, vrf: string): Promise<ConntrackEntry[]> {
  const out: ConntrackEntry[] = [];
  await engine.dump(vrf, (b) => { out.push(...b); });
  return out;
}

const cgNat = {
  pool: [{ name: 'public', prefix: '198.51.100.0/30', 'port-range': { start: 1024, end: 1151 }, 'port-block-size': 32 }],
  rule: [{ name: 'subscribers', 'source-prefix': '10.0.0.0/8', pool: 'public' }],
  logging: { allocation: true, destroy: true },
};

describe('fastpath: CG-NAT port blocks and virtual services', function () {
  this.timeout(30000);
  let engine: SoftEngine | undefined;
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  it('allocates port blocks per subscriber, logs allocation and destroy, and counts exhaustion', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { cgNat, udp: 30 }) });
    const logs: NatBlockLog[] = [];
    engine.onNatLog((l) => logs.push(l));
    // Subscriber A: 40 UDP flows need two blocks of 32 ports.
    const a = Array.from({ length: 40 }, (_, i): FlowTuple => ({ proto: 'udp', src: '10.0.0.1', dst: '203.0.113.5', sport: 5000 + i, dport: 53 }));
    expect((await engine.inject('main', a.map((flow) => ({ flow })))).every((v) => v === Verdict.Forward)).to.equal(true);
    let entries = await allEntries(engine, 'main');
    const bindings = entries.map((e) => `${e.reply.dst}:${e.reply.dport}`);
    expect(new Set(bindings).size).to.equal(40);
    const blocksOfA = new Set(entries.map((e) => `${e.reply.dst}/${Math.floor((e.reply.dport - 1024) / 32)}`));
    expect(blocksOfA.size).to.equal(2);
    for (const e of entries) {
      expect(e.reply.dst).to.match(/^198\.51\.100\.[0-3]$/);
      expect(e.reply.dport).to.be.within(1024, 1151);
    }
    await engine.flush();
    expect(logs.filter((l) => l.event === 'allocation' && l.subscriber === '10.0.0.1')).to.have.length(2);
    // A pool resize moves A's conntracks with their blocks: 20 more flows fit in the 24 free ports
    // of A's second block, so no block is allocated and no port is handed out twice.
    await engine.setWorkers(3);
    const more = Array.from({ length: 20 }, (_, i): FlowTuple => ({ proto: 'udp', src: '10.0.0.1', dst: '203.0.113.6', sport: 6000 + i, dport: 53 }));
    await engine.inject('main', more.map((flow) => ({ flow })));
    await engine.flush();
    expect(logs.filter((l) => l.event === 'allocation' && l.subscriber === '10.0.0.1')).to.have.length(2);
    const afterMove = await allEntries(engine, 'main');
    expect(new Set(afterMove.map((e) => `${e.reply.dst}:${e.reply.dport}`)).size).to.equal(60);
    await engine.remove('main', more);
    // 16 blocks in all: 14 more subscribers get one each, the next one finds the pool exhausted.
    const others = Array.from({ length: 15 }, (_, i): FlowTuple => ({ proto: 'udp', src: `10.0.1.${i + 1}`, dst: '203.0.113.5', sport: 7000, dport: 53 }));
    const v = await engine.inject('main', others.map((flow) => ({ flow })));
    expect(v.filter((x) => x === Verdict.Forward)).to.have.length(14);
    expect(v.filter((x) => x === Verdict.DropNat)).to.have.length(1);
    expect(engine.counters('main').natAllocFailures).to.equal(1);
    entries = await allEntries(engine, 'main');
    expect(new Set(entries.map((e) => `${e.reply.dst}:${e.reply.dport}`)).size).to.equal(54);
    // Expiry gives every block back, with one destroy log per allocation.
    clock.advance(31_000);
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(0);
    const alloc = logs.filter((l) => l.event === 'allocation').map((l) => `${l.address}:${l.portStart}`).sort();
    const destroy = logs.filter((l) => l.event === 'destroy').map((l) => `${l.address}:${l.portStart}`).sort();
    expect(alloc).to.have.length(16);
    expect(destroy).to.deep.equal(alloc);
    // The pool is usable again.
    expect(await engine.inject('main', [{ flow: others[14] as FlowTuple }])).to.deep.equal([Verdict.Forward]);
  });

  it('keeps the ports of live conntracks reserved when the pools change', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { cgNat }) });
    const before = Array.from({ length: 100 }, (_, i): FlowTuple => ({ proto: 'udp', src: `10.0.${i % 5}.1`, dst: '203.0.113.5', sport: 6000 + i, dport: 53 }));
    await engine.inject('main', before.map((flow) => ({ flow })));
    // Smaller blocks over the same addresses and ports: the old bindings must not be handed out again.
    const changed = { ...cgNat, pool: [{ ...cgNat.pool[0], 'port-block-size': 8 }] };
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { cgNat: changed }) });
    const after = Array.from({ length: 300 }, (_, i): FlowTuple => ({ proto: 'udp', src: `10.0.${i % 7}.1`, dst: '203.0.113.5', sport: 8000 + i, dport: 53 }));
    await engine.inject('main', after.map((flow) => ({ flow })));
    const entries = await allEntries(engine, 'main');
    expect(entries).to.have.length(400);
    expect(new Set(entries.map((e) => `${e.reply.dst}:${e.reply.dport}`)).size).to.equal(400);
  });

  it('keeps NAT ports of synced conntracks reserved on the backup', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { cgNat }) });
    await engine.setRole('main', 'backup');
    const synced: ConntrackEntry = {
      vrf: 'main', orig: { proto: 'tcp', src: '10.0.0.7', dst: '203.0.113.9', sport: 40000, dport: 443 },
      reply: { proto: 'tcp', src: '203.0.113.9', dst: '198.51.100.2', sport: 443, dport: 1100 },
      state: 'established', timeout: 600, alg: false, establishedAt: 1, lastActivity: 1,
    };
    expect(await engine.upsert([synced])).to.equal(1);
    await engine.setRole('main', 'master');
    // New flows of the same subscriber land in its adopted block and never reuse port 1100.
    const fs = Array.from({ length: 31 }, (_, i): FlowTuple => ({ proto: 'tcp', src: '10.0.0.7', dst: '203.0.113.9', sport: 41000 + i, dport: 443 }));
    for (const step of handshake(fs)) await engine.inject('main', step);
    const entries = await allEntries(engine, 'main');
    const ports = entries.map((e) => `${e.reply.dst}:${e.reply.dport}`);
    expect(new Set(ports).size).to.equal(32);
    expect(entries.filter((e) => e.reply.dst === '198.51.100.2' && e.reply.dport >= 1088 && e.reply.dport < 1120)).to.have.length(32);
  });

  it('logs the release of a port block inherited through sync once its conntracks end on the new master', async () => {
    const clock = new ManualClock();
    engine = await SoftEngine.create({ clock, workers: 2 });
    await engine.applyVrf('main', { name: 'main', json: vrfJson('main', { cgNat }) });
    const logs: NatBlockLog[] = [];
    engine.onNatLog((l) => logs.push(l));
    await engine.setRole('main', 'backup');
    const synced: ConntrackEntry[] = [0, 1].map((i) => ({
      vrf: 'main', orig: { proto: 'tcp', src: '10.0.0.8', dst: '203.0.113.9', sport: 40000 + i, dport: 443 },
      reply: { proto: 'tcp', src: '203.0.113.9', dst: '198.51.100.3', sport: 443, dport: 1030 + i },
      state: 'established', timeout: 60, alg: false, establishedAt: 1, lastActivity: 1,
    }));
    // As sync writes them: packed IPv4 records (the receiver's fast path).
    const recs = synced.map((entry) => ({ entry, withActivity: false, timeout: 60 }));
    expect(await engine.upsertIPv4Records('main', encodeRecords(recs, recs.map(recordSize), clock.now()).subarray(2))).to.equal(2);
    await engine.flush();
    const ofBlock = (event: string): NatBlockLog[] => logs.filter((l) => l.event === event && l.subscriber === '10.0.0.8' && l.address === '198.51.100.3' && l.portStart === 1024);
    await engine.setRole('main', 'master');
    await engine.flush();
    expect(ofBlock('destroy'), 'no release while the conntracks live').to.have.length(0);
    clock.advance(61_000); // both synced conntracks end on the new master
    await engine.flush();
    expect(engine.counters('main').conntracks).to.equal(0);
    expect(ofBlock('destroy'), 'the inherited block released with a log').to.have.length(1);
    expect(ofBlock('allocation'), 'the inherited block logged once as allocated on this node').to.have.length(1);
  });

  it('DNATs virtual-service flows to pool members by hash, honouring weight and client-ip persistence', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    const members = [
      { address: '10.9.0.1', port: 8080, weight: 1 }, { address: '10.9.0.2', port: 8080, weight: 3 }, { address: '10.9.0.3', port: 8080, weight: 0 },
    ];
    await engine.applyVrf('main', {
      name: 'main',
      networkProfiles: [tcpFastPathProfile('fp', { idle: 50 })],
      json: vrfJson('main', {
        virtualServices: [
          { name: 'web', vip: '192.0.2.100', port: 80, protocol: 'tcp', 'pool-member': members, 'network-profile': 'fp', persistence: 'none' },
          { name: 'sticky', vip: '192.0.2.101', port: 80, protocol: 'tcp', 'pool-member': members, persistence: 'client-ip' },
        ],
      }),
    });
    const web = Array.from({ length: 400 }, (_, i): FlowTuple => ({ proto: 'tcp', src: `172.16.${i % 4}.1`, dst: '192.0.2.100', sport: 20000 + i, dport: 80 }));
    const sticky = Array.from({ length: 400 }, (_, i): FlowTuple => ({ proto: 'tcp', src: `172.17.${i % 20}.1`, dst: '192.0.2.101', sport: 20000 + i, dport: 80 }));
    for (const step of handshake([...web, ...sticky])) expect((await engine.inject('main', step)).every((v) => v === Verdict.Forward)).to.equal(true);
    const entries = await allEntries(engine, 'main');
    const webEntries = entries.filter((e) => e.virtualService === 'web');
    expect(webEntries).to.have.length(400);
    const perMember = new Map<string, number>();
    for (const e of webEntries) perMember.set(e.reply.src, (perMember.get(e.reply.src) ?? 0) + 1);
    expect(perMember.has('10.9.0.3')).to.equal(false);
    expect(perMember.get('10.9.0.2') as number).to.be.greaterThan(perMember.get('10.9.0.1') as number);
    // One client over many ports is spread (no persistence) ...
    expect(new Set(webEntries.filter((e) => e.orig.src === '172.16.0.1').map((e) => e.reply.src)).size).to.equal(2);
    // ... but always lands on the same member with client-ip persistence.
    const byClient = new Map<string, Set<string>>();
    for (const e of entries.filter((x) => x.virtualService === 'sticky')) {
      byClient.set(e.orig.src, (byClient.get(e.orig.src) ?? new Set()).add(e.reply.src));
      expect(e.reply.sport).to.equal(8080);
    }
    expect([...byClient.values()].every((s) => s.size === 1)).to.equal(true);
    expect(new Set([...byClient.values()].map((s) => [...s][0])).size).to.equal(2);
    // The profile's session-idle-timeout is the established timeout of its flows.
    expect(new Set(webEntries.map((e) => e.timeout))).to.deep.equal(new Set([50]));
    expect(new Set(entries.filter((e) => e.virtualService === 'sticky').map((e) => e.timeout))).to.deep.equal(new Set([432000]));
  });

  it('with SYN protection a SYN creates no conntrack; the completing ACK creates it established', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('main', {
      name: 'main',
      networkProfiles: [tcpFastPathProfile('guarded', { syn: true })],
      json: vrfJson('main', { virtualServices: [{ name: 'web', vip: '192.0.2.100', port: 80, protocol: 'tcp', 'pool-member': [{ address: '10.9.0.1', port: 80, weight: 1 }], 'network-profile': 'guarded', persistence: 'none' }] }),
    });
    const flood = Array.from({ length: 1000 }, (_, i): SoftPacket => ({ flow: { proto: 'tcp', src: `100.64.${i >> 8}.${i & 255}`, dst: '192.0.2.100', sport: 1234, dport: 80 }, flags: TCP_SYN }));
    expect((await engine.inject('main', flood)).every((v) => v === Verdict.SynCookie)).to.equal(true);
    await engine.flush();
    expect(engine.counters('main')).to.include({ conntracks: 0, synCookies: 1000 });
    const ack = await engine.inject('main', [{ flow: (flood[0] as SoftPacket).flow, flags: TCP_ACK }]);
    expect(ack).to.deep.equal([Verdict.Forward]);
    expect((await allEntries(engine, 'main')).map((e) => e.state)).to.deep.equal(['established']);
  });

  it('mirrors only flows of a tcp-fast-path profile with connection-mirror, and the counters match after sync (rule 10)', async () => {
    const clock = new ManualClock();
    const active = await SoftEngine.create({ clock, workers: 2 });
    const standby = await SoftEngine.create({ clock, workers: 3 });
    try {
      const profiles = [tcpFastPathProfile('mirrored', { mirror: true }), tcpFastPathProfile('plain'), { name: 'proxy', type: 'tcp-proxy', 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': false } }];
      const json = vrfJson('main', {
        virtualServices: [
          { name: 'vs_conn_mirror', vip: '192.0.2.100', port: 80, protocol: 'tcp', 'pool-member': [{ address: '10.9.0.1', port: 80, weight: 1 }], 'network-profile': 'mirrored', persistence: 'none' },
          { name: 'vs_plain', vip: '192.0.2.101', port: 80, protocol: 'tcp', 'pool-member': [{ address: '10.9.0.1', port: 80, weight: 1 }], 'network-profile': 'plain', persistence: 'none' },
          { name: 'vs_proxy', vip: '192.0.2.102', port: 80, protocol: 'tcp', 'pool-member': [{ address: '10.9.0.1', port: 80, weight: 1 }], 'network-profile': 'proxy', persistence: 'none' },
        ],
      });
      await active.applyVrf('main', { name: 'main', json, networkProfiles: profiles });
      await standby.applyVrf('main', { name: 'main', json, networkProfiles: profiles });
      await standby.setRole('main', 'backup');
      const sent: ConntrackEvent[] = [];
      active.onEvent((e) => { if (e.kind === 'established' && !e.entry.noSync && !e.entry.alg) sent.push(e); });
      const fs = ['192.0.2.100', '192.0.2.101', '192.0.2.102'].flatMap((vip, k) => Array.from({ length: 50 + k }, (_, i): FlowTuple => ({ proto: 'tcp', src: `172.16.${k}.${i + 1}`, dst: vip, sport: 3000, dport: 80 })));
      for (const step of handshake(fs)) await active.inject('main', step);
      await active.flush();
      expect(sent.map((e) => e.entry.virtualService)).to.deep.equal(Array(50).fill('vs_conn_mirror'));
      await standby.upsert(sent.map((e) => e.entry));
      const onActive = await active.virtualServiceStats('main');
      const onStandby = await standby.virtualServiceStats('main');
      expect(onActive.get('vs_conn_mirror')).to.deep.equal({ connections: 50, mirrorConnListOnActive: 50, mirroredConnectionsOnStandby: 0 });
      expect(onStandby.get('vs_conn_mirror')).to.deep.equal({ connections: 50, mirrorConnListOnActive: 0, mirroredConnectionsOnStandby: 50 });
      expect(onActive.get('vs_plain')?.mirrorConnListOnActive).to.equal(0);
      expect(onActive.get('vs_proxy')).to.deep.equal({ connections: 52, mirrorConnListOnActive: 0, mirroredConnectionsOnStandby: 0 });
    } finally {
      await active.close();
      await standby.close();
    }
  });

  it('handles IPv6: firewall prefixes, virtual service DNAT, no CG-NAT', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    await engine.applyVrf('main', {
      name: 'main',
      json: vrfJson('main', {
        cgNat,
        firewall: { rule: [{ name: 'v6-block', protocol: 'tcp', 'source-prefix': '2001:db8:bad::/48', action: 'drop' }] },
        virtualServices: [{ name: 'web6', vip: '2001:db8::100', port: 443, protocol: 'tcp', 'pool-member': [{ address: '2001:db8:1::1', port: 8443, weight: 1 }], persistence: 'none' }],
      }),
    });
    const good: FlowTuple = { proto: 'tcp', src: '2001:db8:c1::5', dst: '2001:db8::100', sport: 50000, dport: 443 };
    const bad: FlowTuple = { ...good, src: '2001:db8:bad::5' };
    expect(await engine.inject('main', [{ flow: bad, flags: TCP_SYN }])).to.deep.equal([Verdict.DropFirewall]);
    for (const step of handshake([good])) expect(await engine.inject('main', step)).to.deep.equal([Verdict.Forward]);
    const [e] = await allEntries(engine, 'main');
    expect(e?.state).to.equal('established');
    expect(e?.reply).to.deep.equal({ proto: 'tcp', src: '2001:db8:1::1', dst: '2001:db8:c1::5', sport: 8443, dport: 50000 });
    expect(e?.virtualService).to.equal('web6');
  });
});
