// Scoped reads (issue 8 item 4): a state provider runs only when a <get>'s filter selects one of
// its subtrees (or something above them); without a filter, or with an XPath one, every provider runs.
import { expect } from 'chai';
import type { ConfigJson, StateProvider } from '../../core/subsystem.js';
import { openHarness, type Harness, type TestSession } from './ops-harness.js';

class CountingProvider implements StateProvider {
  calls = 0;
  constructor(readonly name: string, readonly paths: string[], private readonly json: ConfigJson) {}
  state(): ConfigJson {
    this.calls++;
    return this.json;
  }
}

describe('netconf-ops: state providers run only for the subtrees a filter selects', function () {
  let h: Harness;
  let s: TestSession;
  const ha = new CountingProvider('ha', ['/tandem-ha:ha'], { 'tandem-ha:ha': { group: [{ name: 'g1', 'current-state': 'master', controller: 'static', transitions: '0' }] } });
  const vs = new CountingProvider('vs', ['/tandem-vrf:vrf/tandem-virtual-service:virtual-service'], {});
  before(async () => {
    h = await openHarness({ stateProviders: [ha, vs] });
    s = h.session(1);
  });
  after(async () => h.close());

  function calls(): [number, number] {
    return [ha.calls, vs.calls];
  }

  it('calls only the provider of the selected subtree', async () => {
    const start = calls();
    const reply = await h.rpc(s, '<get><filter type="subtree"><ha xmlns="urn:tandem:yang:tandem-ha"/></filter></get>');
    expect(reply).to.include('<current-state>master</current-state>');
    expect(calls()).to.deep.equal([start[0] + 1, start[1]]);
    // A VRF selected by its key only: the whole entry, so the virtual-service provider runs, not ha.
    await h.rpc(s, '<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name></vrf></filter></get>');
    expect(calls()).to.deep.equal([start[0] + 1, start[1] + 1]);
    // ha-fp-conntrack of a VRF: neither.
    await h.rpc(s, '<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf></filter></get>');
    expect(calls()).to.deep.equal([start[0] + 1, start[1] + 1]);
    // netconf-state: neither.
    await h.rpc(s, '<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/></filter></get>');
    expect(calls()).to.deep.equal([start[0] + 1, start[1] + 1]);
  });

  it('calls every provider without a filter and with an XPath filter', async () => {
    const start = calls();
    await h.rpc(s, '<get/>');
    await h.rpc(s, '<get><filter type="xpath" select="/tandem-ha:ha" xmlns:tandem-ha="urn:tandem:yang:tandem-ha"/></get>');
    expect(calls()).to.deep.equal([start[0] + 2, start[1] + 2]);
  });
});
