// NACM (RFC 8341) with Debian's python3-ncclient against `tandem start`: the factory configuration
// (group admin: everything; others: the RFC defaults), RFC 8341 Appendix A's example configuration
// adapted to tandem's modules, a deny-all configuration, enable-nacm false, and the recovery user.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { DEBIAN_PYTHON, NCCLIENT_PRELUDE, runPython } from '../helpers/python-client.js';
import { freeTcpPort } from '../helpers/free-port.js';
import { foldedRunningXml } from '../helpers/folded-running.js';

const SECRET = 'nacm-test-secret-0123456789';
/** The sync listener binds 127.0.0.1 on this port: one the kernel says is free, not a fixed one. */
const SYNC_PORT = await freeTcpPort('127.0.0.1');

/** Users of every kind, with groups from the transport (the user store). */
const USERS = [
  { name: 'admin', password: 'admin-secret', groups: ['admin'] },
  { name: 'wilma', password: 'wilma-secret', groups: ['limited'] },
  { name: 'guest', password: 'guest-secret' }, // its group comes from the NACM configuration (Appendix A)
  { name: 'reader', password: 'reader-secret' }, // no group: the RFC defaults
  { name: 'rescue', password: 'rescue-secret', recovery: true },
];

const PRELUDE = `${NCCLIENT_PRELUDE}
import time
NC = 'urn:ietf:params:xml:ns:netconf:base:1.0'
ACM = 'urn:ietf:params:xml:ns:yang:ietf-netconf-acm'
NP = 'urn:tandem:yang:tandem-network-profile'
PASSWORDS = inp['passwords']
def as_user(name):
    return manager.connect(host=inp['host'], port=inp['port'], username=name, password=PASSWORDS[name],
                           hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30)
def err(fn):
    try:
        fn()
        return None
    except RPCError as e:
        return {'tag': e.tag, 'type': e.type, 'path': e.path, 'message': e.message}
def prof(name):
    return f'<config xmlns="{NC}"><network-profile xmlns="{NP}"><name>{name}</name><type>tcp-fast-path</type></network-profile></config>'
HA = '''<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>backup</state></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <peer><name>peer1</name><source>127.0.0.1</source><address>127.0.0.2</address><port>${SYNC_PORT}</port></peer>
      <listen-ha-group>ha-group1</listen-ha-group>
      <shared-secret>${SECRET}</shared-secret>
    </ha-fp-conntrack>
  </vrf></config>'''
SECRET_EDIT = '''<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
  <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><shared-secret>overwritten-by-someone-else</shared-secret></ha-fp-conntrack></vrf></config>'''
# ncclient (lxml) drops an xmlns:n on <path> when its namespace is the default one in scope, though the
# text uses the prefix: the prefixes of rule paths are declared on <nacm> as well, where lxml keeps them.
def nacm_edit(body, op='replace'):
    return (f'<config xmlns="{NC}"><nacm xmlns="{ACM}" xmlns:n="{ACM}" xmlns:np="{NP}" xmlns:nc="{NC}" nc:operation="{op}">'
            f'{body}</nacm></config>')
def reads(m):
    return {
        'get_config': m.get_config(source='running').data_xml,
        'get': m.get(filter=('subtree', '<vrf xmlns="urn:tandem:yang:tandem-vrf"/>')).data_xml,
        'get_data': m.dispatch(to_ele('<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:running</datastore></get-data>')).xml,
        'xpath': m.get_config(source='running', filter=('xpath', '/tandem-vrf:vrf')).data_xml,
    }
from ncclient.xml_ import to_ele
`;

/** Factory configuration: admin, an ordinary user, the recovery user. */
const FACTORY = `${PRELUDE}
out = {}
admin = as_user('admin')
reader = as_user('reader')
admin.edit_config(target='running', config=HA)
out['admin_reads'] = reads(admin)
out['reader_reads'] = reads(reader)
out['reader_write_secret'] = err(lambda: reader.edit_config(target='running', config=SECRET_EDIT))
out['reader_write_candidate'] = err(lambda: reader.edit_config(target='candidate', config=prof('sneaky')))
out['reader_copy_config'] = err(lambda: reader.copy_config(source='running', target='startup'))
admin.copy_config(source='running', target='startup')
out['reader_delete_startup'] = err(lambda: reader.delete_config(target='startup'))
admin.lock('running')
out['reader_kill_admin'] = err(lambda: reader.dispatch(to_ele(f'<kill-session xmlns="{NC}"><session-id>{admin.session_id}</session-id></kill-session>')))
out['admin_still_locked'] = err(lambda: reader.lock('running'))
admin.unlock('running')
out['reader_lock'] = err(lambda: reader.lock('candidate'))
reader.unlock('candidate')
out['reader_validate'] = err(lambda: reader.validate(source='running'))
out['reader_nacm'] = reader.get(filter=('subtree', f'<nacm xmlns="{ACM}"/>')).data_xml
out['counters'] = admin.get(filter=('subtree', f'<nacm xmlns="{ACM}"><denied-operations/><denied-data-writes/><denied-notifications/></nacm>')).data_xml
rescue = as_user('rescue')
out['rescue_reads'] = reads(rescue)
out['rescue_write'] = err(lambda: rescue.edit_config(target='running', config=prof('rescued')))
victim = as_user('reader')
out['admin_kill'] = err(lambda: admin.dispatch(to_ele(f'<kill-session xmlns="{NC}"><session-id>{victim.session_id}</session-id></kill-session>')))
out['admin_delete_startup'] = err(lambda: admin.delete_config(target='startup'))
for s in (admin, reader, rescue):
    s.close_session()
print(json.dumps(out))
`;

// RFC 8341 Appendix A (A.2 groups, A.3 module rules, A.4 rpc rules, A.5 data node rules, A.6
// notification rules), module names adapted: acme-netconf -> tandem-network-profile. A.4's
// guest-limited-acl comes first: rule-lists are evaluated in order, and limited-acl's permit-exec
// (any RPC) would otherwise permit kill-session to the limited group before its deny is reached.
const APPENDIX_A = `
<groups>
  <group><name>admin</name><user-name>admin</user-name><user-name>andy</user-name></group>
  <group><name>limited</name><user-name>wilma</user-name><user-name>bam-bam</user-name></group>
  <group><name>guest</name><user-name>guest</user-name><user-name>guest@example.com</user-name></group>
</groups>
<rule-list>
  <name>guest-limited-acl</name><group>limited</group><group>guest</group>
  <rule><name>deny-kill-session</name><module-name>ietf-netconf</module-name><rpc-name>kill-session</rpc-name>
    <access-operations>exec</access-operations><action>deny</action></rule>
  <rule><name>deny-delete-config</name><module-name>ietf-netconf</module-name><rpc-name>delete-config</rpc-name>
    <access-operations>exec</access-operations><action>deny</action></rule>
</rule-list>
<rule-list>
  <name>guest-acl</name><group>guest</group>
  <rule><name>deny-ncm</name><module-name>ietf-netconf-monitoring</module-name><access-operations>*</access-operations><action>deny</action>
    <comment>Do not allow guests any access to the NETCONF monitoring information.</comment></rule>
</rule-list>
<rule-list>
  <name>limited-acl</name><group>limited</group>
  <rule><name>permit-ncm</name><module-name>ietf-netconf-monitoring</module-name><access-operations>read</access-operations><action>permit</action></rule>
  <rule><name>permit-exec</name><module-name>*</module-name><access-operations>exec</access-operations><action>permit</action></rule>
</rule-list>
<rule-list>
  <name>admin-acl</name><group>admin</group>
  <rule><name>permit-all</name><module-name>*</module-name><access-operations>*</access-operations><action>permit</action></rule>
</rule-list>
<rule-list>
  <name>guest-acl-data</name><group>guest</group>
  <rule><name>deny-nacm</name><path xmlns:n="urn:ietf:params:xml:ns:yang:ietf-netconf-acm">/n:nacm</path>
    <access-operations>*</access-operations><action>deny</action></rule>
</rule-list>
<rule-list>
  <name>limited-acl-data</name><group>limited</group>
  <rule><name>permit-profile-config</name><path xmlns:np="urn:tandem:yang:tandem-network-profile">/np:network-profile</path>
    <access-operations>read create update delete</access-operations><action>permit</action>
    <comment>Allow the limited group to edit the network profiles.</comment></rule>
  <rule><name>deny-config-change</name><module-name>ietf-netconf-notifications</module-name><notification-name>netconf-config-change</notification-name>
    <access-operations>read</access-operations><action>deny</action></rule>
</rule-list>`;

const APPENDIX = `${PRELUDE}
out = {}
admin = as_user('admin')
admin.edit_config(target='running', config=HA)
admin.edit_config(target='running', config=nacm_edit(inp['appendix']))
wilma = as_user('wilma')
guest = as_user('guest')
# limited: writes network profiles (candidate then commit), nothing else
wilma.edit_config(target='candidate', config=prof('by-wilma'))
wilma.commit()
out['wilma_profile'] = '<name>by-wilma</name>' in admin.get_config(source='running').data_xml
out['wilma_secret'] = err(lambda: wilma.edit_config(target='running', config=SECRET_EDIT))
out['wilma_ha'] = err(lambda: wilma.edit_config(target='running', config='<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group2</name></group></ha></config>'))
out['wilma_kill'] = err(lambda: wilma.dispatch(to_ele(f'<kill-session xmlns="{NC}"><session-id>{guest.session_id}</session-id></kill-session>')))
out['wilma_monitoring'] = wilma.get(filter=('subtree', '<netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><sessions/></netconf-state>')).data_xml
out['wilma_reads'] = reads(wilma)
# limited may not receive netconf-config-change: the admin's edit sends nothing to wilma
wilma.create_subscription()
admin.edit_config(target='running', config=prof('while-subscribed'))
n = wilma.take_notification(timeout=3)
out['wilma_notification'] = n.notification_xml if n is not None else None
# guest: no monitoring, no nacm, no kill-session
out['guest_monitoring'] = guest.get(filter=('subtree', '<netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/>')).data_xml
out['guest_nacm'] = guest.get_config(source='running', filter=('subtree', f'<nacm xmlns="{ACM}"/>')).data_xml
out['guest_write'] = err(lambda: guest.edit_config(target='running', config=prof('by-guest')))
out['guest_get_schema'] = err(lambda: guest.get_schema('tandem-network-profile'))
out['counters'] = admin.get(filter=('subtree', f'<nacm xmlns="{ACM}"><denied-operations/><denied-data-writes/><denied-notifications/></nacm>')).data_xml
# deny everything to everyone but admin: read-default deny
admin.edit_config(target='running', config=f'<config xmlns="{NC}"><nacm xmlns="{ACM}"><read-default>deny</read-default><exec-default>deny</exec-default></nacm></config>')
reader = as_user('reader')
out['deny_reader_get_config'] = err(lambda: reader.get_config(source='running'))
SYNC = '<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>'
out['deny_reader_sync'] = err(lambda: reader.dispatch(to_ele(SYNC)))
out['deny_reader_close'] = err(lambda: reader.close_session())
rescue = as_user('rescue')
out['deny_rescue_sync'] = err(lambda: rescue.dispatch(to_ele(SYNC)))
out['deny_rescue_reads'] = reads(rescue)
# NACM off: everyone may write (RFC 8341 enable-nacm)
admin.edit_config(target='running', config=f'<config xmlns="{NC}"><nacm xmlns="{ACM}"><enable-nacm>false</enable-nacm></nacm></config>')
reader = as_user('reader')
out['off_reader_write'] = err(lambda: reader.edit_config(target='running', config=prof('by-reader')))
out['off_reader_secret'] = '${SECRET}' in reader.get_config(source='running').data_xml
for s in (admin, wilma, guest, reader, rescue):
    try:
        s.close_session()
    except Exception:
        pass
print(json.dumps(out))
`;

interface PyError { tag: string; type: string; path: string | null; message: string }
type Reads = Record<'get_config' | 'get' | 'get_data' | 'xpath', string>;

function denied(e: PyError | null | undefined, path?: string | RegExp): void {
  expect(e, 'expected an rpc-error').to.not.equal(null);
  expect(e!.tag).to.equal('access-denied');
  if (path instanceof RegExp) expect(e!.path ?? '').to.match(path);
  else if (path) expect((e!.path ?? '').trim()).to.equal(path);
}

function secretFree(r: Reads): void {
  for (const [what, xml] of Object.entries(r)) {
    expect(xml, what).to.not.contain(SECRET);
    expect(xml, what).to.not.contain('shared-secret');
  }
}

describe('netconf-ops: NACM (RFC 8341) with ncclient', function () {
  this.timeout(180000);
  let agent: TandemProcess | undefined;

  before(function () {
    if (!existsSync(DEBIAN_PYTHON)) this.skip();
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
  });

  const input = (t: TandemProcess, extra: Record<string, unknown> = {}) => ({
    host: t.host, port: t.port, username: 'admin', password: 'admin-secret',
    passwords: Object.fromEntries(USERS.map((u) => [u.name, u.password])), ...extra,
  });

  it('factory configuration: admin everything, ordinary users read-only without secrets, recovery bypasses', async () => {
    agent = await startTandem({ users: USERS });
    const { result: r } = await runPython<Record<string, unknown>>(FACTORY, input(agent));
    const admin = r['admin_reads'] as Reads;
    for (const [what, xml] of Object.entries(admin)) expect(xml, `admin ${what}`).to.contain(SECRET);
    expect(admin.get_config).to.contain('<rule-list>').and.contain('permit-all');
    const reader = r['reader_reads'] as Reads;
    secretFree(reader);
    expect(reader.get_config).to.contain('<name>peer1</name>'); // the rest is readable
    expect(reader.get_config).to.not.contain('rule-list'); // nacm is default-deny-all
    expect(reader.xpath).to.contain('<name>peer1</name>');
    denied(r['reader_write_secret'] as PyError, "/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret");
    denied(r['reader_write_candidate'] as PyError, "/tandem-network-profile:network-profile[name='sneaky']");
    denied(r['reader_copy_config'] as PyError, /^\/tandem-|^\/ietf-netconf-acm:/);
    denied(r['reader_delete_startup'] as PyError, '/ietf-netconf:rpc/ietf-netconf:delete-config');
    denied(r['reader_kill_admin'] as PyError, '/ietf-netconf:rpc/ietf-netconf:kill-session');
    expect((r['admin_still_locked'] as PyError).tag).to.equal('lock-denied');
    expect(r['reader_lock']).to.equal(null);
    expect(r['reader_validate']).to.equal(null);
    expect(r['reader_nacm']).to.not.contain('denied-operations');
    const counters = r['counters'] as string;
    expect(counters).to.match(/<denied-operations>2<\/denied-operations>/);
    expect(counters).to.match(/<denied-data-writes>3<\/denied-data-writes>/);
    for (const [what, xml] of Object.entries(r['rescue_reads'] as Reads)) expect(xml, `rescue ${what}`).to.contain(SECRET);
    expect(r['rescue_write']).to.equal(null);
    expect(r['admin_kill']).to.equal(null);
    expect(r['admin_delete_startup']).to.equal(null);
    // Nothing a refused user sent was stored; the denials are in the log with user and path.
    const running = await foldedRunningXml(agent.stateDir);
    expect(running).to.contain(SECRET).and.contain('<name>rescued</name>').and.not.contain('sneaky').and.not.contain('overwritten');
    expect(agent.stdout()).to.match(/"user":"reader".*"path":"\/tandem-vrf:vrf\[name='main'\]\/tandem-ha-fp-conntrack:ha-fp-conntrack\/shared-secret".*NACM: write denied/);
    expect(agent.stdout()).to.match(/"user":"reader".*"operation":"kill-session".*NACM: operation denied/);
  });

  it("RFC 8341 Appendix A's example configuration, a deny-all configuration and enable-nacm false", async () => {
    agent = await startTandem({ users: USERS });
    const { result: r } = await runPython<Record<string, unknown>>(APPENDIX, input(agent, { appendix: APPENDIX_A }));
    expect(r['wilma_profile']).to.equal(true);
    denied(r['wilma_secret'] as PyError, "/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret");
    denied(r['wilma_ha'] as PyError, "/tandem-ha:ha/group[name='ha-group2']");
    denied(r['wilma_kill'] as PyError, '/ietf-netconf:rpc/ietf-netconf:kill-session');
    expect(r['wilma_monitoring']).to.contain('<session-id>');
    secretFree(r['wilma_reads'] as Reads);
    expect(r['wilma_notification']).to.equal(null);
    expect(r['guest_monitoring']).to.not.contain('netconf-state');
    expect(r['guest_nacm']).to.not.contain('rule-list');
    denied(r['guest_write'] as PyError, "/tandem-network-profile:network-profile[name='by-guest']");
    // deny-ncm covers every access to ietf-netconf-monitoring, its get-schema RPC included.
    denied(r['guest_get_schema'] as PyError, '/ietf-netconf:rpc/ietf-netconf-monitoring:get-schema');
    const counters = r['counters'] as string;
    expect(counters).to.match(/<denied-operations>2<\/denied-operations>/);
    expect(counters).to.match(/<denied-data-writes>3<\/denied-data-writes>/);
    expect(counters).to.match(/<denied-notifications>[1-9]\d*<\/denied-notifications>/);
    denied(r['deny_reader_get_config'] as PyError, '/ietf-netconf:rpc/ietf-netconf:get-config');
    denied(r['deny_reader_sync'] as PyError, '/ietf-netconf:rpc/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization');
    expect((r['deny_rescue_sync'] as PyError | null)?.tag ?? 'ok').to.not.equal('access-denied');
    expect(r['deny_reader_close']).to.equal(null); // close-session is always permitted
    for (const [what, xml] of Object.entries(r['deny_rescue_reads'] as Reads)) expect(xml, `rescue ${what}`).to.contain(SECRET);
    expect(r['off_reader_write']).to.equal(null);
    expect(r['off_reader_secret']).to.equal(true);
  });
});
