// `tandem start` gives back the clean file-backed pages start-up touched (core/file-pages.ts):
// which mappings qualify (never one that may hold data of its own), that the release really lowers
// RSS in a real process, and that everything still runs afterwards (the pages fault back in).
import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { isReleasable, parseSmaps, releasableMappings, releaseFilePages } from '../../core/file-pages.js';
import { loadTandemContext } from '../../yang/libyang/index.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const entry = (range: string, perms: string, inode: string, path: string, rss: number, anon: number | undefined) =>
  `${range} ${perms} 00000000 fe:00 ${inode}                             ${path}\nSize:  8 kB\nRss:   ${rss} kB\nPss:   ${rss} kB\n`
  + (anon === undefined ? '' : `Anonymous:   ${anon} kB\n`) + 'VmFlags: rd mr mw me\n';

const SMAPS = [
  entry('00400000-00b6f000', 'r--p', '260689', '/usr/bin/node', 6584, 0), // image: headers, symbols
  entry('00b72000-025fe000', 'r-xp', '260689', '/usr/bin/node', 22676, 0), // image: text
  entry('0563a000-0563e000', 'r--p', '260689', '/usr/bin/node', 16, 16), // .data.rel.ro: relocated (COW) pages
  entry('0563e000-0565d000', 'rw-p', '260689', '/usr/bin/node', 124, 20), // .data
  entry('7efbabe40000-7efbabfd2000', 'r-xp', '260689', '/usr/bin/node', 896, 0), // V8's builtins remapped into a code range
  entry('7f00c371e000-7f00c3724000', 'r-xp', '1234', '/usr/lib/x86_64-linux-gnu/libc.so.6', 24, 0),
  entry('7f00c3800000-7f00c3900000', 'r--s', '999', '/dev/shm/x', 40, 0), // shared
  entry('7f00c3a00000-7f00c3b00000', 'r--p', '998', '/usr/lib/old.so', 40, undefined), // no Anonymous line: unknown
  entry('7f00c3c00000-7f00c3d00000', 'r--p', '997', '/usr/lib/cold.so', 0, 0), // nothing resident
  entry('7f00c3e00000-7f00c3f00000', 'rw-p', '0', '', 900, 900), // anonymous memory
  entry('7ffd1c5f0000-7ffd1c5f2000', 'r-xp', '0', '[vdso]', 8, 0),
].join('');

describe('release of clean file-backed pages (tandem start)', function () {
  this.timeout(120_000);

  it('takes only private, read-only file mappings without a copied-on-write page, and of node only its image', () => {
    const maps = parseSmaps(SMAPS);
    expect(maps).to.have.length(11);
    expect(maps[1]).to.include({ start: 0xb72000n, end: 0x25fe000n, perms: 'r-xp', path: '/usr/bin/node', rssKb: 22676, anonymousKb: 0 });
    expect(maps.filter(isReleasable).map((m) => m.start.toString(16))).to.deep.equal(['400000', 'b72000', '7efbabe40000', '7f00c371e000']);
    expect(releasableMappings(maps, '/usr/bin/node').map((m) => m.start.toString(16))).to.deep.equal(['400000', 'b72000', '7f00c371e000']);
    // No writable mapping of the executable found: none of its mappings is trusted to be its image.
    expect(releasableMappings(maps.filter((m) => m.perms !== 'rw-p'), '/usr/bin/node').map((m) => m.path)).to.deep.equal(['/usr/lib/x86_64-linux-gnu/libc.so.6']);
  });

  it('lowers this process\'s file-backed RSS, and code, libyang and wasm still run afterwards', async () => {
    const fileKb = async () => Number(/^RssFile:\s+(\d+) kB/m.exec(await readFile('/proc/self/status', 'utf8'))?.[1]);
    const ctx = await loadTandemContext();
    const before = await fileKb();
    const r = await releaseFilePages();
    if ('skipped' in r) throw new Error(`not released: ${r.skipped}`);
    const after = await fileKb();
    expect(r.mappings).to.be.greaterThan(5);
    expect(r.releasedKb).to.be.greaterThan(10 * 1024);
    expect(after, `RssFile ${before} -> ${after} kB`).to.be.lessThan(before - 10 * 1024);
    // Everything the process had mapped from files is still there: the pages fault back in on use.
    const tree = ctx.parse('<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name></vrf>', { format: 'xml', kind: 'config' });
    try {
      expect(tree.print({ format: 'xml' })).to.include('<name>main</name>');
    } finally {
      tree.free();
    }
  });

  describe('a real tandem start', () => {
    let t: TandemProcess | undefined;
    afterEach(async () => { await t?.stop(); t = undefined; });

    const released = async (p: TandemProcess): Promise<{ releasedMb: number; rssBeforeMb: number; rssAfterMb: number; mappings: number }> => {
      for (let i = 0; i < 300; i++) {
        const line = p.stdout().split('\n').find((l) => l.includes('"after":"start-up"'));
        if (line) {
          const rec = JSON.parse(line) as { msg: string; reason?: string; releasedMb: number; rssBeforeMb: number; rssAfterMb: number; mappings: number };
          if (rec.msg !== 'file-backed pages released') throw new Error(`not released: ${rec.reason ?? line}`);
          return rec;
        }
        await new Promise((res) => setTimeout(res, 100));
      }
      throw new Error(`no file-backed pages line in the log:\n${p.stdout().slice(0, 3000)}`);
    };

    it('releases them once after listening, and then serves edit-config, commit (workers start) and get-config', async () => {
      t = await startTandem({ env: { TANDEM_LOG_LEVEL: 'info' } });
      const rec = await released(t);
      expect(rec.mappings).to.be.greaterThan(5);
      expect(rec.releasedMb).to.be.greaterThan(10);
      expect(rec.rssAfterMb).to.be.lessThan(rec.rssBeforeMb - 10);
      const status = await readFile(`/proc/${t.pid}/status`, 'utf8');
      // Read by the test itself: a tandem start that kept them holds ~45 MB of file-backed pages (bare node 34).
      const rssFileMb = Number(/^RssFile:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
      expect(rssFileMb, 'file-backed RSS after the release').to.be.lessThan(30);
      const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
      try {
        const vrf = '<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action>'
          + '<rule><name>r1</name><action>drop</action><protocol>tcp</protocol><destination-port><start>22</start></destination-port></rule></firewall></vrf>';
        expect(await c.rpc(`<edit-config><target><candidate/></target><config>${vrf}</config></edit-config>`)).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        const got = await c.rpc('<get-config><source><running/></source><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"/></filter></get-config>');
        expect(got).to.include('<name>r1</name>').and.to.include('<action>drop</action>');
      } finally {
        c.close();
      }
      expect(t.stdout().split('\n').filter((l) => l.includes('"msg":"file-backed pages released"'))).to.have.length(1);
      expect(t.stdout()).to.include('soft-engine workers started');
    });

    it('after a large configuration is removed: libyang renewed, its old memory and the file-backed pages given back', async () => {
      t = await startTandem({ env: { TANDEM_LOG_LEVEL: 'info' } });
      await released(t);
      const statusMb = async (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${(t as TandemProcess).pid}/status`, 'utf8'))?.[1]) / 1024;
      const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 300_000 });
      try {
        // 30,000: large enough to grow the wasm memory although the tree is built in slices (sliced-tree.ts).
        const rules = Array.from({ length: 30000 }, (_, i) => `<rule><name>r${i}</name><action>drop</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port></rule>`).join('');
        expect(await c.rpc(`<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action>${rules}</firewall></vrf></config></edit-config>`)).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        const anonLoaded = await statusMb('RssAnon');
        expect(await c.rpc('<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>main</name></vrf></config></edit-config>')).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        let line: string | undefined;
        for (let i = 0; i < 300 && !line; i++) {
          line = t.stdout().split('\n').find((l) => l.includes('"after":"large removal"'));
          if (!line) await new Promise((res) => setTimeout(res, 100));
        }
        expect(t.stdout()).to.include('libyang instance renewed');
        expect(line, 'a release after the large removal').to.be.a('string');
        expect(JSON.parse(line!)).to.include({ msg: 'file-backed pages released' });
        expect(await statusMb('RssFile'), 'file-backed RSS after the release').to.be.lessThan(30);
        // The old instance's linear memory (24 MB, most of it touched by the 10,000 rules) is gone:
        // before the fix the process-wide instance kept it reachable.
        await new Promise((res) => setTimeout(res, 3000));
        const anonAfter = await statusMb('RssAnon');
        expect(anonAfter, `anonymous RSS ${anonLoaded.toFixed(1)} MB with the rules, ${anonAfter.toFixed(1)} after`).to.be.lessThan(anonLoaded - 40);
        // Still serves and validates.
        expect(await c.rpc('<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>b</name></vrf></config></edit-config>')).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        expect(await c.rpc('<get-config><source><running/></source></get-config>')).to.include('<name>b</name>');
      } finally {
        c.close();
      }
    });

    it('after a 10,000-rule removal (parsed in the libyang worker: the main instance never grew): renewed, GC, pages released, anonymous RSS back near idle', async function () {
      this.timeout(300_000); // a 10,000-rule load on a loaded 2-vCPU machine
      t = await startTandem({ env: { TANDEM_LOG_LEVEL: 'info' } });
      const p = t;
      await released(p);
      const statusMb = async (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${p.pid}/status`, 'utf8'))?.[1]) / 1024;
      const anonIdle = await statusMb('RssAnon');
      const rssIdle = await statusMb('VmRSS');
      const c = await NetconfTestClient.connect({ host: p.host, port: p.port, username: p.username, password: p.password, timeoutMs: 300_000 });
      try {
        const rules = Array.from({ length: 10000 }, (_, i) => `<rule><name>r${i}</name><action>drop</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port></rule>`).join('');
        expect(await c.rpc(`<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action>${rules}</firewall></vrf></config></edit-config>`)).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        const anonLoaded = await statusMb('RssAnon');
        expect(await c.rpc('<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>main</name></vrf></config></edit-config>')).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        let line: string | undefined;
        for (let i = 0; i < 300 && !line; i++) {
          line = p.stdout().split('\n').find((l) => l.includes('"after":"large removal"'));
          if (!line) await new Promise((res) => setTimeout(res, 100));
        }
        const removal = p.stdout().split('\n').find((l) => l.includes('"msg":"large configuration removed: memory given back"'));
        expect(removal, 'the removal was recognised').to.be.a('string');
        expect(JSON.parse(removal!)).to.include({ renewed: true });
        expect(line, 'a release after the large removal').to.be.a('string');
        // The plane worker's isolate, which held the configuration too, was collected as well.
        let plane: string | undefined;
        for (let i = 0; i < 300 && !plane; i++) {
          plane = p.stdout().split('\n').find((l) => l.includes('"msg":"plane worker heap collected after a large removal"'));
          if (!plane) await new Promise((res) => setTimeout(res, 100));
        }
        expect(plane, 'a GC in the plane worker').to.be.a('string');
        // Issue 8's goal: RSS back within 1.5x of idle (before this: 1.6-2.1x, anonymous 17-36 MB
        // above idle: V8's heap pages, libyang's touched pages; after: 1.0-1.15x, 2-10 MB). Freed
        // pages go back on V8's background thread: waited for, bounded.
        const back = async () => ({ anon: await statusMb('RssAnon'), rss: await statusMb('VmRSS') });
        let now = await back();
        for (let i = 0; i < 150 && (now.anon > anonIdle + 15 || now.rss > 1.5 * rssIdle); i++) {
          await new Promise((res) => setTimeout(res, 200));
          now = await back();
        }
        const figures = `RSS idle ${rssIdle.toFixed(1)} MB, after ${now.rss.toFixed(1)}; anonymous idle ${anonIdle.toFixed(1)}, with the rules ${anonLoaded.toFixed(1)}, after ${now.anon.toFixed(1)}`;
        expect(now.rss, figures).to.be.at.most(1.5 * rssIdle);
        expect(now.anon, figures).to.be.at.most(anonIdle + 15);
        expect(await statusMb('RssFile'), 'file-backed RSS after the release').to.be.lessThan(30);
        expect(await c.rpc('<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>b</name></vrf></config></edit-config>')).to.include('<ok/>');
        expect(await c.rpc('<commit/>')).to.include('<ok/>');
        expect(await c.rpc('<get-config><source><running/></source></get-config>')).to.include('<name>b</name>');
      } finally {
        c.close();
      }
    });

    it('does not release them with TANDEM_MEMORY_TUNING=off', async () => {
      t = await startTandem({ env: { TANDEM_LOG_LEVEL: 'info', TANDEM_MEMORY_TUNING: 'off' } });
      await new Promise((res) => setTimeout(res, 3500)); // past the release delay of 2 s
      expect(t.stdout()).not.to.include('file-backed pages');
    });
  });
});
