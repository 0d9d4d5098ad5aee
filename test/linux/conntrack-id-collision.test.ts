// Issue 11 item 2, the cause of the 1-2 conntracks per 10^5 that never reached the backup: the
// kernel's conntrack id is a 32-bit hash (nf_ct_get_id), so two live conntracks share one about
// once per 10^5 (birthday bound: n^2 / 2^33). The linux engine recorded "seen established" by id,
// so the second conntrack of a shared id never produced an 'established' event and sync never sent
// it. Here (root): established conntracks are created in a namespace through ctnetlink, in batches,
// until two of them share an id (read by a conntrack event reader of the test's own); a master
// engine on the namespace must have reported every one of them established.
import { expect } from 'chai';
import type { VrfDataplaneConfig } from '../../fastpath/engine.js';
import { ConntrackEventStream } from '../../fastpath/linux/conntrack-events.js';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import type { ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { LinuxEngine } from '../../fastpath/linux/linux-engine.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const BATCH = 25_000;
/** Below the default nf_conntrack_max (262,144); a shared id shows up before this in 99.9 % of runs. */
const MOST = 250_000;

function vrfConfig(): VrfDataplaneConfig {
  return {
    name: 'main',
    conntrackMax: 1 << 20,
    networkProfiles: [],
    json: { name: 'main', 'tandem-firewall:firewall': { 'default-action': 'accept', rule: [] } },
  };
}

/** Established TCP conntracks i in [from, to), all distinct. */
function writes(from: number, to: number): ConntrackWrite[] {
  const out: ConntrackWrite[] = [];
  for (let i = from; i < to; i++) {
    const orig = { proto: 'tcp' as const, src: `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: '198.51.100.7', sport: 1024 + (i % 50000), dport: 443 };
    out.push({ orig, reply: { proto: 'tcp', src: orig.dst, dst: orig.src, sport: orig.dport, dport: orig.sport }, state: 'established', timeout: 600 });
  }
  return out;
}

const key = (t: { src: string; sport: number }): string => `${t.src}:${t.sport}`;

describe('linux: conntracks that share a kernel id are each reported established (issue 11)', function () {
  this.timeout(120_000);
  const fx = new NamespaceFixture('idc');
  let ns = '';
  let engine: LinuxEngine | undefined;
  let events: ConntrackEventStream | undefined;
  let netlink: ConntrackNetlink | undefined;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ns = fx.add('m');
  });

  after(async () => {
    events?.close();
    netlink?.close();
    await engine?.close();
    try {
      if (ns) fx.exec(ns, 'conntrack', ['-F']);
    } catch {
      // nothing to flush
    }
    await fx.cleanup();
  });

  it('every conntrack created gets its established event, also the twin of a shared id', async function () {
    engine = new LinuxEngine({ namespaceOf: () => ns });
    await engine.prepareVrf(vrfConfig());
    await engine.applyVrf('main', vrfConfig());
    const established = new Set<string>();
    engine.onEvent((ev) => {
      if (ev.kind === 'established') established.add(key(ev.entry.orig));
    });
    // The kernel ids, from a reader of our own: id -> original tuples created with it.
    const byId = new Map<number, string[]>();
    let lost = 0;
    events = ConntrackEventStream.start((n) => {
      if (n.kind !== 'new') return;
      const list = byId.get(n.conntrack.id);
      if (list) list.push(key(n.conntrack.orig)); else byId.set(n.conntrack.id, [key(n.conntrack.orig)]);
    }, (dropped) => { lost += dropped; }, { namespace: ns });
    netlink = new ConntrackNetlink({ namespace: ns });
    let created = 0;
    let twins: string[] | undefined;
    while (created < MOST && twins === undefined) {
      const r = await netlink.create(writes(created, created + BATCH));
      expect(r.failures, 'creates refused by the kernel').to.deep.equal([]);
      created += BATCH;
      // Both readers have seen this batch once the engine counted all of it.
      const deadline = Date.now() + 60_000;
      while (engine.counters('main').conntracks < created || [...byId.values()].reduce((n, l) => n + l.length, 0) < created) {
        if (Date.now() > deadline) throw new Error(`events of ${created} creates not all read (engine ${engine.counters('main').conntracks}, lost ${lost})`);
        await new Promise((r) => setTimeout(r, 50));
      }
      twins = [...byId.values()].find((l) => l.length > 1);
    }
    expect(lost, 'events lost by the test\'s reader').to.equal(0);
    const detail = await engine.counterDetail('main');
    expect(detail.eventsLost, 'events lost by the engine').to.equal(0);
    if (twins === undefined) {
      console.log(`    (skipped: no two of ${created} conntracks share a kernel id in this run, p < 0.001)`);
      this.skip();
    }
    console.log(`    (${created} conntracks; ${twins.join(' and ')} share a kernel id)`);
    for (const t of twins) expect(established.has(t), `${t} reported established`).to.equal(true);
    expect(established.size, 'conntracks reported established').to.equal(created);
    // The live counts (tandem-fast-path-counters by state) count both twins: they are keyed by the
    // original tuple, not by the shared id.
    const live = (await engine.counterDetail('main')).byState.reduce((n, c) => n + c, 0);
    expect(live, 'conntracks in the live counts by state').to.equal(created);
  });
});
