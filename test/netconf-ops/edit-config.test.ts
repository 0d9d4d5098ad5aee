import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { editCandidate, editRunning, GET_CANDIDATE, GET_RUNNING, NP, openHarness, profile, type Harness, type TestSession } from './ops-harness.js';
import { foldedRunningXml } from '../helpers/folded-running.js';

describe('netconf-ops: edit-config, commit and validation', function () {
  let h: Harness;
  let s: TestSession;

  beforeEach(async () => {
    h = await openHarness();
    s = h.session(1);
  });
  afterEach(async () => {
    await h.close();
  });

  it('merges into the candidate, and only commit makes it running and saves it', async () => {
    expect(await h.rpc(s, editCandidate(profile('web')))).to.equal('<ok/>');
    expect(await h.rpc(s, GET_CANDIDATE)).to.contain('<name>web</name>');
    expect(await h.rpc(s, GET_RUNNING)).to.not.contain('<name>web</name>');
    expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
    expect(await h.rpc(s, GET_RUNNING)).to.contain('<name>web</name>');
    expect(await foldedRunningXml(h.dir)).to.contain('<name>web</name>');
  });

  it('answers create of an existing node with data-exists and delete of a missing one with data-missing (application)', async () => {
    await h.rpc(s, editRunning(profile('a')));
    const [exists] = await h.rpcErrors(s, editRunning(profile('a').replace('<network-profile ', '<network-profile xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="create" ')));
    expect(exists.tag).to.equal('data-exists');
    expect(exists.type).to.equal('application');
    expect(exists.extra.path).to.equal("/tandem-network-profile:network-profile[name='a']");
    const [missing] = await h.rpcErrors(s, editRunning(`<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>zz</name></network-profile>`));
    expect(missing.tag).to.equal('data-missing');
    expect(missing.type).to.equal('application');
    // remove of a missing node is not an error
    expect(await h.rpc(s, editRunning(`<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"><name>zz</name></network-profile>`))).to.equal('<ok/>');
  });

  it('replaces a list entry as a whole and deletes a leaf with default-operation none', async () => {
    await h.rpc(s, editRunning(profile('a', 'tcp-fast-path', '<tcp-fast-path><session-idle-timeout>30</session-idle-timeout><enable-syn-protection>true</enable-syn-protection></tcp-fast-path>')));
    await h.rpc(s, editRunning(profile('a', 'tcp-fast-path', '<tcp-fast-path><session-idle-timeout>40</session-idle-timeout></tcp-fast-path>')
      .replace('<network-profile ', '<network-profile xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="replace" ')));
    let cfg = await h.rpc(s, GET_RUNNING);
    expect(cfg).to.contain('<session-idle-timeout>40</session-idle-timeout>');
    expect(cfg).to.not.contain('enable-syn-protection');
    await h.rpc(s, editRunning(`<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"><name>a</name><tcp-fast-path><session-idle-timeout nc:operation="delete"/></tcp-fast-path></network-profile>`,
      '<default-operation>none</default-operation>'));
    cfg = await h.rpc(s, GET_RUNNING);
    expect(cfg).to.not.contain('session-idle-timeout');
    expect(cfg).to.contain('<name>a</name>');
  });

  it('refuses a configuration that breaks a must with libyang message, app-tag and path; running is unchanged', async () => {
    const before = await h.rpc(s, GET_RUNNING);
    const errs = await h.rpcErrors(s, editRunning(profile('p', 'tcp-proxy', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>')));
    expect(errs[0].tag).to.equal('operation-failed');
    expect(errs[0].type).to.equal('application');
    expect(errs[0].extra.appTag).to.equal('connection-mirror-requires-tcp-fast-path');
    expect(errs[0].extra.path).to.equal("/tandem-network-profile:network-profile[name='p']/tcp-fast-path/connection-mirror");
    expect(errs[0].message).to.match(/connection-mirror/);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(before);
  });

  it('checks value types when the candidate is edited, and the whole tree at commit', async () => {
    const [bad] = await h.rpcErrors(s, editCandidate(profile('p', 'tcp-fast-path', '<tcp-fast-path><session-idle-timeout>0</session-idle-timeout></tcp-fast-path>')));
    expect(bad.tag).to.equal('invalid-value');
    expect(bad.extra.path).to.contain('session-idle-timeout');
    // Missing mandatory type is fine while editing, refused at commit.
    await h.rpc(s, editCandidate(`<network-profile xmlns="${NP}"><name>q</name></network-profile>`));
    const [mandatory] = await h.rpcErrors(s, '<commit/>');
    expect(mandatory.tag).to.equal('data-missing');
    expect(mandatory.message).to.match(/Mandatory node "type"/);
    expect(await h.rpc(s, GET_RUNNING)).to.not.contain('<name>q</name>');
    const [v] = await h.rpcErrors(s, '<validate><source><candidate/></source></validate>');
    expect(v.tag).to.equal('data-missing');
    await h.rpc(s, '<discard-changes/>');
    expect(await h.rpc(s, GET_CANDIDATE)).to.not.contain('<name>q</name>');
  });

  it('reports unknown elements and namespaces with bad-element', async () => {
    const [unknown] = await h.rpcErrors(s, editCandidate(`<network-profile xmlns="${NP}"><name>a</name><colour>red</colour></network-profile>`));
    expect(unknown.tag).to.equal('unknown-element');
    expect(unknown.extra.info).to.deep.include({ name: 'bad-element', value: 'colour' });
    const [ns] = await h.rpcErrors(s, editCandidate('<thing xmlns="urn:nowhere"/>'));
    expect(ns.tag).to.equal('unknown-namespace');
    expect(ns.extra.info).to.deep.include({ name: 'bad-namespace', value: 'urn:nowhere' });
    const [op] = await h.rpcErrors(s, editCandidate(profile('a').replace('<network-profile ', '<network-profile xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="squash" ')));
    expect(op.tag).to.equal('bad-attribute');
  });

  it('continue-on-error applies what it can and reports the rest; test-only changes nothing', async () => {
    await h.rpc(s, editRunning(profile('a')));
    const errs = await h.rpcErrors(s, editRunning(
      profile('a').replace('<network-profile ', '<network-profile xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="create" ') + profile('b'),
      '<error-option>continue-on-error</error-option>'));
    expect(errs.map((e) => e.tag)).to.deep.equal(['data-exists']);
    expect(await h.rpc(s, GET_RUNNING)).to.contain('<name>b</name>');
    expect(await h.rpc(s, editRunning(profile('c'), '<test-option>test-only</test-option>'))).to.equal('<ok/>');
    expect(await h.rpc(s, GET_RUNNING)).to.not.contain('<name>c</name>');
    const [rb] = await h.rpcErrors(s, editRunning(profile('d') + profile('e', 'tcp-proxy', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>'),
      '<error-option>rollback-on-error</error-option>'));
    expect(rb.extra.appTag).to.equal('connection-mirror-requires-tcp-fast-path');
    expect(await h.rpc(s, GET_RUNNING)).to.not.contain('<name>d</name>');
  });

  it('copy-config of an inline config, to startup, and delete-config of startup', async () => {
    await h.rpc(s, `<copy-config><target><candidate/></target><source><config>${profile('x')}${profile('y')}</config></source></copy-config>`);
    expect(await h.rpc(s, GET_CANDIDATE)).to.contain('<name>y</name>');
    await h.rpc(s, '<commit/>');
    await h.rpc(s, '<copy-config><target><startup/></target><source><running/></source></copy-config>');
    expect(await h.rpc(s, '<get-config><source><startup/></source></get-config>')).to.contain('<name>x</name>');
    expect(readFileSync(join(h.dir, 'startup.xml'), 'utf8')).to.contain('<name>x</name>');
    await h.rpc(s, '<delete-config><target><startup/></target></delete-config>');
    const [gone] = await h.rpcErrors(s, '<get-config><source><startup/></source></get-config>');
    expect(gone.tag).to.equal('invalid-value');
    const [run] = await h.rpcErrors(s, '<delete-config><target><running/></target></delete-config>');
    expect(run.tag).to.equal('invalid-value');
  });

  it('default-operation replace replaces the whole configuration', async () => {
    await h.rpc(s, editRunning(profile('old1') + profile('old2')));
    await h.rpc(s, editRunning(profile('new'), '<default-operation>replace</default-operation>'));
    const cfg = await h.rpc(s, GET_RUNNING);
    expect(cfg).to.contain('<name>new</name>').and.not.contain('<name>old1</name>').and.not.contain('<name>old2</name>');
  });

  it('a node of another case of a choice replaces the nodes of the old case', async () => {
    const ACM = 'urn:ietf:params:xml:ns:yang:ietf-netconf-acm';
    const rule = (body: string) => `<nacm xmlns="${ACM}"><rule-list><name>ops</name><group>admin</group><rule><name>r</name>${body}<access-operations>*</access-operations><action>permit</action></rule></rule-list></nacm>`;
    await h.rpc(s, editRunning(rule('<rpc-name>commit</rpc-name>')));
    expect(await h.rpc(s, GET_RUNNING)).to.contain('<rpc-name>commit</rpc-name>');
    // An instance-identifier value with its own XML prefix declaration.
    await h.rpc(s, editRunning(rule('<path xmlns:sys="urn:tandem:yang:tandem-system">/sys:system</path>')));
    const cfg = await h.rpc(s, GET_RUNNING);
    expect(cfg).to.not.contain('rpc-name');
    expect(cfg).to.match(/<path xmlns:(\w+)="urn:tandem:yang:tandem-system">\/\1:system<\/path>/);
  });

  it('restores running after a restart', async () => {
    await h.rpc(s, editRunning(profile('keep')));
    await h.restart();
    const s2 = h.session(2);
    expect(await h.rpc(s2, GET_RUNNING)).to.contain('<name>keep</name>');
    expect(await h.rpc(s2, GET_CANDIDATE)).to.contain('<name>keep</name>');
  });

  it('answers an unknown operation with operation-not-supported', async () => {
    const [e] = await h.rpcErrors(s, '<frobnicate/>');
    expect(e.tag).to.equal('operation-not-supported');
    expect(e.type).to.equal('protocol');
  });
});
