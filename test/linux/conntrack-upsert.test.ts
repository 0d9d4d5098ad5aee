// Create-or-update on the real kernel when the kernel refuses the first form: a conntrack whose
// reply tuple is held by another (stale) conntrack is refused with EEXIST on create and ENOENT on
// update; it is written once the other one is gone, and reported with its errno when it never goes.
import { expect } from 'chai';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { ENOENT, errnoCounts, upsertConntracks } from '../../fastpath/linux/conntrack-upsert.js';
import type { ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const TRACKING_RULESET = `table inet tandem_test {
  chain input { type filter hook input priority 0; ct state established,related accept; }
  chain postrouting { type nat hook postrouting priority 100; }
}`;

/** A SNATed conntrack: client port `sport`, bound to public port `natPort` of 192.168.60.1. */
function natted(sport: number, natPort: number): ConntrackWrite {
  return {
    orig: { proto: 'tcp', src: '10.1.0.5', dst: '192.168.50.9', sport, dport: 443 },
    reply: { proto: 'tcp', src: '192.168.50.9', dst: '192.168.60.1', sport: 443, dport: natPort },
    state: 'established',
    timeout: 3000,
    mark: 0x80000000 | 3000,
  };
}

describe('linux: synced conntracks the kernel refuses are retried in the other form', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture();
  let ns = '';
  let nl: ConntrackNetlink | undefined;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ns = fx.add('ups');
    fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
    nl = new ConntrackNetlink({ namespace: ns });
  });

  after(async () => {
    nl?.close();
    await fx.cleanup();
  });

  function count(): number {
    return Number(fx.exec(ns, 'conntrack', ['-C']).trim());
  }

  it('the kernel refuses a reply-tuple clash: EEXIST on create, ENOENT on update', async () => {
    const netlink = nl as ConntrackNetlink;
    const stale = natted(30001, 45001);
    expect((await netlink.create([stale])).written).to.equal(1);
    const fresh = natted(30002, 45001); // a new flow got the stale one's public port
    expect((await netlink.create([fresh])).failures).to.deep.equal([{ index: 0, errno: 17 }]);
    expect((await netlink.update([fresh])).failures).to.deep.equal([{ index: 0, errno: ENOENT }]);
    await netlink.delete([stale.orig]);
  });

  it('writes the conntrack once the stale one holding its reply tuple is deleted (ENOENT -> create again)', async () => {
    const netlink = nl as ConntrackNetlink;
    const stale = natted(31001, 46001);
    const others = Array.from({ length: 50 }, (_, i) => natted(32000 + i, 47000 + i));
    await netlink.create([stale, ...others.slice(0, 25)]); // half of the others exist: they are updated
    const fresh = natted(31002, 46001);
    const before = count();
    let creates = 0;
    const result = await upsertConntracks([...others, fresh], async (w) => {
      const r = await netlink.create(w);
      // The stale conntrack's delete lands (as it would from another sync connection) after the first create.
      if (creates++ === 0) await netlink.delete([stale.orig]);
      return r;
    }, (w) => netlink.update(w));
    expect(result.failures).to.deep.equal([]);
    expect(result.written).to.equal(51);
    expect(result.created).to.equal(26);
    expect(creates).to.equal(2);
    expect(result.retried).to.equal(25 + 1 + 1); // 25 + fresh updated after EEXIST, fresh created again after ENOENT
    expect(count()).to.equal(before - 1 + 26);
    const listed = fx.exec(ns, 'conntrack', ['-L', '-p', 'tcp', '--sport', '31002']);
    expect(listed).to.contain('dport=46001');
  });

  it('reports what still fails after the last round, with its errno, and writes the rest', async () => {
    const netlink = nl as ConntrackNetlink;
    const stale = natted(33001, 48001);
    await netlink.create([stale]);
    const fresh = natted(33002, 48001);
    const ok = natted(33003, 48003);
    const started = Date.now();
    const result = await netlink.upsert([ok, fresh]);
    expect(result.written).to.equal(1);
    expect(result.failures).to.deep.equal([{ index: 1, errno: ENOENT }]);
    expect(errnoCounts(result.failures)).to.deep.equal({ 2: 1 });
    expect(Date.now() - started).to.be.below(2000); // bounded: a few short pauses, not a wait
    expect(fx.exec(ns, 'conntrack', ['-L'])).to.not.contain('sport=33002');
  });
});
