// The safe XML parser: namespaces, no DTD, no entity expansion, limits, and the printer.
import { expect } from 'chai';
import { parseXml, peekRoot, XmlParseError } from '../../agent/netconf/xml-parser.js';
import { escapeText, serializeXml } from '../../agent/netconf/xml-writer.js';

function parseError(text: string, limits = {}): XmlParseError {
  try {
    parseXml(text, limits);
  } catch (err) {
    expect(err).to.be.instanceOf(XmlParseError);
    return err as XmlParseError;
  }
  throw new Error('parsed without error');
}

describe('NETCONF XML parser', () => {
  it('resolves namespaces of elements and attributes and keeps the scope', () => {
    const el = parseXml('<nc:rpc xmlns:nc="urn:base" xmlns="urn:d" message-id="7" nc:x="y"><get><filter type="subtree"/></get></nc:rpc>');
    expect(el).to.include({ name: 'rpc', ns: 'urn:base', prefix: 'nc' });
    expect(el.attrs).to.deep.equal([
      { name: 'message-id', ns: '', prefix: '', value: '7' },
      { name: 'x', ns: 'urn:base', prefix: 'nc', value: 'y' },
    ]);
    const get = el.children[0]!;
    expect(get).to.include({ name: 'get', ns: 'urn:d' });
    expect(get.nsScope).to.deep.equal({ nc: 'urn:base', '': 'urn:d' });
    expect(get.children[0]!.attrs[0]).to.include({ name: 'type', value: 'subtree' });
  });

  it('collects text and CDATA, decoding the predefined and numeric entities', () => {
    const el = parseXml('<a>x &lt; y &amp; &#65;<![CDATA[<raw>]]></a>');
    expect(el.text).to.equal('x < y & A<raw>');
  });

  it('ignores whitespace before the XML declaration (left between framed messages)', () => {
    expect(parseXml('\n  <?xml version="1.0" encoding="UTF-8"?><rpc message-id="1"/>').name).to.equal('rpc');
  });

  it('refuses a DOCTYPE (no DTD is ever read)', () => {
    const e = parseError('<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>');
    expect(e.tag).to.equal('malformed-message');
    expect(e.message).to.match(/DOCTYPE/);
  });

  it('does not expand an undeclared entity', () => {
    expect(parseError('<a>&ent;</a>').tag).to.equal('malformed-message');
  });

  it('refuses unbound prefixes, mismatched tags and trailing garbage', () => {
    for (const bad of ['<x:a/>', '<a></b>', '<a/><b/>', '<a>', '', 'text']) {
      expect(parseError(bad).tag, bad).to.equal('malformed-message');
    }
  });

  it('enforces depth, element count and size limits with too-big, keeping the root for the reply', () => {
    const deep = `<rpc message-id="d">${'<a>'.repeat(50)}${'</a>'.repeat(50)}</rpc>`;
    const e1 = parseError(deep, { maxDepth: 20 });
    expect(e1.tag).to.equal('too-big');
    expect(e1.root?.attrs[0]?.value).to.equal('d');
    const wide = `<rpc message-id="w">${'<a/>'.repeat(200)}</rpc>`;
    expect(parseError(wide, { maxElements: 100 }).tag).to.equal('too-big');
    expect(parseError(wide, { maxSize: 100 }).tag).to.equal('too-big');
    expect(parseXml(wide, { maxElements: 201 }).children).to.have.length(200);
  });

  it('peeks the root start tag of a truncated message', () => {
    const root = peekRoot('<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="42"><edit-config><con');
    expect(root).to.include({ name: 'rpc', ns: 'urn:ietf:params:xml:ns:netconf:base:1.0' });
    expect(root!.attrs[0]!.value).to.equal('42');
    expect(peekRoot('<<<')).to.equal(undefined);
  });

  it('prints a subtree as a self-contained document that parses back to the same tree', () => {
    const src = '<r xmlns="urn:r" xmlns:p="urn:p"><c><p:x p:a="1&quot;" b="&lt;">v &amp; w</p:x><y xmlns="">t</y><id>p:thing</id></c></r>';
    const c = parseXml(src).children[0]!;
    const printed = serializeXml(c);
    const back = parseXml(printed);
    const strip = (e: ReturnType<typeof parseXml>): unknown => ({ n: e.name, ns: e.ns, a: e.attrs.map((a) => [a.name, a.ns, a.value]), t: e.text, c: e.children.map(strip) });
    expect(strip(back)).to.deep.equal(strip(c));
    // The identityref-like text keeps its prefix binding.
    expect(back.children[2]!.nsScope.p).to.equal('urn:p');
  });

  it('escapes text and drops characters XML 1.0 cannot carry', () => {
    const printed = `<m>${escapeText('a < b & c > d \u0001\u0000e')}</m>`;
    expect(printed).to.equal('<m>a &lt; b &amp; c &gt; d e</m>');
    expect(parseXml(printed).text).to.equal('a < b & c > d e');
  });
  it('parses each message on its own: nothing of an earlier message (a failed one included) leaks into the next', () => {
    // parseXml reuses its saxes parser between messages: state, namespaces and limits must not carry over.
    expect(parseXml('<a xmlns="urn:one"><b>x</b></a>').children[0]).to.include({ name: 'b', ns: 'urn:one', text: 'x' });
    const second = parseXml('<c/>');
    expect(second).to.include({ name: 'c', ns: '', text: '' });
    expect(second.children).to.deep.equal([]);
    expect(parseError('<a><b></a>').message).to.match(/malformed XML/);
    expect(parseError('<p:a xmlns:p="urn:p"><p:b>').message).to.match(/malformed XML/);
    expect(parseXml('<d xmlns:q="urn:q"><q:e/></d>').children[0]).to.include({ name: 'e', ns: 'urn:q' });
    expect(parseError('<a><b/><b/><b/></a>', { maxElements: 2 }).tag).to.equal('too-big');
    // Neither the element count nor the limit of the previous call stays.
    expect(parseXml('<a><b/></a>', { maxElements: 3 }).children).to.have.length(1);
    expect(parseXml('<a><b/></a>', { maxElements: 3 }).children).to.have.length(1);
    expect(parseXml('<a><b/><b/><b/></a>').children).to.have.length(3);
    expect(parseError('<!DOCTYPE a><a/>').message).to.match(/DOCTYPE/);
    expect(parseXml('<?xml version="1.0"?><z>1</z>')).to.include({ name: 'z', text: '1' });
    expect(parseError('<x/><y/>').tag).to.equal('malformed-message');
    expect(parseXml('<w/>')).to.include({ name: 'w' });
  });
});
