// Validation errors say what is allowed: the range, length or pattern from the YANG type (through
// typedefs of other modules), no libyang "(line N)", and the path of a missing mandatory node names
// the list entry (keys) it is missing from.
import { expect } from 'chai';
import { editCandidate, editRunning, GET_RUNNING, NP, openHarness, profile, type Harness, type TestSession } from './ops-harness.js';

const VRF = 'urn:tandem:yang:tandem-vrf';
const CT = 'urn:tandem:yang:tandem-conntrack';
const HA = 'urn:tandem:yang:tandem-ha-fp-conntrack';

describe('netconf-ops: validation messages', function () {
  let h: Harness;
  let s: TestSession;

  before(async () => {
    h = await openHarness();
    s = h.session(1);
  });
  after(async () => {
    await h.close();
  });

  it('a value out of range states the allowed range (leaf with an inline range)', async () => {
    const before = await h.rpc(s, GET_RUNNING);
    const [e] = await h.rpcErrors(s, editRunning(profile('a', 'tcp-fast-path', '<tcp-fast-path><session-idle-timeout>86401</session-idle-timeout></tcp-fast-path>')));
    expect(e!.tag).to.equal('invalid-value');
    expect(e!.message).to.equal('value "86401" is out of the allowed range 1..86400');
    expect(e!.extra.path).to.match(/^\/tandem-network-profile:network-profile(\[name='a'\])?\/tcp-fast-path\/session-idle-timeout$/);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(before);
  });

  it('a value out of range states the range of an imported typedef', async () => {
    const [e] = await h.rpcErrors(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><network-stack xmlns="${CT}"><fast-path><conntrack><timeouts><tcp><undefined>0</undefined></tcp></timeouts></conntrack></fast-path></network-stack></vrf>`));
    expect(e!.message).to.equal('value "0" is out of the allowed range 1..31536000');
    expect(e!.message).not.to.match(/line \d/);
  });

  it('a string too long states its length and the allowed length; a bad name states the pattern', async () => {
    const long = 'x'.repeat(70);
    const [len] = await h.rpcErrors(s, editCandidate(profile(long)));
    expect(len!.tag).to.equal('invalid-value');
    expect(len!.message).to.equal(`string "${long}" has length 70, outside the allowed length 1..64`);
    const [pat] = await h.rpcErrors(s, editCandidate(profile('a b')));
    expect(pat!.message).to.equal('value "a b" does not match the pattern [A-Za-z0-9_][A-Za-z0-9_.\\-]*');
    expect(`${len!.message} ${pat!.message}`).not.to.match(/\(line \d+\)/);
    await h.rpc(s, '<discard-changes/>');
  });

  it('a missing mandatory node has the keys of its list entry in the path', async () => {
    const [e] = await h.rpcErrors(s, editRunning(profile('ok') + `<network-profile xmlns="${NP}"><name>untyped</name></network-profile>`));
    expect(e!.tag).to.equal('data-missing');
    expect(e!.extra.path).to.equal("/tandem-network-profile:network-profile[name='untyped']/type");
    const [nested] = await h.rpcErrors(s, editRunning(`<vrf xmlns="${VRF}"><name>blue</name><ha-fp-conntrack xmlns="${HA}"><peer><name>p1</name><source>10.0.0.1</source><address>10.0.0.2</address></peer><shared-secret>k7Qx9vLm2pR4tZ8wN3bY</shared-secret></ha-fp-conntrack></vrf>`));
    expect(nested!.tag).to.equal('data-missing');
    expect(nested!.extra.path).to.equal("/tandem-vrf:vrf[name='blue']/tandem-ha-fp-conntrack:ha-fp-conntrack/listen-ha-group");
  });
});
