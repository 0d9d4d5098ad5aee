// loadTandemContext: the shipped IETF modules (yang/ietf/) and every tandem-* module (yang/modules/) load
// together, and NETCONF documents that the agent relies on parse against them.
import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { IETF_MODULES, loadTandemContext, projectRoot, tandemModuleNames, type YangContext } from '../../yang/libyang/index.js';

describe('tandem YANG context', function () {
  this.timeout(30_000);
  let ctx: YangContext;

  before(async function () {
    ctx = await loadTandemContext();
  });
  after(function () {
    ctx?.free();
  });

  it('implements every IETF module we ship and every tandem-* module present', function () {
    const implemented = new Set(ctx.modules().filter((m) => m.implemented).map((m) => m.name));
    for (const name of IETF_MODULES) expect(implemented.has(name), name).to.equal(true);
    const tandem = tandemModuleNames(join(projectRoot(), 'yang', 'modules'));
    for (const name of tandem) expect(implemented.has(name), name).to.equal(true);
    const files = readdirSync(join(projectRoot(), 'yang', 'modules')).filter((f) => /^tandem-.*\.yang$/.test(f));
    expect(tandem.length).to.equal(new Set(files.map((f) => f.replace(/(@.*)?\.yang$/, ''))).size);
  });

  it('enables the default ietf-netconf features', function () {
    const nc = ctx.modules().find((m) => m.name === 'ietf-netconf');
    expect(nc?.features).to.include.members(['candidate', 'validate', 'xpath', 'writable-running', 'rollback-on-error']);
    expect(nc?.revision).to.equal('2011-06-01');
  });

  it('parses NETCONF operations against ietf-netconf', function () {
    const rpc = ctx.parse(`<edit-config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><target><candidate/></target>
      <default-operation>merge</default-operation><config/></edit-config>`, { format: 'xml', kind: 'rpc' });
    try {
      const view = rpc.xpath('/ietf-netconf:edit-config/default-operation');
      expect(view.map((v) => v.value)).to.deep.equal(['merge']);
    } finally {
      rpc.free();
    }
    const gs = ctx.parse(`<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>tandem-vrf</identifier></get-schema>`,
      { format: 'xml', kind: 'rpc' });
    gs.free();
    expect(() => ctx.parse(`<edit-config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><target><nowhere/></target><config/></edit-config>`,
      { format: 'xml', kind: 'rpc' })).to.throw(/nowhere/);
  });

  it('prints every shipped module back for get-schema', function () {
    for (const name of [...IETF_MODULES, 'tandem-vrf']) {
      expect(ctx.schemaText(name, undefined, 'yang')).to.match(new RegExp(`^module ${name} \\{`));
    }
  });

  it('parses the NETCONF notifications we send', function () {
    const n = ctx.parse(`<netconf-session-start xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-notifications">
      <username>admin</username><session-id>3</session-id><source-host>127.0.0.1</source-host></netconf-session-start>`,
    { format: 'xml', kind: 'notification' });
    try {
      expect(n.xpath('//ietf-netconf-notifications:session-id')[0].value).to.equal('3');
    } finally {
      n.free();
    }
  });
});
