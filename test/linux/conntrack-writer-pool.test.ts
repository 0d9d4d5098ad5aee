// The writer threads on the real kernel (conntrack-writer-pool.ts): concurrent batches coalesce
// into few chunks, each batch gets its own refusals back (indexes into its own writes), one batch
// with bad input fails alone, and the messages of batches that are queued together keep their
// order (a create then an update of the same conntrack); a thread that ends fails what it held
// and gets no more chunks (its writes went nowhere and would otherwise never be answered).
import { expect } from 'chai';
import { ConntrackWriterPool } from '../../fastpath/linux/conntrack-writer-pool.js';
import type { ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import type { Worker } from 'node:worker_threads';

const TRACKING_RULESET = `table inet tandem_test {
  chain input { type filter hook input priority 0; ct state established,related accept; }
  chain postrouting { type nat hook postrouting priority 100; }
}`;

function natted(i: number, mark = 1): ConntrackWrite {
  return {
    orig: { proto: 'tcp', src: `10.9.${i >> 8}.${i & 255}`, dst: '192.168.50.9', sport: 20000 + i, dport: 443 },
    reply: { proto: 'tcp', src: '192.168.50.9', dst: '192.168.60.1', sport: 443, dport: 30000 + i },
    state: 'established',
    timeout: 3000,
    mark,
  };
}

describe('linux: conntrack writer threads', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture();
  let ns = '';
  let pool: ConntrackWriterPool | undefined;

  before(async function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ns = fx.add('wp');
    fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
    pool = await ConntrackWriterPool.start(ns, 2);
  });

  after(async () => {
    await pool?.close();
    await fx.cleanup();
  });

  const count = (): number => Number(fx.exec(ns, 'conntrack', ['-C']).trim());

  it('coalesces 300 concurrent small batches into few chunks, and answers each with its own refusals', async () => {
    const p = pool as ConntrackWriterPool;
    fx.exec(ns, 'conntrack', ['-F']);
    // Every third batch's second write already exists (created first): refused with EEXIST at index 1.
    const batches = Array.from({ length: 300 }, (_, b) => Array.from({ length: 16 }, (_, k) => natted(b * 16 + k)));
    const existing = batches.filter((_, b) => b % 3 === 0).map((batch) => batch[1] as ConntrackWrite);
    expect((await p.create(existing)).written).to.equal(existing.length);
    const chunksBefore = p.stats.chunks;
    const results = await Promise.all(batches.map((batch) => p.create(batch)));
    const chunks = p.stats.chunks - chunksBefore;
    expect(chunks).to.be.below(60); // 300 batches, 4,800 messages: chunks of up to 1,024 once the threads are busy
    for (const [b, r] of results.entries()) {
      if (b % 3 === 0) {
        expect(r.failures, `batch ${b}`).to.deep.equal([{ index: 1, errno: 17 }]);
        expect(r.written).to.equal(15);
      } else {
        expect(r.failures, `batch ${b}`).to.deep.equal([]);
        expect(r.written).to.equal(16);
      }
    }
    expect(count()).to.equal(4800);
  });

  it('fails a batch with bad input alone; the batches queued with it are written', async () => {
    const p = pool as ConntrackWriterPool;
    fx.exec(ns, 'conntrack', ['-F']);
    const good = Array.from({ length: 20 }, (_, b) => Array.from({ length: 8 }, (_, k) => natted(5000 + b * 8 + k)));
    const bad = [natted(6000), { ...natted(6001), orig: { ...natted(6001).orig, src: '10.1.0' } }];
    const outcomes = await Promise.allSettled([...good.slice(0, 10).map((g) => p.create(g)), p.create(bad), ...good.slice(10).map((g) => p.create(g))]);
    const rejected = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[];
    expect(rejected).to.have.length(1);
    expect(String(rejected[0]?.reason)).to.contain('not an IP address: "10.1.0"');
    expect(outcomes[10]?.status).to.equal('rejected');
    expect(count()).to.equal(160);
  });

  it('keeps the order of batches queued together: a create then an update of the same conntrack', async () => {
    const p = pool as ConntrackWriterPool;
    fx.exec(ns, 'conntrack', ['-F']);
    // Keep the threads busy so that the pairs wait in the queue together.
    const busy = p.create(Array.from({ length: 4000 }, (_, i) => natted(10000 + i)));
    const pairs = Array.from({ length: 50 }, (_, i) => natted(20000 + i));
    const results = await Promise.all(pairs.flatMap((w) => [p.create([w]), p.update([{ ...w, mark: 7 }])]));
    await busy;
    for (const r of results) expect(r.failures).to.deep.equal([]);
    const listed = fx.exec(ns, 'conntrack', ['-L', '-p', 'tcp', '--dport', '443', '--mark', '7']);
    expect(listed.trim().split('\n').filter((l) => l.includes('mark=7'))).to.have.length(50);
  });

  it('a thread that ends: the other one takes the writes; with none left, writes fail at once instead of never', async () => {
    fx.exec(ns, 'conntrack', ['-F']);
    const own = await ConntrackWriterPool.start(ns, 2);
    const threads = (own as unknown as { writers: { worker: Worker }[] }).writers;
    // The thread ends by itself (its socket closed, as a crash of its work would end it): terminate()
    // from outside would tear the netlink addon down under its open socket and can abort the process.
    const end = async (w: Worker | undefined): Promise<void> => {
      if (!w) return;
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ close: true });
      await exited;
    };
    const within = <T>(p: Promise<T>, ms: number): Promise<T> => Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))]);
    try {
      await end(threads[0]?.worker);
      const r = await within(own.upsert(Array.from({ length: 3000 }, (_, i) => natted(30000 + i))), 20_000);
      expect(r.written).to.equal(3000);
      expect(r.failures).to.deep.equal([]);
      await end(threads[1]?.worker);
      let err: Error | undefined;
      await within(own.upsert([natted(40000)]), 5000).catch((e: Error) => { err = e; });
      expect(err?.message).to.match(/every conntrack writer thread is gone/);
    } finally {
      await own.close();
    }
  });
});
