// The linux engine's packed dump (LinuxEngine.dumpPacked, kernel-dump-batch.ts) says of every
// conntrack of a real kernel table what dump() says of it: the fields of plain IPv4 conntracks
// read from the kernel's bytes, everything else (IPv6, a virtual service's VIP) as entries.
import { expect } from 'chai';
import type { ConntrackEntry, FlowTuple, PackedConntrackBatch, VrfDataplaneConfig } from '../../fastpath/engine.js';
import { LinuxEngine, SYNCED_MARK } from '../../fastpath/linux/linux-engine.js';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import type { ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { parseIPv4 } from '../../fastpath/ipv4-tuple-table.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const STATES = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'];
const PROTOS = ['tcp', 'udp', 'icmp'];

function vrfConfig(): VrfDataplaneConfig {
  return {
    name: 'main',
    conntrackMax: 1 << 20,
    networkProfiles: [{ name: 'plain', type: 'tcp-fast-path', 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': false } }],
    json: {
      name: 'main',
      'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, rule: [] },
      'tandem-virtual-service:virtual-service': [{
        name: 'web', vip: '10.9.9.9', port: 80, protocol: 'tcp', persistence: 'none', 'network-profile': 'plain',
        'pool-member': [{ address: '10.77.1.2', port: 7301, weight: 1 }],
      }],
    },
  };
}

/** Conntracks of every shape the packed dump reads or hands over as entries. */
function writes(): ConntrackWrite[] {
  const out: ConntrackWrite[] = [];
  const states = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'] as const;
  for (let i = 0; i < 2400; i++) {
    const client = `10.1.${i >> 8}.${i & 255}`;
    const sport = 1024 + i;
    const mark = i % 3 === 0 ? (SYNCED_MARK | (100 + i)) >>> 0 : i % 3 === 1 ? 7 : 0;
    switch (i % 8) {
      case 0: case 1: case 2: // TCP with source NAT, every state
        out.push({ orig: { proto: 'tcp', src: client, dst: '198.51.100.10', sport, dport: 443 },
          reply: { proto: 'tcp', src: '198.51.100.10', dst: '192.0.2.1', sport: 443, dport: 20000 + (i % 40000) }, state: states[i % 8] as typeof states[number], timeout: 3600, mark });
        break;
      case 3: // UDP, no NAT
        out.push({ orig: { proto: 'udp', src: client, dst: '198.51.100.53', sport, dport: 53 },
          reply: { proto: 'udp', src: '198.51.100.53', dst: client, sport: 53, dport: sport }, state: 'established', timeout: 120, mark });
        break;
      case 4: // ICMP echo
        out.push({ orig: { proto: 'icmp', src: client, dst: '198.51.100.1', sport: i, dport: 0 },
          reply: { proto: 'icmp', src: '198.51.100.1', dst: '192.0.2.3', sport: i, dport: 0 }, state: 'established', timeout: 30, mark });
        break;
      case 5: // the virtual service's VIP: an entry
        out.push({ orig: { proto: 'tcp', src: client, dst: '10.9.9.9', sport, dport: 80 },
          reply: { proto: 'tcp', src: '10.77.1.2', dst: client, sport: 7301, dport: sport }, state: 'established', timeout: 300, mark });
        break;
      case 6: // IPv6: an entry
        out.push({ orig: { proto: 'tcp', src: `2001:db8::${i.toString(16)}`, dst: '2001:db8:1::10', sport, dport: 443 },
          reply: { proto: 'tcp', src: '2001:db8:1::10', dst: `2001:db8::${i.toString(16)}`, sport: 443, dport: sport }, state: 'established', timeout: 3600, mark });
        break;
      default: // over loopback: never synced
        out.push({ orig: { proto: 'tcp', src: '127.0.0.1', dst: '127.0.0.1', sport, dport: 8830 },
          reply: { proto: 'tcp', src: '127.0.0.1', dst: '127.0.0.1', sport: 8830, dport: sport }, state: 'established', timeout: 3600, mark });
    }
  }
  return out;
}

const keyOf = (t: FlowTuple): string => `${t.proto} ${t.src}:${t.sport}>${t.dst}:${t.dport}`;

/** An entry without what changes between two reads (the kernel's timeout counts down; lastActivity is "now"). */
function stable(e: ConntrackEntry): Partial<ConntrackEntry> {
  const { lastActivity: _a, timeout: _t, ...rest } = e;
  return rest;
}

describe('linux: the packed dump of the linux engine', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture('kd');
  let engine: LinuxEngine | undefined;
  let nl: ConntrackNetlink | undefined;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
  });

  after(async () => {
    nl?.close();
    await engine?.close();
    await fx.cleanup();
  });

  it('says of every conntrack what dump() says, in batches handed over while the kernel dumps', async () => {
    const ns = fx.add('ns');
    engine = new LinuxEngine({ namespaceOf: () => ns });
    await engine.prepareVrf(vrfConfig());
    await engine.applyVrf('main', vrfConfig());
    let created = 0;
    engine.onEvent((ev) => {
      if (ev.kind === 'new') created++;
    });
    nl = new ConntrackNetlink({ namespace: ns });
    const all = writes();
    expect((await nl.create(all)).failures).to.deep.equal([]);
    // The engine (master) records when each became established from its events: both dumps after them.
    const deadline = Date.now() + 30_000;
    while (created < all.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(created, 'new events read').to.equal(all.length);

    const byKey = new Map<string, ConntrackEntry>();
    await engine.dump('main', (entries) => {
      for (const e of entries) byKey.set(keyOf(e.orig), e);
    });
    expect(byKey.size).to.equal(all.length);

    let seen = 0;
    let plain = 0;
    let batches = 0;
    await engine.dumpPacked('main', async (b: PackedConntrackBatch) => {
      batches++;
      for (let i = 0; i < b.count; i++) {
        const e = b.entry(i);
        const want = byKey.get(keyOf(e.orig));
        expect(want, keyOf(e.orig)).to.not.equal(undefined);
        const w = want as ConntrackEntry;
        expect(stable(e)).to.deep.equal(stable(w));
        expect(b.alg(i)).to.equal(w.alg);
        expect(b.synced(i)).to.equal(w.synced === true);
        expect(b.noSync(i)).to.equal(w.noSync === true);
        expect(b.establishedAt(i)).to.equal(w.establishedAt);
        // A synced conntrack's timeout is its mark's; the kernel's own counts down between the two dumps.
        if (w.synced) expect(b.timeout(i)).to.equal(w.timeout);
        else expect(b.timeout(i)).to.be.within(w.timeout - 5, w.timeout);
        const isPlain = w.orig.src.includes('.') && w.virtualService === undefined;
        expect(b.isPlainIPv4(i), keyOf(w.orig)).to.equal(isPlain);
        if (isPlain) {
          plain++;
          expect(PROTOS[b.protoIndex(i)]).to.equal(w.orig.proto);
          expect(STATES[b.stateIndex(i)]).to.equal(w.state);
          const tuples = [w.orig.src, w.orig.dst, w.reply.src, w.reply.dst];
          tuples.forEach((a, k) => expect(b.ipv4(i, k)).to.equal(parseIPv4(a)));
          [w.orig.sport, w.orig.dport, w.reply.sport, w.reply.dport].forEach((p, k) => expect(b.port(i, k)).to.equal(p));
        }
        seen++;
      }
      await new Promise((r) => setImmediate(r)); // a consumer that awaits (sync waits for room on its connections)
    });
    expect(seen).to.equal(all.length);
    expect(plain).to.equal(all.length * 6 / 8); // all but IPv6 and the VIP's
    expect(batches).to.be.at.least(3);
  });

  it('a consumer that throws fails the dump, and the next dump on the socket still runs', async () => {
    const e = engine as LinuxEngine;
    let calls = 0;
    let failure: Error | undefined;
    await e.dumpPacked('main', () => {
      calls++;
      throw new Error('consumer failed');
    }).catch((err: Error) => { failure = err; });
    expect(failure?.message).to.equal('consumer failed');
    expect(calls).to.equal(1);
    let n = 0;
    await e.dump('main', (entries) => { n += entries.length; });
    expect(n).to.equal(writes().length);
  });
});
