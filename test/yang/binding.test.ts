// The libyang binding against a small fixture module (test/yang/fixtures/binding/tb-test): parsing, errors,
// printing, with-defaults, diff/merge, XPath, path edits and schema facts, all through the real wasm build.
import { expect } from 'chai';
import { join } from 'node:path';
import {
  createYangContext, projectRoot, WasmYangContext, YangException, type DataTree, type YangContext, type YangError,
} from '../../yang/libyang/index.js';
import { pathFromLocation } from '../../yang/libyang/errors.js';

const FIXTURES = join(projectRoot(), 'test', 'yang', 'fixtures', 'binding');
const NS = 'xmlns="urn:tandem:test:tb-test"';

/** The YangException thrown by fn (fails the test when nothing or something else is thrown). */
function yangErrors(fn: () => unknown): YangError[] {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(YangException);
    const errors = (e as YangException).errors;
    expect(errors).to.have.length.greaterThan(0);
    expect((e as YangException).message).to.equal(errors[0].message);
    return errors;
  }
  expect.fail('expected a YangException');
}

describe('libyang binding', function () {
  let ctx: YangContext;
  const trees: DataTree[] = [];
  /** Parse and remember the tree so afterEach frees it even when the test fails. */
  const parse = (text: string, opts: Parameters<YangContext['parse']>[1]): DataTree => {
    const t = ctx.parse(text, opts);
    trees.push(t);
    return t;
  };
  const track = (t: DataTree): DataTree => {
    trees.push(t);
    return t;
  };

  before(async function () {
    ctx = await createYangContext({ searchDirs: [FIXTURES] });
    ctx.loadModule('tb-test', { features: ['extra'] });
  });
  afterEach(function () {
    for (const t of trees.splice(0)) t.free();
  });
  after(function () {
    ctx?.free();
  });

  describe('modules', function () {
    it('loads a module with its features and lists it among the built-in ones', function () {
      const info = ctx.modules().find((m) => m.name === 'tb-test');
      expect(info).to.deep.include({ name: 'tb-test', revision: '2026-01-01', namespace: 'urn:tandem:test:tb-test', prefix: 'tb', implemented: true });
      expect(info?.features).to.deep.equal(['extra']);
      const names = ctx.modules().map((m) => m.name);
      expect(names).to.include.members(['ietf-yang-library', 'ietf-inet-types', 'ietf-yang-types', 'ietf-datastores']);
    });

    it('lists modules from memory until a module is loaded, then anew', async function () {
      // modules() is asked on every monitoring read: it is kept, and loadModule must make it stale.
      const fresh = await createYangContext({ searchDirs: [FIXTURES] });
      try {
        const before = fresh.modules();
        expect(before.map((m) => m.name)).to.not.include('tb-test');
        expect(fresh.modules()).to.equal(before);
        expect(Object.isFrozen(before)).to.equal(true);
        fresh.loadModule('tb-test');
        const after = fresh.modules();
        expect(after).to.not.equal(before);
        expect(after.map((m) => m.name)).to.include('tb-test');
      } finally {
        fresh.free();
      }
    });

    it('fails clearly on a module that is not in the search dirs', function () {
      const errors = yangErrors(() => ctx.loadModule('no-such-module'));
      expect(errors[0].message).to.match(/no-such-module/);
      expect(errors[0].type).to.equal('schema');
    });

    it('describes itself as ietf-yang-library data', function () {
      const lib = track(ctx.yangLibraryData?.('set-7') as DataTree);
      expect(lib.xpath('/ietf-yang-library:yang-library/content-id')[0].value).to.equal('set-7');
      const tb = lib.xpath("/ietf-yang-library:yang-library/module-set/module[name='tb-test']");
      expect(tb).to.have.length(1);
      expect(lib.xpath("/ietf-yang-library:yang-library/module-set/module[name='tb-test']/revision")[0].value).to.equal('2026-01-01');
      expect(lib.xpath("/ietf-yang-library:yang-library/module-set/module[name='tb-test']/feature").map((f) => f.value)).to.deep.equal(['extra']);
      lib.validate();
    });

    it('prints the module text as YANG and YIN', function () {
      const yang = ctx.schemaText('tb-test', '2026-01-01', 'yang');
      expect(yang).to.match(/^module tb-test \{/);
      expect(yang).to.contain('error-app-tag "self-peer"');
      const yin = ctx.schemaText('tb-test', undefined, 'yin');
      expect(yin).to.contain('<module name="tb-test"');
      expect(() => ctx.schemaText('tb-test', '1999-01-01', 'yang')).to.throw(YangException, /no module/);
    });
  });

  describe('parsing', function () {
    it('parses valid XML config and prints it back in XML and JSON', function () {
      const t = parse(`<settings ${NS}><hostname>r1</hostname><mtu>9000</mtu></settings>`, { format: 'xml', kind: 'config' });
      expect(t.empty).to.equal(false);
      expect(t.print({ format: 'xml' })).to.equal(`<settings ${NS}><hostname>r1</hostname><mtu>9000</mtu></settings>`);
      expect(JSON.parse(t.print({ format: 'json' }))).to.deep.equal({ 'tb-test:settings': { hostname: 'r1', mtu: 9000 } });
      expect(t.print({ format: 'json', pretty: true })).to.contain('\n  "tb-test:settings": {');
    });

    it('parses valid JSON config the same as the equivalent XML', function () {
      const j = parse('{"tb-test:interface":[{"name":"a","address":"10.0.0.1"}]}', { format: 'json', kind: 'config' });
      const x = parse(`<interface ${NS}><name>a</name><address>10.0.0.1</address></interface>`, { format: 'xml', kind: 'config' });
      expect(j.print({ format: 'xml' })).to.equal(x.print({ format: 'xml' }));
    });

    it('reports a must violation with its message, data path and error-app-tag', function () {
      const errors = yangErrors(() => ctx.parse(`<interface ${NS}><name>a</name><peer>a</peer></interface>`, { format: 'xml', kind: 'config' }));
      expect(errors[0]).to.deep.equal({
        message: 'An interface cannot peer with itself.', path: "/tb-test:interface[name='a']/peer", appTag: 'self-peer', type: 'validation',
      });
    });

    it('keeps the whole data path when a key value contains quotes', function () {
      const errors = yangErrors(() => ctx.parse('{"tb-test:interface":[{"name":"a\\"b","peer":"a\\"b"}]}', { format: 'json', kind: 'config' }));
      expect(errors[0]).to.include({ path: `/tb-test:interface[name='a"b']/peer`, appTag: 'self-peer' });
      expect(pathFromLocation('Data location "/m:l[k=\'x"y\']/v", line number 3.')).to.equal(`/m:l[k='x"y']/v`);
      expect(pathFromLocation('Schema location "/m:c/l".')).to.equal('/m:c/l');
      expect(pathFromLocation('Line number 7.')).to.equal(undefined);
    });

    it('reports a leafref to nothing, a range violation and a missing mandatory leaf', function () {
      const leafref = yangErrors(() => ctx.parse(`<interface ${NS}><name>a</name><peer>zz</peer></interface>`, { format: 'xml', kind: 'config' }));
      expect(leafref[0].type).to.equal('validation');
      expect(leafref[0].message).to.match(/zz/);
      expect(leafref[0].path).to.equal("/tb-test:interface[name='a']/peer");
      expect(leafref[0].appTag).to.equal('instance-required');

      const range = yangErrors(() => ctx.parse('{"tb-test:settings":{"mtu":100}}', { format: 'json', kind: 'config' }));
      expect(range[0].message).to.match(/range/);
      expect(range[0].path).to.equal('/tb-test:settings/mtu');

      const mandatory = yangErrors(() => ctx.parse(`<route ${NS}><prefix>10.0.0.0/8</prefix><vrf>x</vrf></route>`, { format: 'xml', kind: 'config' }));
      expect(mandatory[0].message).to.match(/Mandatory node "metric"/);
      expect(mandatory[0].path).to.match(/^\/tb-test:route/);
    });

    it('carries non-ASCII text and JSON-special characters through parse, print and XPath unchanged', function () {
      const vrf = 'vrf-é✓ "q" \\ end';
      const t = parse(JSON.stringify({ 'tb-test:route': [{ prefix: '10.0.0.0/8', vrf, metric: 1 }] }), { format: 'json', kind: 'config' });
      expect(t.xpath('/tb-test:route/vrf')[0].value).to.equal(vrf);
      expect((JSON.parse(t.print({ format: 'json' })) as { 'tb-test:route': { vrf: string }[] })['tb-test:route'][0].vrf).to.equal(vrf);
      expect(t.print({ format: 'xml' })).to.contain('<vrf>vrf-é✓ "q" \\ end</vrf>');
      expect(t.xpath('/tb-test:route')[0].path).to.contain('vrf-é✓');
    });

    it('grows the wasm memory for a document larger than it', function () {
      const c = ctx as WasmYangContext;
      const before = c.wasmMemoryBytes();
      const vrf = `${'v'.repeat(6 * 1024 * 1024)}é`;
      const t = parse(JSON.stringify({ 'tb-test:route': [{ prefix: '10.0.0.0/8', vrf, metric: 1 }] }), { format: 'json', kind: 'config' });
      expect(c.wasmMemoryBytes()).to.be.greaterThan(before);
      expect(t.xpath('/tb-test:route/vrf')[0].value === vrf).to.equal(true);
      expect(t.print({ format: 'xml' }).length).to.be.greaterThan(vrf.length);
    });

    it('rejects malformed XML and JSON as syntax errors with the line', function () {
      const xml = yangErrors(() => ctx.parse(`<settings ${NS}>\n<hostname>r1</hostname>\n`, { format: 'xml', kind: 'config' }));
      expect(xml[0].type).to.equal('syntax');
      expect(xml[0].message).to.match(/line \d+/);
      const mismatched = yangErrors(() => ctx.parse(`<settings ${NS}><hostname>r1</mtu></settings>`, { format: 'xml', kind: 'config' }));
      expect(mismatched[0].type).to.equal('syntax');
      const json = yangErrors(() => ctx.parse('{"tb-test:settings":{"mtu":}', { format: 'json', kind: 'config' }));
      expect(json[0].type).to.equal('syntax');
    });

    it('rejects unknown elements and namespaces unless strict is off', function () {
      const unknown = yangErrors(() => ctx.parse(`<interface ${NS}><name>a</name><bogus/></interface>`, { format: 'xml', kind: 'config' }));
      expect(unknown[0].message).to.match(/"bogus" not found/);
      expect(unknown[0].path).to.equal("/tb-test:interface[name='a']");
      const ns = yangErrors(() => ctx.parse('<x xmlns="urn:nope"/>', { format: 'xml', kind: 'config' }));
      expect(ns[0].message).to.match(/urn:nope/);
      const lax = parse(`<interface ${NS}><name>a</name><bogus/></interface>`, { format: 'xml', kind: 'config', strict: false });
      expect(lax.print({ format: 'xml' })).to.equal(`<interface ${NS}><name>a</name></interface>`);
    });

    it('rejects state data in config but accepts it as data', function () {
      const doc = `<counters ${NS}><packets>5</packets></counters>`;
      const errors = yangErrors(() => ctx.parse(doc, { format: 'xml', kind: 'config' }));
      expect(errors[0].message).to.match(/state node "counters"/);
      expect(parse(doc, { format: 'xml', kind: 'data' }).print({ format: 'xml' })).to.equal(doc);
    });

    it('parses without validation and validates later on demand', function () {
      const t = parse(`<route ${NS}><prefix>10.0.0.0/8</prefix><vrf>x</vrf></route>`, { format: 'xml', kind: 'config', validate: false });
      expect(t.print({ format: 'xml' })).to.contain('<vrf>x</vrf>');
      expect(yangErrors(() => t.validate({ configOnly: true }))[0].message).to.match(/Mandatory node "metric"/);
      t.setPath("/tb-test:route[prefix='10.0.0.0/8'][vrf='x']/metric", '7');
      t.validate({ configOnly: true });
      expect(t.exists("/tb-test:route[prefix='10.0.0.0/8'][vrf='x']/metric")).to.equal(true);
    });

    it('rejects a bad format or kind with a TypeError', function () {
      expect(() => ctx.parse('', { format: 'yaml' as never, kind: 'config' })).to.throw(TypeError, /format/);
      expect(() => ctx.parse('', { format: 'xml', kind: 'bogus' as never })).to.throw(TypeError, /kind/);
    });
  });

  describe('RPCs and notifications', function () {
    it('parses and validates RPC input, adding input defaults', function () {
      const rpc = parse(`<reset ${NS}><interface>eth0</interface></reset>`, { format: 'xml', kind: 'rpc' });
      expect(rpc.print({ format: 'xml', withDefaults: 'report-all' })).to.equal(`<reset ${NS}><interface>eth0</interface><delay>0</delay></reset>`);
      const json = parse('{"tb-test:reset":{"interface":"eth0","delay":5}}', { format: 'json', kind: 'rpc' });
      expect(json.xpath('/tb-test:reset/delay')[0].value).to.equal('5');
      const missing = yangErrors(() => ctx.parse(`<reset ${NS}><delay>1</delay></reset>`, { format: 'xml', kind: 'rpc' }));
      expect(missing[0].message).to.match(/Mandatory node "interface"/);
      const output = yangErrors(() => ctx.parse(`<reset ${NS}><interface>a</interface><result>x</result></reset>`, { format: 'xml', kind: 'rpc' }));
      expect(output[0].message).to.match(/result/);
    });

    it('validates references from RPC input against a dependencies tree', function () {
      const running = parse(`<interface ${NS}><name>eth0</name></interface>`, { format: 'xml', kind: 'config' });
      const request = `<reset ${NS}><interface>eth0</interface><like>eth0</like></reset>`;
      expect(yangErrors(() => ctx.parse(request, { format: 'xml', kind: 'rpc' }))[0].message).to.match(/eth0/);
      const ok = parse(request, { format: 'xml', kind: 'rpc', dependencies: running });
      expect(ok.xpath('/tb-test:reset/like')[0].value).to.equal('eth0');
      const wrong = `<reset ${NS}><interface>eth0</interface><like>eth9</like></reset>`;
      expect(yangErrors(() => ctx.parse(wrong, { format: 'xml', kind: 'rpc', dependencies: running }))[0]).to.include({ type: 'validation' });
      const freed = ctx.newTree();
      freed.free();
      expect(() => ctx.parse(request, { format: 'xml', kind: 'rpc', dependencies: freed })).to.throw(/after free/);
    });

    it('parses a reply given whole or as output children of rpcPath', function () {
      const whole = parse(`<reset ${NS}><result>done</result></reset>`, { format: 'xml', kind: 'reply' });
      expect(whole.xpath('/tb-test:reset/result')[0].value).to.equal('done');
      const children = parse(`<result ${NS}>done</result>`, { format: 'xml', kind: 'reply', rpcPath: '/tb-test:reset' });
      expect(children.print({ format: 'xml' })).to.equal(whole.print({ format: 'xml' }));
      const json = parse('{"tb-test:result":"done"}', { format: 'json', kind: 'reply', rpcPath: '/tb-test:reset' });
      expect(json.print({ format: 'xml' })).to.equal(whole.print({ format: 'xml' }));
    });

    it('parses an action request and its reply under the list entry', function () {
      const req = parse(`<interface ${NS}><name>a</name><bounce><delay>2</delay></bounce></interface>`, { format: 'xml', kind: 'rpc' });
      expect(req.xpath("/tb-test:interface[name='a']/bounce/delay")[0].value).to.equal('2');
      const reply = parse(`<took ${NS}>40</took>`, { format: 'xml', kind: 'reply', rpcPath: "/tb-test:interface[name='a']/bounce" });
      expect(reply.print({ format: 'xml' })).to.equal(`<interface ${NS}><name>a</name><bounce><took>40</took></bounce></interface>`);
      expect(yangErrors(() => ctx.parse(`<delay ${NS}>1</delay>`, { format: 'xml', kind: 'reply', rpcPath: "/tb-test:interface[name='a']/bounce" }))[0].message)
        .to.match(/delay/);
    });

    it('parses a notification and rejects one missing a mandatory leaf', function () {
      const n = parse(`<link-change ${NS}><interface>eth0</interface><up>true</up></link-change>`, { format: 'xml', kind: 'notification' });
      expect(JSON.parse(n.print({ format: 'json' }))).to.deep.equal({ 'tb-test:link-change': { interface: 'eth0', up: true } });
      const errors = yangErrors(() => ctx.parse(`<link-change ${NS}><up>true</up></link-change>`, { format: 'xml', kind: 'notification' }));
      expect(errors[0]).to.include({ path: '/tb-test:link-change/interface', type: 'validation' });
    });

    it('says so when the document holds no operation', function () {
      const errors = yangErrors(() => ctx.parse(`<settings ${NS}/>`, { format: 'xml', kind: 'rpc' }));
      expect(errors[0].message).to.match(/RPC|not found|operation/i);
    });
  });

  describe('with-defaults printing', function () {
    it('prints each mode as RFC 6243 says', function () {
      // mtu set to its default value (explicit), interface/enabled absent (default applied by validation)
      const t = parse(`<settings ${NS}><hostname>r1</hostname><mtu>1500</mtu></settings><interface ${NS}><name>a</name></interface>`,
        { format: 'xml', kind: 'config' });
      const explicit = t.print({ format: 'xml', withDefaults: 'explicit' });
      expect(explicit).to.contain('<mtu>1500</mtu>').and.not.contain('<enabled>');
      expect(t.print({ format: 'xml' })).to.equal(explicit);
      const trim = t.print({ format: 'xml', withDefaults: 'trim' });
      expect(trim).to.not.contain('<mtu>').and.not.contain('<enabled>');
      const all = t.print({ format: 'xml', withDefaults: 'report-all' });
      expect(all).to.contain('<mtu>1500</mtu>').and.contain('<enabled>true</enabled>');
      expect(() => t.print({ format: 'xml', withDefaults: 'bogus' as never })).to.throw(TypeError, /with-defaults/);
    });

    it('tags defaults in report-all-tagged once ietf-netconf-with-defaults is loaded', async function () {
      const c = await createYangContext({ searchDirs: [FIXTURES, join(projectRoot(), 'yang', 'ietf')] });
      try {
        c.loadModule('tb-test');
        c.loadModule('ietf-netconf-with-defaults');
        const t = c.parse(`<interface ${NS}><name>a</name></interface>`, { format: 'xml', kind: 'config' });
        const tagged = t.print({ format: 'xml', withDefaults: 'report-all-tagged' });
        expect(tagged).to.match(/<enabled [^>]*:default="true">true<\/enabled>/);
        expect(t.print({ format: 'json', withDefaults: 'report-all-tagged' })).to.contain('"ietf-netconf-with-defaults:default":true');
        t.free();
      } finally {
        c.free();
      }
    });
  });

  describe('trees', function () {
    const base = `<settings ${NS}><hostname>r1</hostname></settings><interface ${NS}><name>a</name></interface>`;

    it('duplicates deeply: changing the copy leaves the original alone', function () {
      const a = parse(base, { format: 'xml', kind: 'config' });
      const b = track(a.duplicate());
      b.setPath('/tb-test:settings/hostname', 'r2');
      expect(a.xpath('/tb-test:settings/hostname')[0].value).to.equal('r1');
      expect(b.xpath('/tb-test:settings/hostname')[0].value).to.equal('r2');
    });

    it('diffs two trees with yang:operation metadata, and prints nothing for equal trees', function () {
      const a = parse(base, { format: 'xml', kind: 'config' });
      const b = track(a.duplicate());
      expect(a.diff(b, 'xml')).to.equal('');
      b.setPath('/tb-test:settings/hostname', 'r2');
      b.removePath("/tb-test:interface[name='a']");
      b.setPath("/tb-test:route[prefix='10.0.0.0/8'][vrf='main']/metric", '5');
      const xml = a.diff(b, 'xml');
      expect(xml).to.match(/<hostname yang:operation="replace"[^>]*yang:orig-value="r1"[^>]*>r2<\/hostname>/);
      expect(xml).to.match(/<interface [^>]*yang:operation="delete"/);
      expect(xml).to.match(/<route [^>]*yang:operation="create"/);
      const json = JSON.parse(a.diff(b, 'json')) as Record<string, unknown>;
      expect(json).to.have.keys('tb-test:settings', 'tb-test:interface', 'tb-test:route');
    });

    it('merges another tree into this one, leaving the other intact', function () {
      const a = parse(`<settings ${NS}><hostname>r1</hostname></settings>`, { format: 'xml', kind: 'config', validate: false });
      const b = parse(`<settings ${NS}><mtu>9000</mtu><tag>x</tag></settings><interface ${NS}><name>b</name></interface>`,
        { format: 'xml', kind: 'config', validate: false });
      a.merge(b);
      expect(a.print({ format: 'xml' })).to.equal(
        `<settings ${NS}><hostname>r1</hostname><mtu>9000</mtu><tag>x</tag></settings><interface ${NS}><name>b</name></interface>`);
      expect(b.print({ format: 'xml' })).to.equal(`<settings ${NS}><mtu>9000</mtu><tag>x</tag></settings><interface ${NS}><name>b</name></interface>`);
      const empty = track(ctx.newTree());
      empty.merge(b);
      expect(empty.print({ format: 'xml' })).to.equal(b.print({ format: 'xml' }));
    });

    it('answers XPath with paths, values and default flags', function () {
      const t = parse(`<interface ${NS}><name>a</name></interface><interface ${NS}><name>b</name><enabled>false</enabled></interface>`,
        { format: 'xml', kind: 'config' });
      const nodes = t.xpath('/tb-test:interface/enabled');
      expect(nodes).to.deep.equal([
        { path: "/tb-test:interface[name='a']/enabled", schemaPath: '/tb-test:interface/enabled', module: 'tb-test', name: 'enabled', value: 'true', isDefault: true },
        { path: "/tb-test:interface[name='b']/enabled", schemaPath: '/tb-test:interface/enabled', module: 'tb-test', name: 'enabled', value: 'false', isDefault: false },
      ]);
      expect(t.xpath("/tb-test:interface[enabled='false']/name").map((n) => n.value)).to.deep.equal(['b']);
      expect(t.xpath('/tb-test:interface[1]')[0]).to.not.have.property('value');
      expect(t.xpath('/tb-test:settings/hostname')).to.deep.equal([]);
      expect(track(ctx.newTree()).xpath('/tb-test:interface')).to.deep.equal([]);
      expect(yangErrors(() => t.xpath('/tb-test:interface['))[0].type).to.equal('xpath');
    });

    it('reports NETCONF operation metadata of edit-config content in XPath views', async function () {
      const c = await createYangContext({ searchDirs: [FIXTURES, join(projectRoot(), 'yang', 'ietf')] });
      try {
        c.loadModule('tb-test');
        c.loadModule('ietf-netconf');
        const t = c.parse(`<settings ${NS} xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="merge">`
          + '<hostname nc:operation="delete">r1</hostname><mtu>9000</mtu></settings>', { format: 'xml', kind: 'config', validate: false });
        const views = t.xpath('//*');
        t.free();
        expect(views.map((v) => [v.name, v.meta])).to.deep.equal([
          ['settings', { 'ietf-netconf:operation': 'merge' }],
          ['hostname', { 'ietf-netconf:operation': 'delete' }],
          ['mtu', undefined],
        ]);
      } finally {
        c.free();
      }
    });

    it('copies the subtrees an XPath selects, with their parents, into a new tree', function () {
      const t = parse(`<settings ${NS}><hostname>r1</hostname><mtu>9000</mtu></settings><interface ${NS}><name>a</name><address>10.0.0.1</address></interface>`,
        { format: 'xml', kind: 'config' });
      const sel = track(t.selectSubtrees('/tb-test:settings/mtu | /tb-test:interface/address'));
      expect(sel.print({ format: 'xml' })).to.equal(
        `<settings ${NS}><mtu>9000</mtu></settings><interface ${NS}><name>a</name><address>10.0.0.1</address></interface>`);
      expect(track(t.selectSubtrees('/tb-test:route')).empty).to.equal(true);
    });

    it('sets and removes nodes by path, growing an empty tree', function () {
      const t = track(ctx.newTree());
      expect(t.empty).to.equal(true);
      expect(t.print({ format: 'xml' })).to.equal('');
      t.setPath("/tb-test:interface[name='b']/enabled", 'false');
      t.setPath('/tb-test:settings/tag', 'x');
      t.setPath("/tb-test:settings/tag[.='y']");
      t.setPath("/tb-test:interface[name='b']/enabled", 'false'); // same value again: no error
      t.setPath("/tb-test:interface[name='b']/enabled", 'true');
      expect(t.empty).to.equal(false);
      expect(JSON.parse(t.print({ format: 'json' }))).to.deep.equal({
        'tb-test:interface': [{ name: 'b', enabled: true }], 'tb-test:settings': { tag: ['x', 'y'] },
      });
      expect(t.exists("/tb-test:settings/tag[.='y']")).to.equal(true);
      expect(t.removePath("/tb-test:settings/tag[.='y']")).to.equal(true);
      expect(t.removePath("/tb-test:settings/tag[.='y']")).to.equal(false);
      expect(t.removePath("/tb-test:interface[name='b']")).to.equal(true); // the first top-level node
      expect(t.print({ format: 'xml' })).to.equal(`<settings ${NS}><tag>x</tag></settings>`);
      expect(t.removePath('/tb-test:settings')).to.equal(true);
      expect(t.empty).to.equal(true);
      expect(t.exists('/tb-test:settings')).to.equal(false);
    });

    it('rejects bad paths and bad values with YangException', function () {
      const t = track(ctx.newTree());
      expect(yangErrors(() => t.setPath('/tb-test:nope', 'x'))[0].message).to.match(/nope/);
      const range = yangErrors(() => t.setPath('/tb-test:settings/mtu', '5'));
      expect(range[0]).to.include({ path: '/tb-test:settings/mtu', type: 'validation' });
      expect(t.empty).to.equal(true);
      expect(() => t.setPath('', 'x')).to.throw(TypeError);
      t.setPath('/tb-test:settings/hostname', 'r1');
      expect(() => t.exists('/tb-test:bogus')).to.throw(YangException);
    });

    it('refuses use after free and trees of another context', async function () {
      const t = ctx.newTree();
      t.free();
      t.free(); // idempotent
      expect(() => t.print({ format: 'xml' })).to.throw(/after free/);
      const other = await createYangContext({ searchDirs: [FIXTURES] });
      try {
        other.loadModule('tb-test');
        const foreign = other.newTree();
        const mine = track(ctx.newTree());
        expect(() => mine.merge(foreign)).to.throw(YangException, /different YANG context/);
        other.free();
        expect(() => foreign.print({ format: 'xml' })).to.throw(/after free/);
      } finally {
        other.free();
      }
    });
  });

  describe('schema nodes', function () {
    it('describes lists, leaves, containers and choices', function () {
      expect(ctx.schemaNode('/tb-test:interface')).to.deep.equal({
        path: '/tb-test:interface', module: 'tb-test', name: 'interface', kind: 'list', config: true, keys: ['name'],
        orderedByUser: true, presence: false,
      });
      expect(ctx.schemaNode('/tb-test:route')?.keys).to.deep.equal(['prefix', 'vrf']);
      expect(ctx.schemaNode('/tb-test:route')?.orderedByUser).to.equal(false);
      expect(ctx.schemaNode('/tb-test:settings/mtu')).to.include({ kind: 'leaf', defaultValue: '1500', config: true });
      expect(ctx.schemaNode('/tb-test:settings/debug')).to.include({ kind: 'container', presence: true });
      expect(ctx.schemaNode('/tb-test:settings')).to.include({ kind: 'container', presence: false });
      expect(ctx.schemaNode('/tb-test:settings/tag')).to.include({ kind: 'leaf-list', orderedByUser: true });
      expect(ctx.schemaNode('/tb-test:counters/packets')).to.include({ config: false });
      expect(ctx.schemaNode('/tb-test:reset')).to.include({ kind: 'rpc' });
      expect(ctx.schemaNode('/tb-test:link-change')).to.include({ kind: 'notification' });
      expect(ctx.schemaNode('/tb-test:nope')).to.equal(undefined);
      expect(ctx.schemaNode('/no-module:x')).to.equal(undefined);
    });

    it('lists schema children, choices and cases included, and follows their paths', function () {
      expect(ctx.schemaChildren('/tb-test:settings').map((n) => `${n.name}:${n.kind}`)).to.deep.equal(
        ['hostname:leaf', 'mtu:leaf', 'tag:leaf-list', 'debug:container', 'transport:choice', 'extra-knob:leaf']);
      const choice = ctx.schemaChildren('/tb-test:settings').find((n) => n.kind === 'choice');
      expect(choice?.path).to.equal('/tb-test:settings/transport');
      const cases = ctx.schemaChildren(choice!.path);
      expect(cases.map((n) => `${n.name}:${n.kind}`)).to.deep.equal(['tcp:case', 'udp:case']);
      const tcp = ctx.schemaChildren(cases[0].path);
      expect(tcp.map((n) => n.path)).to.deep.equal(['/tb-test:settings/tcp-port']);
      expect(tcp[0].cases).to.deep.equal([{ choice: '/tb-test:settings/transport', caseName: 'tcp' }]);
      expect(ctx.schemaNode('/tb-test:settings/udp-port')?.cases).to.deep.equal([{ choice: '/tb-test:settings/transport', caseName: 'udp' }]);
      expect(ctx.schemaNode('/tb-test:settings/transport/udp')).to.include({ kind: 'case', name: 'udp' });
      expect(ctx.schemaNode('/tb-test:settings/mtu')).to.not.have.property('cases');
      expect(ctx.schemaChildren("/tb-test:interface[name='x']").map((n) => n.name)).to.deep.equal(['name', 'enabled', 'address', 'peer', 'bounce']);
      const top = ctx.schemaChildren('/').filter((n) => n.module === 'tb-test').map((n) => n.name);
      expect(top).to.include.members(['settings', 'interface', 'route', 'counters']);
      expect(() => ctx.schemaChildren('/tb-test:nope')).to.throw(YangException, /unknown schema node/);
      expect(ctx.schemaNode('/tb-test:settings/transport/sctp')).to.equal(undefined);
    });
  });
});
