// Every libyang tree the operations create is freed: the wasm heap does not grow with the number
// of edits, commits, filtered reads and refused edits.
import { expect } from 'chai';
import { editCandidate, editRunning, GET_RUNNING, NP, openHarness, profile, type Harness } from './ops-harness.js';

describe('netconf-ops: libyang trees are freed', function () {
  this.timeout(120000);
  let h: Harness;
  before(async () => {
    h = await openHarness();
  });
  after(async () => {
    await h.close();
  });

  async function round(i: number): Promise<void> {
    const s = h.session(100 + i);
    await h.rpc(s, editCandidate(profile(`p${i}`)));
    await h.rpc(s, '<commit/>');
    await h.rpc(s, editRunning(`<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>p${i}</name></network-profile>`));
    await h.rpc(s, GET_RUNNING);
    await h.rpc(s, `<get-config><source><running/></source><filter type="subtree"><network-profile xmlns="${NP}"><name>p0</name></network-profile></filter></get-config>`);
    await h.rpc(s, `<get-config><source><running/></source><filter xmlns:p="${NP}" type="xpath" select="/p:network-profile"/></get-config>`);
    await h.rpc(s, '<get><filter type="subtree"><ha xmlns="urn:tandem:yang:tandem-ha"/></filter></get>');
    await h.rpcErrors(s, editRunning(profile(`bad${i}`, 'tcp-proxy', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>')));
    await h.rpcErrors(s, editCandidate(profile(`bad${i}`, 'tcp-fast-path', '<tcp-fast-path><session-idle-timeout>0</session-idle-timeout></tcp-fast-path>')));
    await h.rpc(s, editCandidate(profile(`c${i}`)));
    await h.rpc(s, '<validate><source><candidate/></source></validate>');
    await h.rpc(s, '<discard-changes/>');
    h.end(s);
  }

  it('keeps the wasm heap flat over 150 rounds of operations', async () => {
    for (let i = 0; i < 20; i++) await round(i);
    const before = h.yang.heapUsed();
    for (let i = 20; i < 170; i++) await round(i);
    const grown = h.yang.heapUsed() - before;
    // Even the smallest tree (one profile, about 400 bytes) leaked per round would add 60 kB.
    expect(grown, `heap grew by ${grown} bytes`).to.be.lessThan(8 * 1024);
  });
});
