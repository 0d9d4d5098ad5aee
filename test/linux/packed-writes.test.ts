// Packed IPv4 sync records into the kernel (LinuxEngine.upsertIPv4Records): the messages written
// from a sync frame's record bytes must be the ones upsert() sends for the entries the receiver
// decodes from the same frame — byte for byte in the encoder, and the same conntracks in the kernel
// (`conntrack -L` of two namespaces, one written each way) — and refusals keep their retries and
// errnos, indexed by record.
import { expect } from 'chai';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { BACKUP_TIMEOUT_S, LinuxEngine, SYNCED_MARK } from '../../fastpath/linux/linux-engine.js';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { ConntrackWriterPool } from '../../fastpath/linux/conntrack-writer-pool.js';
import {
  MessageBuilder, NLM_F_ACK, recordOrig, recordState, recordWrite, writeCreate, writeRecordCreate, writeRecordUpdate, writeUpdate,
  type ConntrackWrite, type RecordWriteOptions,
} from '../../fastpath/linux/ctnetlink-codec.js';
import { decodeEntries, encodeRecords, isPlainIPv4Payload, recordSize, type SyncRecord } from '../../sync/conntrack-codec.js';
import { labVrfConfig } from '../../lab/lab-topology.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const NOW = 1_000_000;

function entry(orig: ConntrackEntry['orig'], reply: ConntrackEntry['reply'], state: ConntrackEntry['state'], timeout: number): ConntrackEntry {
  return { vrf: 'main', orig, reply, state, timeout, alg: false, establishedAt: NOW, lastActivity: NOW };
}

/** Every shape the fixed layout and the fallback handle: NAT each way, both, none; TCP states, UDP, ICMP. */
function mixedEntries(base: number): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (let i = 0; i < 50; i++) {
    const sport = base + i;
    const client = `10.1.${i >> 4}.${(i & 15) + 2}`;
    switch (i % 10) {
      case 0: // CG-NAT: source NAT to a pool address and port
        out.push(entry({ proto: 'tcp', src: client, dst: '198.51.100.10', sport, dport: 443 },
          { proto: 'tcp', src: '198.51.100.10', dst: '192.0.2.1', sport: 443, dport: 20000 + i }, 'established', 7200));
        break;
      case 1: // virtual service: destination NAT to a pool member
        out.push(entry({ proto: 'tcp', src: client, dst: '10.9.9.9', sport, dport: 80 },
          { proto: 'tcp', src: '10.77.1.2', dst: client, sport: 7301, dport: sport }, 'established', 300));
        break;
      case 2: // both
        out.push(entry({ proto: 'tcp', src: client, dst: '10.9.9.9', sport, dport: 80 },
          { proto: 'tcp', src: '10.77.1.2', dst: '192.0.2.2', sport: 7301, dport: 21000 + i }, 'fin-wait', 120));
        break;
      case 3: // no NAT
        out.push(entry({ proto: 'tcp', src: client, dst: '198.51.100.11', sport, dport: 22 },
          { proto: 'tcp', src: '198.51.100.11', dst: client, sport: 22, dport: sport }, 'close-wait', 60));
        break;
      case 4: // not yet answered (the status carries no seen-reply)
        out.push(entry({ proto: 'tcp', src: client, dst: '198.51.100.12', sport, dport: 8080 },
          { proto: 'tcp', src: '198.51.100.12', dst: '192.0.2.1', sport: 8080, dport: 22000 + i }, 'syn-sent', 120));
        break;
      case 5: // UDP with source NAT
        out.push(entry({ proto: 'udp', src: client, dst: '198.51.100.53', sport, dport: 53 },
          { proto: 'udp', src: '198.51.100.53', dst: '192.0.2.3', sport: 53, dport: 23000 + i }, 'established', 180));
        break;
      case 6: // ICMP echo with source NAT (the attribute encoder's path), the id kept or translated
        out.push(entry({ proto: 'icmp', src: client, dst: '198.51.100.1', sport: 100 + i, dport: 0 },
          { proto: 'icmp', src: '198.51.100.1', dst: '192.0.2.3', sport: i % 20 === 6 ? 100 + i : 40000 + i, dport: 0 }, 'established', 30));
        break;
      case 8: // source NAT of the port only (same address)
        out.push(entry({ proto: 'tcp', src: client, dst: '198.51.100.14', sport, dport: 443 },
          { proto: 'tcp', src: '198.51.100.14', dst: client, sport: 443, dport: 25000 + i }, 'established', 7200));
        break;
      case 9: // destination NAT of the port only (a virtual service on its own address)
        out.push(entry({ proto: 'tcp', src: client, dst: '10.9.9.10', sport, dport: 80 },
          { proto: 'tcp', src: '10.9.9.10', dst: client, sport: 8080, dport: sport }, 'syn-recv', 60));
        break;
      default: // time-wait, timeout 0
        out.push(entry({ proto: 'tcp', src: client, dst: '198.51.100.13', sport, dport: 25 },
          { proto: 'tcp', src: '198.51.100.13', dst: '192.0.2.2', sport: 25, dport: 24000 + i }, 'time-wait', 0));
    }
  }
  return out;
}

/** A sync frame's CT_NEW payload (count + records), as the master's sender builds it. */
function payloadOf(entries: ConntrackEntry[]): Buffer {
  const recs: SyncRecord[] = entries.map((e) => ({ entry: e, withActivity: false, timeout: e.timeout }));
  return encodeRecords(recs, recs.map(recordSize), NOW);
}

const markOf = (timeout: number): number => (SYNCED_MARK | Math.min(timeout, 0x7fffffff)) >>> 0;

/** What LinuxEngine.upsert writes for an entry (backup: held without expiry). */
function engineWrite(e: ConntrackEntry, backup: boolean): ConntrackWrite {
  return { orig: e.orig, reply: e.reply, state: e.state, timeout: backup ? BACKUP_TIMEOUT_S : e.timeout, mark: markOf(Math.round(e.timeout)) };
}

describe('linux: packed IPv4 sync records into the kernel', function () {
  this.timeout(60_000);

  describe('encoder', () => {
    const entries = mixedEntries(30000);
    const payload = payloadOf(entries);
    const records = payload.subarray(2);
    const decoded = decodeEntries(payload, 'main', NOW);

    it('the test frame is what the receiver hands the packed path', () => {
      expect(isPlainIPv4Payload(payload)).to.equal(true);
      expect(decoded.map((e) => e.orig)).to.deep.equal(entries.map((e) => e.orig));
    });

    for (const backup of [true, false]) {
      const options: RecordWriteOptions = { timeout: backup ? BACKUP_TIMEOUT_S : undefined, mark: markOf };
      it(`writes creates and updates byte for byte as the object path (${backup ? 'backup' : 'master'} timeouts)`, () => {
        for (const [form, fromRecord, fromObject] of [['create', writeRecordCreate, writeCreate], ['update', writeRecordUpdate, writeUpdate]] as const) {
          const a = new MessageBuilder(64);
          const b = new MessageBuilder(64);
          decoded.forEach((e, i) => {
            const flags = i % 5 === 4 ? NLM_F_ACK : 0;
            fromRecord(a, records, i, 1000 + i, flags, options);
            fromObject(b, engineWrite(e, backup), 1000 + i, flags);
            expect(a.size, `${form} of record ${i} (${e.orig.proto}) ends where the object's does`).to.equal(b.size);
          });
          expect(Buffer.compare(a.finish(), b.finish()), `${form} datagrams`).to.equal(0);
        }
        decoded.forEach((e, i) => {
          expect(recordWrite(records, i, options)).to.deep.equal(engineWrite(e, backup));
          expect(recordOrig(records, i)).to.deep.equal(e.orig);
          expect(recordState(records, i)).to.equal(e.state);
        });
      });
    }

    it('refuses a record it cannot read instead of writing a wrong message', () => {
      const bad = Buffer.from(records.subarray(0, 34));
      bad[1] = 8; // no ninth TCP state
      expect(() => writeRecordCreate(new MessageBuilder(), bad, 0, 1, 0, { mark: markOf })).to.throw('bad packed IPv4 record 0');
    });
  });

  describe('kernel', () => {
    const fx = new NamespaceFixture();
    let objectsNs = '';
    let packedNs = '';
    let objects: LinuxEngine | undefined;
    let packed: LinuxEngine | undefined;

    before(async function () {
      if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
      objectsNs = fx.add('obj');
      packedNs = fx.add('pkd');
      objects = new LinuxEngine({ namespaceOf: () => objectsNs });
      packed = new LinuxEngine({ namespaceOf: () => packedNs });
      for (const e of [objects, packed]) {
        await e.prepareVrf(labVrfConfig());
        await e.applyVrf('main', labVrfConfig());
      }
    });

    after(async () => {
      await objects?.close();
      await packed?.close();
      await fx.cleanup();
    });

    /** `conntrack -L` of a namespace, sorted, with the seconds left (they tick) given apart. */
    function listed(ns: string): { lines: string[]; timeouts: number[] } {
      const raw = fx.exec(ns, 'conntrack', ['-L']).trim().split('\n').filter((l) => l.length > 0);
      const rows = raw.map((l) => {
        const m = /^(\S+\s+\d+\s+)(\d+)(.*)$/.exec(l);
        if (!m) throw new Error(`unexpected conntrack -L line: ${l}`);
        return { line: `${m[1]}T${m[3]}`, timeout: Number(m[2]) };
      }).sort((a, b) => a.line.localeCompare(b.line));
      return { lines: rows.map((r) => r.line), timeouts: rows.map((r) => r.timeout) };
    }

    for (const role of ['backup', 'master'] as const) {
      it(`writes the same conntracks as upsert() of the decoded entries (${role})`, async () => {
        const o = objects as LinuxEngine;
        const p = packed as LinuxEngine;
        for (const ns of [objectsNs, packedNs]) fx.exec(ns, 'conntrack', ['-F']);
        await o.setRole('main', role);
        await p.setRole('main', role);
        const entries = mixedEntries(role === 'backup' ? 31000 : 32000);
        const payload = payloadOf(entries);
        const before = { o: o.counters('main'), p: p.counters('main') };
        expect(await o.upsert(decodeEntries(payload, 'main', Date.now()))).to.equal(entries.length);
        expect(await p.upsertIPv4Records('main', payload.subarray(2))).to.equal(entries.length);
        const a = listed(objectsNs);
        const b = listed(packedNs);
        // On a master the record's timeout counts: those written with 0 s are gone at once, both ways.
        expect(b.lines).to.have.length(role === 'backup' ? entries.length : entries.filter((e) => e.timeout > 0).length);
        expect(b.lines).to.deep.equal(a.lines);
        // The timeouts written: held on a backup, the record's own on a master (seconds tick between the two writes and lists).
        b.timeouts.forEach((t, i) => expect(Math.abs(t - (a.timeouts[i] as number)), b.lines[i]).to.be.at.most(10));
        if (role === 'backup') for (const t of b.timeouts) expect(t).to.be.above(BACKUP_TIMEOUT_S - 10);
        else expect(Math.max(...b.timeouts)).to.be.at.most(7200);
        expect(b.lines.join('\n')).to.contain(`mark=${markOf(7200)}`);
        // ICMP echo: the reply tuple keeps the record's id (not one the kernel picks).
        for (const e of entries.filter((x) => x.orig.proto === 'icmp')) {
          expect(b.lines.join('\n')).to.contain(`src=${e.orig.src} dst=${e.orig.dst} type=8 code=0 id=${e.orig.sport} src=${e.reply.src} dst=${e.reply.dst} type=0 code=0 id=${e.reply.sport} `);
        }
        if (role === 'backup') {
          // A backup counts its own writes: both paths count alike.
          const after = { o: o.counters('main'), p: p.counters('main') };
          expect(after.p.synced - before.p.synced).to.equal(entries.length);
          expect(after.p.synced - before.p.synced).to.equal(after.o.synced - before.o.synced);
        }
      });
    }

    it('writes a frame again as updates (EEXIST -> update) and counts each conntrack once', async () => {
      const p = packed as LinuxEngine;
      await p.setRole('main', 'backup');
      fx.exec(packedNs, 'conntrack', ['-F']);
      const entries = mixedEntries(33000);
      const first = payloadOf(entries);
      expect(await p.upsertIPv4Records('main', first.subarray(2))).to.equal(entries.length);
      const synced = p.counters('main').synced;
      // The same conntracks again, with a new timeout: all updated, none created.
      const again = payloadOf(entries.map((e) => ({ ...e, timeout: e.timeout + 5 })));
      expect(await p.upsertIPv4Records('main', again.subarray(2))).to.equal(entries.length);
      expect(p.counters('main').synced).to.equal(synced);
      expect(Number(fx.exec(packedNs, 'conntrack', ['-C']).trim())).to.equal(entries.length);
      expect(fx.exec(packedNs, 'conntrack', ['-L', '-p', 'tcp', '--sport', '33000'])).to.contain(`mark=${markOf(7205)}`);
    });
  });

  describe('writer threads', () => {
    const fx = new NamespaceFixture();
    let ns = '';
    let pool: ConntrackWriterPool | undefined;
    let netlink: ConntrackNetlink | undefined;

    before(async function () {
      if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
      ns = fx.add('pw');
      fx.exec(ns, 'nft', ['-f', '-'], `table inet tandem_test {
  chain postrouting { type nat hook postrouting priority 100; }
}`);
      pool = await ConntrackWriterPool.start(ns, 2);
      netlink = new ConntrackNetlink({ namespace: ns });
    });

    after(async () => {
      netlink?.close();
      await pool?.close();
      await fx.cleanup();
    });

    it('reports a record the kernel keeps refusing with its index and errno, and writes the rest', async () => {
      const entries = mixedEntries(34000).filter((e) => e.orig.proto === 'tcp' && e.reply.dst === '192.0.2.1');
      expect(entries.length).to.be.above(5);
      // A stale conntrack holds the public port of record 3: its create clashes (EEXIST), its update finds nothing (ENOENT).
      const clash = entries[3] as ConntrackEntry;
      const stale = { ...clash, orig: { ...clash.orig, sport: clash.orig.sport + 5000 } };
      expect((await (netlink as ConntrackNetlink).create([engineWrite(stale, false)])).written).to.equal(1);
      const payload = payloadOf(entries);
      const result = await (pool as ConntrackWriterPool).upsertIPv4Records(payload.subarray(2), { mark: markOf });
      expect(result.failures).to.deep.equal([{ index: 3, errno: 2 }]);
      expect(result.written).to.equal(entries.length - 1);
      expect(result.created).to.equal(entries.length - 1);
      expect(result.retried).to.be.above(0);
      expect(fx.exec(ns, 'conntrack', ['-L'])).to.not.contain(`sport=${clash.orig.sport} `);
    });

    it('refuses bytes that are not whole records', async () => {
      let error = '';
      await (pool as ConntrackWriterPool).upsertIPv4Records(new Uint8Array(35), { mark: markOf }).catch((e: Error) => { error = e.message; });
      expect(error).to.contain('not a whole number of 34-byte records');
    });
  });
});
