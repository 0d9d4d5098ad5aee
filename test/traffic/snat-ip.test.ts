// SNAT IP on a virtual service in the soft engine (the seed's "Legacy Active/Standby with SNAT IP"
// mode): the server-side tuple is member <-> SNAT IP, ports unique across workers, carried to the
// peer with the conntrack and still forwarding there after the switch to master.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry, FlowTuple } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, Verdict, type SoftPacket } from '../../fastpath/soft/vrf-dataplane.js';
import { tcpFastPathProfile, vrfJson } from '../fastpath/vrf-json.js';

const SNAT = '203.0.113.7';

function handshake(fs: FlowTuple[]): SoftPacket[][] {
  return [fs.map((flow) => ({ flow, flags: TCP_SYN })), fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), fs.map((flow) => ({ flow, flags: TCP_ACK }))];
}

async function entries(engine: SoftEngine): Promise<ConntrackEntry[]> {
  const out: ConntrackEntry[] = [];
  await engine.dump('main', (b) => { out.push(...b); });
  return out;
}

function config(): { name: string; json: Record<string, unknown>; networkProfiles: Record<string, unknown>[] } {
  return {
    name: 'main',
    json: vrfJson('main', {
      virtualServices: [{
        name: 'web', vip: '192.0.2.80', port: 80, protocol: 'tcp', persistence: 'none', 'network-profile': 'mirrored', 'snat-ip': SNAT,
        'pool-member': [{ address: '198.51.100.10', port: 8080, weight: 1 }],
      }],
    }),
    networkProfiles: [tcpFastPathProfile('mirrored', { mirror: true })],
  };
}

describe('traffic: SNAT IP on a virtual service (soft engine)', function () {
  this.timeout(30_000);
  const engines: SoftEngine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
  });

  it('translates the server side to the SNAT IP with unique ports, mirrors it and forwards it after a failover', async () => {
    const clock = new ManualClock();
    const master = await SoftEngine.create({ clock, workers: 2 });
    engines.push(master);
    await master.applyVrf('main', config());
    // 40 clients, all with source port 5000: each needs its own SNAT port towards the one member.
    const flows: FlowTuple[] = Array.from({ length: 40 }, (_, i) => ({ proto: 'tcp', src: `10.3.0.${i + 1}`, dst: '192.0.2.80', sport: 5000, dport: 80 }));
    for (const step of handshake(flows)) expect((await master.inject('main', step)).every((v) => v === Verdict.Forward)).to.equal(true);
    const onMaster = await entries(master);
    expect(onMaster).to.have.length(40);
    for (const e of onMaster) {
      expect(e.reply).to.deep.include({ src: '198.51.100.10', sport: 8080, dst: SNAT });
      expect(e.state).to.equal('established');
      expect(e.virtualService).to.equal('web');
      expect(e.noSync).to.equal(undefined); // mirrored profile: synchronised
    }
    const ports = onMaster.map((e) => e.reply.dport);
    expect(new Set(ports).size).to.equal(40); // unique across both workers
    expect(ports).to.include(5000); // the client's port is kept while free

    // The peer receives them as sync writes them (backup), then becomes master.
    const peer = await SoftEngine.create({ clock, workers: 3 });
    engines.push(peer);
    await peer.applyVrf('main', config());
    await peer.setRole('main', 'backup');
    expect(await peer.upsert(onMaster.map((e) => ({ ...e, synced: true })))).to.equal(40);
    const held = await entries(peer);
    expect(held.map((e) => `${e.reply.dst}:${e.reply.dport}`).sort()).to.deep.equal(onMaster.map((e) => `${SNAT}:${e.reply.dport}`).sort());
    expect((await peer.virtualServiceStats('main')).get('web')?.mirroredConnectionsOnStandby).to.equal(40);
    expect((await peer.inject('main', flows.map((flow) => ({ flow, flags: TCP_ACK })))).every((v) => v === Verdict.DropBackup)).to.equal(true);
    await peer.setRole('main', 'master');
    const after = await peer.inject('main', flows.map((flow) => ({ flow, flags: TCP_ACK })));
    expect(after.filter((v) => v === Verdict.Forward)).to.have.length(40);
    // A new client with the same source port gets a port no synced connection holds.
    const fresh: FlowTuple = { proto: 'tcp', src: '10.3.1.1', dst: '192.0.2.80', sport: 5000, dport: 80 };
    for (const step of handshake([fresh])) await peer.inject('main', step);
    const mine = (await entries(peer)).find((e) => e.orig.src === '10.3.1.1');
    expect(mine?.reply.dst).to.equal(SNAT);
    expect(ports).to.not.include(mine?.reply.dport);
    // Closing releases the port: the next connection from that client port may take 5000 again.
    const holder = onMaster.find((e) => e.reply.dport === 5000) as ConntrackEntry;
    expect(await master.remove('main', [holder.orig])).to.equal(1);
    const again: FlowTuple = { proto: 'tcp', src: '10.3.2.1', dst: '192.0.2.80', sport: 5000, dport: 80 };
    for (const step of handshake([again])) await master.inject('main', step);
    expect((await entries(master)).find((e) => e.orig.src === '10.3.2.1')?.reply.dport).to.equal(5000);
  });

  it('refuses a snat-ip of another address family than the vip (YANG must)', async () => {
    const { loadTandemContext } = await import('../../yang/libyang/index.js');
    const yang = await loadTandemContext();
    try {
      const data = JSON.stringify({ 'tandem-vrf:vrf': [{ name: 'main', 'tandem-virtual-service:virtual-service': [{ name: 'web', vip: '192.0.2.80', port: 80, 'snat-ip': '2001:db8::1' }] }] });
      expect(() => yang.parse(data, { format: 'json', kind: 'data' }).free()).to.throw(/snat-ip must be of the same address family/);
    } finally {
      yang.free();
    }
  });
});
