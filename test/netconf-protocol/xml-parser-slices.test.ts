// parseXmlInSlices (large messages, the event loop running between slices) gives the tree and the
// errors parseXml gives, whatever the slice boundaries cut: tags, attributes, entities, CDATA,
// surrogate pairs.
import { expect } from 'chai';
import { parseXml, parseXmlInSlices } from '../../agent/netconf/xml-parser.js';

async function outcome(parse: () => unknown): Promise<unknown> {
  try {
    return { tree: await parse() };
  } catch (err) {
    const e = err as { tag?: string; message?: string; root?: unknown };
    return { error: { tag: e.tag, message: e.message, root: e.root } };
  }
}

const DOCS = [
  '<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7"><edit-config><target><candidate/></target><config>'
    + '<a xmlns="urn:x" xmlns:p="urn:p" p:attr="v &amp; w"><b>text &lt;1&gt; &#x1F600; caf\u00e9 \u{1F600}</b><c><![CDATA[<raw> & ]]></c><d/></a></config></edit-config></rpc>',
  '  \uFEFF<rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get/></rpc>',
  '<rpc message-id="2" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get></rpc>',
  '<rpc message-id="3" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><x:get/></rpc>',
  '<!DOCTYPE rpc [<!ENTITY e "x">]><rpc message-id="4"/>',
  '<rpc message-id="5" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get>&unknown;</get></rpc>',
  '<rpc message-id="6" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get/></rpc><trailing/>',
  '',
];

describe('NETCONF XML parser in slices', () => {
  for (const [i, doc] of DOCS.entries()) {
    it(`document ${i}: the same tree or the same error at every slice size`, async () => {
      const whole = await outcome(() => parseXml(doc));
      for (const size of [1, 2, 3, 5, 7, 16, 1024]) {
        expect(await outcome(() => parseXmlInSlices(doc, {}, size)), `slices of ${size}`).to.deep.equal(whole);
      }
    });
  }

  it('applies the size, depth and element limits as parseXml does', async () => {
    const deep = `<rpc message-id="1">${'<a>'.repeat(40)}${'</a>'.repeat(40)}</rpc>`;
    for (const limits of [{ maxDepth: 10 }, { maxElements: 5 }, { maxSize: 20 }]) {
      const whole = await outcome(() => parseXml(deep, limits));
      expect(whole).to.have.property('error');
      expect(await outcome(() => parseXmlInSlices(deep, limits, 3))).to.deep.equal(whole);
    }
  });

  it('lets the event loop run between slices', async () => {
    const doc = `<rpc message-id="1">${'<rule><name>r</name></rule>'.repeat(20_000)}</rpc>`;
    let turns = 0;
    const timer = setInterval(() => { turns += 1; }, 0);
    try {
      const tree = await parseXmlInSlices(doc, {}, 4096);
      expect(tree.children.length).to.equal(20_000);
    } finally {
      clearInterval(timer);
    }
    expect(turns, 'timer callbacks ran during the parse').to.be.greaterThan(5);
  });
});
