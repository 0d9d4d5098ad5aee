// A commit replays the edit on a copy of running's libyang tree instead of parsing the whole
// datastore again. Whatever path a commit took, running must equal a fresh parse of what was saved.
import { expect } from 'chai';
import { editCandidate, editRunning, GET_RUNNING, openHarness, type Harness, type TestSession } from './ops-harness.js';
import { foldedRunningXml } from '../helpers/folded-running.js';

const VRF = 'urn:tandem:yang:tandem-vrf';
const FW = 'urn:tandem:yang:tandem-firewall';
const NC = 'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"';
const YANG = 'xmlns:yang="urn:ietf:params:xml:ns:yang:1"';

function vrf(inner: string, fw = ''): string {
  return `<vrf xmlns="${VRF}" ${NC} ${YANG}><name>main</name>${inner}${fw ? `<firewall xmlns="${FW}">${fw}</firewall>` : ''}</vrf>`;
}

describe('netconf-ops: commits replayed on running\'s tree match a full parse', function () {
  let h: Harness;
  let s: TestSession;
  before(async () => {
    h = await openHarness();
    s = h.session(1);
  });
  after(async () => {
    await h.close();
  });

  async function expectConsistent(): Promise<string> {
    const served = (await h.rpc(s, GET_RUNNING)).replace(/^<data[^>]*>/, '').replace(/<\/data>$/, '');
    const saved = (await foldedRunningXml(h.dir)).replace(/^\s*<config[^>]*>/, '').replace(/<\/config>\s*$/, '');
    const fresh = h.yang.parse(saved, { format: 'xml', kind: 'config', validate: true });
    try {
      expect(served).to.equal(fresh.print({ format: 'xml' }));
    } finally {
      fresh.free();
    }
    return served;
  }

  it('keeps running identical to its saved form through merges, replaces, deletes, leaf-lists and positioned inserts', async () => {
    await h.rpc(s, editRunning(vrf('', '<rule><name>r1</name><action>accept</action></rule><rule><name>r2</name><protocol>tcp</protocol><action>drop</action></rule>')));
    await expectConsistent();
    await h.rpc(s, editCandidate(vrf(
      '<interface><vrrp><name>v1</name><link-interface>eth0</link-interface><vrid>7</vrid><virtual-address>10.0.0.1</virtual-address><virtual-address>10.0.0.2</virtual-address></vrrp></interface>',
      '<drop-invalid>false</drop-invalid><rule nc:operation="replace"><name>r1</name><action>drop</action></rule>'
      + '<rule><name>r3</name><protocol>udp</protocol><destination-port><start>53</start></destination-port><action>accept</action></rule>')));
    await h.rpc(s, '<commit/>');
    let cfg = await expectConsistent();
    expect(cfg).to.contain('<virtual-address>10.0.0.2</virtual-address>').and.contain('<start>53</start>');
    // A rule replaced without 'insert' stays where it was (the order of firewall rules is configuration).
    expect(cfg.indexOf('<name>r1</name>')).to.be.lessThan(cfg.indexOf('<name>r2</name>'));
    await h.rpc(s, editRunning(vrf('<interface><vrrp><name>v1</name><virtual-address nc:operation="delete">10.0.0.1</virtual-address></vrrp></interface>',
      '<drop-invalid nc:operation="remove"/><rule><name>r2</name><protocol nc:operation="delete"/></rule>')));
    cfg = await expectConsistent();
    expect(cfg).to.not.contain('10.0.0.1').and.not.contain('drop-invalid');
    await h.rpc(s, editRunning(vrf('', '<rule yang:insert="first"><name>r0</name><action>accept</action></rule>')));
    cfg = await expectConsistent();
    expect(cfg.indexOf('<name>r0</name>')).to.be.lessThan(cfg.indexOf('<name>r1</name>'));
    await h.rpc(s, editRunning(vrf('', '<rule><name>r4</name><action>drop</action></rule>')));
    cfg = await expectConsistent();
    expect(cfg.indexOf('<name>r3</name>')).to.be.lessThan(cfg.indexOf('<name>r4</name>'));
    // A fast-path commit that breaks a must is refused like any other.
    const [e] = await h.rpcErrors(s, editRunning(vrf('', '<rule><name>r5</name><source-port><start>1</start></source-port><action>drop</action></rule>')));
    expect(e.extra.appTag).to.equal('port-match-requires-tcp-or-udp');
    await expectConsistent();
  });
});
