import { expect } from 'chai';
import { editRunning, GET_RUNNING, NP, openHarness, profile, waitFor, type Harness, type TestSession } from './ops-harness.js';
import { parseXml } from '../../agent/netconf/xml-parser.js';
import type { RpcProvider, StateProvider } from '../../core/subsystem.js';

const MON = 'urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring';

function getConfig(filter: string, extra = ''): string {
  return `<get-config><source><running/></source>${filter}${extra}</get-config>`;
}

describe('netconf-ops: reads, filters, with-defaults, monitoring, notifications', function () {
  let h: Harness;
  let s: TestSession;
  let synced = 0;
  const state: StateProvider = {
    name: 'test-state',
    state: () => ({ 'tandem-ha:ha': { group: [{ name: 'g1', 'current-state': 'master' }] } }),
  };
  const sync: RpcProvider = {
    rpcPath: '/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization',
    invoke: async (input) => {
      synced += 1;
      return input.vrf === 'main' ? { message: 'Synchronization started' } : Promise.reject(new Error(`no vrf ${String(input.vrf)}`));
    },
  };

  before(async () => {
    h = await openHarness({ stateProviders: [state], rpcProviders: [sync] });
    s = h.session(7, 'alice');
    await h.rpc(s, editRunning(profile('a', 'tcp-fast-path', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>')
      + profile('b', 'tcp-proxy') + profile('c', 'udp-fast-path')));
  });
  after(async () => {
    await h.close();
  });

  it('get-config output is byte-identical between calls', async () => {
    const one = await h.rpc(s, GET_RUNNING);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(one);
  });

  it('subtree filter: content match selects one entry, selection picks leaves, keys come along', async () => {
    const out = await h.rpc(s, getConfig(`<filter type="subtree"><network-profile xmlns="${NP}"><name>b</name></network-profile></filter>`));
    expect(out).to.contain('<name>b</name>').and.contain('tcp-proxy');
    expect(out).to.not.contain('<name>a</name>');
    const sel = await h.rpc(s, getConfig(`<filter type="subtree"><network-profile xmlns="${NP}"><type/></network-profile></filter>`));
    const doc = parseXml(sel);
    expect(doc.children).to.have.length(3);
    expect(doc.children[0].children.map((c) => c.name)).to.deep.equal(['name', 'type']);
    const deep = await h.rpc(s, getConfig(`<filter type="subtree"><network-profile xmlns="${NP}"><type>tcp-fast-path</type><tcp-fast-path><connection-mirror/></tcp-fast-path></network-profile></filter>`));
    expect(parseXml(deep).children).to.have.length(1);
    expect(deep).to.contain('<connection-mirror>true</connection-mirror>');
    const wrongNs = await h.rpc(s, getConfig('<filter type="subtree"><network-profile xmlns="urn:other"/></filter>'));
    expect(parseXml(wrongNs).children).to.have.length(0);
    const empty = await h.rpc(s, getConfig('<filter type="subtree"></filter>'));
    expect(parseXml(empty).children).to.have.length(0);
  });

  it('a filtered read of running is printed once per version, filter and mode: a commit, another filter or mode answers anew', async () => {
    const byName = (n: string, wd = '') => getConfig(`<filter type="subtree"><network-profile xmlns="${NP}"><name>${n}</name></network-profile></filter>`, wd);
    const b1 = await h.rpc(s, byName('b'));
    expect(await h.rpc(s, byName('b'))).to.equal(b1);
    // Another key, another namespace binding of the same filter, an xpath filter: their own answers.
    expect(await h.rpc(s, byName('c'))).to.contain('udp-fast-path').and.not.contain('tcp-proxy');
    const xp = await h.rpc(s, getConfig(`<filter type="xpath" xmlns:p="${NP}" select="/p:network-profile[p:name='c']"/>`));
    expect(xp).to.contain('udp-fast-path').and.not.contain('tcp-proxy');
    const all = await h.rpc(s, byName('b', '<with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all</with-defaults>'));
    expect(all.length).to.be.greaterThan(b1.length); // the defaults of b are in it
    // A commit changes b: the next identical read shows it (and the removal of c).
    await h.rpc(s, editRunning(profile('b', 'udp-fast-path')));
    const b2 = await h.rpc(s, byName('b'));
    expect(b2).to.contain('udp-fast-path').and.not.contain('tcp-proxy');
    await h.rpc(s, editRunning(`<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>c</name></network-profile>`));
    expect(parseXml(await h.rpc(s, byName('c'))).children).to.have.length(0);
    expect(parseXml(await h.rpc(s, getConfig(`<filter type="xpath" xmlns:p="${NP}" select="/p:network-profile[p:name='c']"/>`))).children).to.have.length(0);
    // Restore what the other tests expect.
    await h.rpc(s, editRunning(profile('b', 'tcp-proxy') + profile('c', 'udp-fast-path')));
    expect(await h.rpc(s, byName('b'))).to.equal(b1);
  });

  it('xpath filter with the client\'s own prefixes', async () => {
    const out = await h.rpc(s, getConfig(`<filter xmlns:p="${NP}" type="xpath" select="/p:network-profile[p:type='tcp-proxy']"/>`));
    expect(out).to.contain('<name>b</name>');
    expect(out).to.not.contain('<name>a</name>');
  });

  it('with-defaults: explicit, report-all, trim and report-all-tagged with the RFC 6243 attribute namespace', async () => {
    const f = `<filter type="subtree"><network-profile xmlns="${NP}"><name>a</name></network-profile></filter>`;
    const wd = (m: string) => h.rpc(s, getConfig(f, `<with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">${m}</with-defaults>`));
    expect(await h.rpc(s, getConfig(f))).to.not.contain('session-idle-timeout');
    expect(await wd('report-all')).to.contain('<session-idle-timeout>300</session-idle-timeout>');
    expect(await wd('trim')).to.not.contain('session-idle-timeout');
    const tagged = parseXml(await wd('report-all-tagged'));
    const leaf = tagged.children[0].children.find((c) => c.name === 'tcp-fast-path')!.children.find((c) => c.name === 'session-idle-timeout')!;
    expect(leaf.attrs).to.deep.include({ name: 'default', ns: 'urn:ietf:params:xml:ns:netconf:default:1.0', prefix: leaf.attrs[0].prefix, value: 'true' });
    const [bad] = await h.rpcErrors(s, getConfig('', '<with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">some</with-defaults>'));
    expect(bad.tag).to.equal('invalid-value');
  });

  it('get merges running with subsystem state; get-data on operational, running, with config-filter', async () => {
    const all = await h.rpc(s, `<get><filter type="subtree"><ha xmlns="urn:tandem:yang:tandem-ha"/></filter></get>`);
    expect(all).to.contain('<current-state>master</current-state>');
    const op = await h.rpc(s, `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><subtree-filter><ha xmlns="urn:tandem:yang:tandem-ha"/><network-profile xmlns="${NP}"/></subtree-filter></get-data>`);
    expect(op).to.contain('urn:ietf:params:xml:ns:yang:ietf-netconf-nmda').and.contain('<current-state>master</current-state>').and.contain('<name>a</name>');
    const stateOnly = await h.rpc(s, `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><subtree-filter><ha xmlns="urn:tandem:yang:tandem-ha"/><network-profile xmlns="${NP}"/></subtree-filter><config-filter>false</config-filter></get-data>`);
    expect(stateOnly).to.contain('<current-state>master</current-state>').and.not.contain('<name>a</name>');
    const running = await h.rpc(s, `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:running</datastore></get-data>`);
    expect(running).to.contain('<name>a</name>').and.not.contain('current-state');
  });

  it('ietf-netconf-monitoring: sessions, schemas, statistics; yang-library', async () => {
    const out = await h.rpc(s, `<get><filter type="subtree"><netconf-state xmlns="${MON}"/></filter></get>`);
    expect(out).to.contain('<username>alice</username>').and.contain('<session-id>7</session-id>');
    expect(out).to.contain('<identifier>tandem-network-profile</identifier>');
    expect(out).to.contain('<in-sessions>');
    // Its schema-only parts are printed once; locks and sessions are read each time.
    expect(out).to.not.contain('<locked-by-session>');
    expect(await h.rpc(s, '<lock><target><candidate/></target></lock>')).to.contain('<ok/>');
    const locked = await h.rpc(s, `<get><filter type="subtree"><netconf-state xmlns="${MON}"/></filter></get>`);
    expect(locked).to.contain('<locked-by-session>7</locked-by-session>');
    const part = (text: string, name: string) => new RegExp(`<${name}>.*</${name}>`).exec(text)?.[0];
    expect(part(locked, 'capabilities')).to.equal(part(out, 'capabilities')).and.contain('urn:ietf:params:netconf:base:1.1');
    expect(part(locked, 'schemas')).to.equal(part(out, 'schemas')).and.contain('<identifier>tandem-vrf</identifier>');
    expect(await h.rpc(s, '<unlock><target><candidate/></target></unlock>')).to.contain('<ok/>');
    expect(await h.rpc(s, `<get><filter type="subtree"><netconf-state xmlns="${MON}"/></filter></get>`)).to.not.contain('<locked-by-session>');
    const lib = await h.rpc(s, '<get><filter type="subtree"><yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library"/></filter></get>');
    expect(lib).to.contain('<name>tandem-vrf</name>').and.contain('<content-id>');
    expect(lib).to.not.contain('<name>a</name>');
  });

  it('xpath filters on get reach the server\'s own state too; kill-session ends another session', async () => {
    const out = await h.rpc(s, `<get><filter xmlns:m="${MON}" type="xpath" select="/m:netconf-state/m:sessions/m:session[m:session-id='7']/m:username"/></get>`);
    expect(out).to.contain('<username>alice</username>').and.not.contain('<name>a</name>');
    const victim = h.session(20);
    expect(await h.rpc(s, '<kill-session><session-id>20</session-id></kill-session>')).to.equal('<ok/>');
    expect(s.killed).to.deep.equal([20]);
    const [self] = await h.rpcErrors(s, '<kill-session><session-id>7</session-id></kill-session>');
    expect(self.tag).to.equal('invalid-value');
    const [none] = await h.rpcErrors(s, '<kill-session><session-id>999</session-id></kill-session>');
    expect(none.tag).to.equal('invalid-value');
    h.end(victim, 'killed');
    expect(await h.rpc(s, '<close-session/>')).to.equal('<ok/>');
    expect(s.closed).to.equal(true);
  });

  it('get-schema for every module in monitoring, with format yang, ncm:yang or unprefixed (as ncclient sends it)', async () => {
    const list = parseXml(await h.rpc(s, `<get><filter type="subtree"><netconf-state xmlns="${MON}"><schemas/></netconf-state></filter></get>`));
    const schemas = list.children[0].children[0].children.filter((c) => c.children.find((x) => x.name === 'format')!.text.endsWith(':yang'));
    expect(schemas.length).to.be.greaterThan(15);
    for (const sc of schemas) {
      const id = sc.children.find((c) => c.name === 'identifier')!.text;
      const version = sc.children.find((c) => c.name === 'version')!.text;
      const reply = await h.rpc(s, `<get-schema xmlns="${MON}"><identifier>${id}</identifier><version>${version}</version><format>yang</format></get-schema>`);
      const text = parseXml(reply).text;
      expect(text, id).to.match(new RegExp(`(sub)?module ${id}\\s*\\{`));
    }
    const nc = parseXml(`<nc:get-schema xmlns:nc="${MON}"><nc:identifier>tandem-system</nc:identifier><nc:format>ncm:yang</nc:format></nc:get-schema>`);
    const r = await h.ops.dispatch(s, nc);
    expect('xml' in r && r.xml).to.contain('module tandem-system');
    const [missing] = await h.rpcErrors(s, `<get-schema xmlns="${MON}"><identifier>nope</identifier></get-schema>`);
    expect(missing.tag).to.equal('invalid-value');
  });

  it('notifications: config-change after a commit, subtree filter, replay with startTime', async () => {
    const t0 = new Date(Date.now() - 1000).toISOString();
    const sub = h.session(8);
    await h.rpc(sub, '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"><filter type="subtree"><netconf-config-change xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"/></filter></create-subscription>');
    const [again] = await h.rpcErrors(sub, '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>');
    expect(again.tag).to.equal('in-use');
    await h.rpc(s, editRunning(profile('d')));
    await waitFor(() => sub.notifications.length > 0, 'config-change');
    expect(sub.notifications[0]).to.contain('<netconf-config-change').and.contain('<datastore>running</datastore>')
      .and.contain("network-profile[name='d']").and.contain('<username>alice</username>');
    expect(sub.notifications.every((n) => n.includes('netconf-config-change'))).to.equal(true);
    const late = h.session(9);
    await h.rpc(late, `<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"><startTime>${t0}</startTime></create-subscription>`);
    await waitFor(() => late.notifications.some((n) => n.includes('replayComplete')), 'replayComplete');
    expect(late.notifications.some((n) => n.includes('netconf-session-start') && n.includes('<session-id>8</session-id>'))).to.equal(true);
    h.ops.notify({ 'tandem-ha:group-state-change': { group: 'g1', 'new-state': 'backup' } });
    await waitFor(() => late.notifications.some((n) => n.includes('<group-state-change')), 'subsystem notification');
    expect(late.notifications.find((n) => n.includes('<group-state-change'))).to.contain('<new-state>backup</new-state>')
      .and.contain('xmlns="urn:tandem:yang:tandem-ha"');
    h.end(late);
    h.end(sub);
  });

  it('notifications: an XPath filter selects by content', async () => {
    const sub = h.session(10);
    await h.rpc(sub, '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"><filter xmlns:ha="urn:tandem:yang:tandem-ha" type="xpath" select="/ha:group-state-change[ha:new-state=\'master\']"/></create-subscription>');
    h.ops.notify({ 'tandem-ha:group-state-change': { group: 'g1', 'new-state': 'backup' } });
    h.ops.notify({ 'tandem-ha:group-state-change': { group: 'g2', 'new-state': 'master' } });
    await waitFor(() => sub.notifications.length > 0, 'filtered notification');
    await new Promise((r) => setTimeout(r, 50));
    expect(sub.notifications).to.have.length(1);
    expect(sub.notifications[0]).to.contain('<group>g2</group>');
    h.end(sub);
  });

  it('RPCs of subsystems, with input parsed by libyang and errors reported', async () => {
    const before = synced;
    const reply = await h.rpc(s, '<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>');
    expect(reply).to.equal('<message xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">Synchronization started</message>');
    expect(synced).to.equal(before + 1);
    const [e] = await h.rpcErrors(s, '<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>blue</vrf></ha-fp-conntrack-synchronization>');
    expect(e.tag).to.equal('operation-failed');
    expect(e.message).to.contain('no vrf blue');
    // A namespace-less operation is resolved by its name when that is unambiguous.
    expect(await h.rpc(s, '<ha-fp-conntrack-synchronization xmlns=""><vrf>main</vrf></ha-fp-conntrack-synchronization>')).to.contain('Synchronization started');
  });
});
