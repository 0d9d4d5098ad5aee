// Create-or-update on the real kernel when the kernel refuses the first form: a conntrack whose
// reply tuple is held by another (stale) conntrack is refused with EEXIST on create and ENOENT on
// update; it is written once the other one is gone, and reported with its errno when it never goes.
import { expect } from 'chai';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { EEXIST, ENOENT, UpsertOrder, errnoCounts, upsertConntracks } from '../../fastpath/linux/conntrack-upsert.js';
import type { BatchResult } from '../../fastpath/linux/conntrack-netlink.js';
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

/** A table of original-tuple keys that answers creates and updates as the kernel does, and logs every message. */
class FakeTable {
  readonly keys = new Set<string>();
  readonly log: string[] = [];
  private write(form: 'create' | 'update', writes: ConntrackWrite[]): BatchResult {
    const failures: { index: number; errno: number }[] = [];
    for (const [index, w] of writes.entries()) {
      const key = `${w.orig.src}:${w.orig.sport}`;
      this.log.push(`${form} ${key}`);
      if (form === 'create' && this.keys.has(key)) failures.push({ index, errno: EEXIST });
      else if (form === 'update' && !this.keys.has(key)) failures.push({ index, errno: ENOENT });
      else this.keys.add(key);
    }
    return { written: writes.length - failures.length, failures };
  }
  create = async (w: ConntrackWrite[]): Promise<BatchResult> => this.write('create', w);
  update = async (w: ConntrackWrite[]): Promise<BatchResult> => this.write('update', w);
}

describe('linux: upsert order (creates or updates first)', () => {
  const flows = (from: number, n: number): ConntrackWrite[] => Array.from({ length: n }, (_, i) => natted(from + i, 50000 + from + i));

  it('sends updates first once most writes were refused as existing, creates again once most are new', async () => {
    const table = new FakeTable();
    const order = new UpsertOrder();
    const known = flows(1000, 100);
    let r = await upsertConntracks(known, table.create, table.update, [0, 0, 0], order);
    expect([r.first, r.created, r.written, order.first]).to.deep.equal(['create', 100, 100, 'create']);
    // A resync of the same conntracks: refused as existing, updated, and the order learns.
    table.log.length = 0;
    r = await upsertConntracks(known, table.create, table.update, [0, 0, 0], order);
    expect([r.first, r.created, r.written, r.retried, order.first]).to.deep.equal(['create', 0, 100, 100, 'update']);
    expect(table.log.filter((l) => l.startsWith('create'))).to.have.length(100);
    // The next resync batch goes as updates only: one message per conntrack.
    table.log.length = 0;
    r = await upsertConntracks(known, table.create, table.update, [0, 0, 0], order);
    expect([r.first, r.created, r.written, r.retried, r.failures.length]).to.deep.equal(['update', 0, 100, 0, 0]);
    expect(table.log).to.have.length(100);
    expect(table.log.every((l) => l.startsWith('update'))).to.equal(true);
    // Mostly new conntracks while updates go first: created after ENOENT, and back to creates first.
    const fresh = [...flows(5000, 90), ...known.slice(0, 10)];
    r = await upsertConntracks(fresh, table.create, table.update, [0, 0, 0], order);
    expect([r.first, r.created, r.written, r.retried, order.first]).to.deep.equal(['update', 90, 100, 90, 'create']);
    expect(table.keys.size).to.equal(190);
  });

  it('keeps each conntrack\'s messages in order, one form after the answer to the other', async () => {
    const table = new FakeTable();
    const order = new UpsertOrder();
    order.first = 'update';
    const writes = flows(7000, 20);
    for (const w of writes.slice(0, 10)) table.keys.add(`${w.orig.src}:${w.orig.sport}`);
    const r = await upsertConntracks(writes, table.create, table.update, [0, 0, 0], order);
    expect([r.written, r.created, r.failures.length]).to.deep.equal([20, 10, 0]);
    for (const w of writes) {
      const key = `${w.orig.src}:${w.orig.sport}`;
      const forms = table.log.filter((l) => l.endsWith(` ${key}`)).map((l) => l.split(' ')[0]);
      // Existing ones: one update; new ones: the update refused, then the create.
      expect(forms, key).to.deep.equal(w.orig.sport < 7010 ? ['update'] : ['update', 'create']);
    }
  });

  it('reports the last form\'s refusal when a conntrack never settles (updates first)', async () => {
    const order = new UpsertOrder();
    order.first = 'update';
    const calls: string[] = [];
    // A reply-tuple clash: create says EEXIST, update says ENOENT, every time.
    const r = await upsertConntracks(flows(9000, 1),
      async (w) => { calls.push('create'); return { written: 0, failures: w.map((_, index) => ({ index, errno: EEXIST })) }; },
      async (w) => { calls.push('update'); return { written: 0, failures: w.map((_, index) => ({ index, errno: ENOENT })) }; },
      [0, 0, 0], order);
    expect(calls).to.deep.equal(['update', 'create', 'update', 'create', 'update', 'create']);
    expect(r.failures).to.deep.equal([{ index: 0, errno: EEXIST }]);
    expect(r.written).to.equal(0);
  });
});

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

  it('a resync of conntracks the table holds becomes updates only, and changes their timeout and mark', async () => {
    const netlink = nl as ConntrackNetlink;
    const known = Array.from({ length: 600 }, (_, i) => natted(34000 + i, 49000 + i));
    expect((await netlink.upsert(known)).created).to.equal(600);
    const again = known.map((w) => ({ ...w, timeout: 4000, mark: 0x80000000 | 4000 }));
    const learnt = await netlink.upsert(again); // refused as existing: updated, and the order learns
    expect([learnt.first, learnt.created, learnt.written, learnt.retried]).to.deep.equal(['create', 0, 600, 600]);
    const resync = await netlink.upsert(again);
    expect([resync.first, resync.created, resync.written, resync.retried, resync.failures.length]).to.deep.equal(['update', 0, 600, 0, 0]);
    const one = fx.exec(ns, 'conntrack', ['-L', '-p', 'tcp', '--sport', '34007']);
    expect(one).to.contain('mark=2147487648'); // 0x80000000 | 4000
    // New ones while updates go first: still created, and creates go first again.
    const fresh = Array.from({ length: 300 }, (_, i) => natted(35000 + i, 52000 + i));
    const back = await netlink.upsert(fresh);
    expect([back.first, back.created, back.written]).to.deep.equal(['update', 300, 300]);
    expect((await netlink.upsert([natted(36000, 53000)])).first).to.equal('create');
    await netlink.delete([...known, ...fresh, natted(36000, 53000)].map((w) => w.orig));
  });
});
