// The switch to master's guard removal over nf_tables netlink (fastpath/linux/guard-removal-socket.ts),
// against the kernel in a namespace of its own: the chain and its rules go in one acknowledged
// batch, the rest of the table stays; an absent chain counts as done; a refusal is an error.
import { expect } from 'chai';
import { GuardRemovalSocket, encodeGuardRemoval } from '../../fastpath/linux/guard-removal-socket.js';
import { backupGuardLines } from '../../fastpath/linux/backup-guard.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

describe('linux: guard removal over nf_tables netlink', () => {
  it('encodes one DELCHAIN between batch begin and end, acked by seq', () => {
    const buf = encodeGuardRemoval('tandem', 7);
    const types: number[] = [];
    const seqs: number[] = [];
    for (let off = 0; off < buf.length;) {
      const len = buf.readUInt32LE(off);
      types.push(buf.readUInt16LE(off + 4));
      seqs.push(buf.readUInt32LE(off + 8));
      off += len;
    }
    expect(types).to.deep.equal([16, (10 << 8) | 5, 17]);
    expect(seqs).to.deep.equal([6, 7, 8]);
    expect(buf.includes(Buffer.from('backup_guard\0'))).to.equal(true);
  });

  describe('against the kernel (root)', function () {
    const fx = new NamespaceFixture('tg');
    let ns = '';
    before(function () {
      if (!isRoot()) {
        console.log(`    (skipped: ${ROOT_SKIP_REASON})`);
        this.skip();
      }
      ns = fx.add('g');
    });
    after(() => fx.cleanup());

    // The guard as a backup's table holds it (its named counter included), beside a forward chain.
    const table = [
      'table inet tandem {',
      '  counter backup_drops { }',
      ...backupGuardLines(),
      '  chain forward { type filter hook forward priority 0; policy drop; ct state established accept; }',
      '}',
    ].join('\n');

    it('deletes the guard chain and only it; a second removal finds nothing and succeeds', async () => {
      fx.exec(ns, 'nft', ['-f', '-'], `${table}\n`);
      expect(fx.exec(ns, 'nft', ['list', 'table', 'inet', 'tandem'])).to.include('chain backup_guard');
      await new GuardRemovalSocket(ns, 'tandem').remove();
      const after = fx.exec(ns, 'nft', ['list', 'table', 'inet', 'tandem']);
      expect(after).to.not.include('backup_guard');
      expect(after).to.include('chain forward');
      await new GuardRemovalSocket(ns, 'tandem').remove(); // ENOENT: already master
    });

    it('has removed the chain when remove() returns, before any loop turn (sentAt is then)', async () => {
      fx.exec(ns, 'nft', ['flush', 'ruleset']);
      fx.exec(ns, 'nft', ['-f', '-'], `${table}\n`);
      const socket = new GuardRemovalSocket(ns, 'tandem');
      const before = performance.timeOrigin + performance.now();
      const removing = socket.remove();
      // execFileSync: no event-loop turn between remove() and this listing.
      const listing = fx.exec(ns, 'nft', ['list', 'table', 'inet', 'tandem']);
      expect(socket.sentAt).to.be.a('number').and.at.least(before);
      expect(listing).to.not.include('backup_guard');
      await removing;
    });

    it('rejects with the errno when the kernel refuses', async () => {
      fx.exec(ns, 'nft', ['flush', 'ruleset']);
      // A chain still referenced by a jump cannot be deleted (EBUSY): a guard chain of that name
      // referenced here stands for any refusal.
      fx.exec(ns, 'nft', ['-f', '-'], 'table inet tandem {\n  chain backup_guard { counter; }\n  chain forward { type filter hook forward priority 0; jump backup_guard; }\n}\n');
      let error: Error | undefined;
      await new GuardRemovalSocket(ns, 'tandem').remove().catch((err: Error) => { error = err; });
      expect(error?.message).to.match(/refused the guard removal: errno 16/);
      expect(fx.exec(ns, 'nft', ['list', 'table', 'inet', 'tandem'])).to.include('chain backup_guard');
    });

    it('can be used once', async () => {
      fx.exec(ns, 'nft', ['flush', 'ruleset']);
      const socket = new GuardRemovalSocket(ns, 'tandem');
      await socket.remove();
      let error: Error | undefined;
      await socket.remove().catch((err: Error) => { error = err; });
      expect(error?.message).to.include('already used');
    });
  });
});
