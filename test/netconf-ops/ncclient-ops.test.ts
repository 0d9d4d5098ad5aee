// Debian's python3-ncclient against `tandem start`: edit-config on candidate and running, commit,
// confirmed commit, filters, with-defaults, get-schema and precise rpc-errors.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { DEBIAN_PYTHON, NCCLIENT_PRELUDE, runPython } from '../helpers/python-client.js';

const SCRIPT = `${NCCLIENT_PRELUDE}
import time
from ncclient.xml_ import to_ele
NP = 'urn:tandem:yang:tandem-network-profile'
def prof(name, typ='tcp-fast-path', extra=''):
    return f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><network-profile xmlns="{NP}"><name>{name}</name><type>{typ}</type>{extra}</network-profile></config>'
def err(fn):
    try:
        fn()
        return None
    except RPCError as e:
        return {'tag': e.tag, 'type': e.type, 'app_tag': e.app_tag, 'path': e.path, 'message': e.message, 'info': e.info}
out = {}
m = connect()
other = connect()
out['caps'] = list(m.server_capabilities)
with m.locked('candidate'):
    m.edit_config(target='candidate', config=prof('web'))
    out['candidate'] = m.get_config(source='candidate', filter=('subtree', f'<network-profile xmlns="{NP}"/>')).data_xml
    out['running_before'] = m.get_config(source='running').data_xml
    out['lock_other'] = err(lambda: other.lock('candidate'))
    m.commit()
out['running_after'] = m.get_config(source='running', filter=('subtree', f'<network-profile xmlns="{NP}"><name>web</name></network-profile>')).data_xml
out['stable'] = m.get_config(source='running').data_xml == m.get_config(source='running').data_xml
out['xpath'] = m.get_config(source='running', filter=('xpath', '/tandem-network-profile:network-profile')).data_xml
out['report_all'] = m.get_config(source='running', with_defaults='report-all').data_xml
out['tagged'] = m.get_config(source='running', with_defaults='report-all-tagged').data_xml
out['must'] = err(lambda: m.edit_config(target='running', config=prof('p', 'tcp-proxy', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>')))
out['exists'] = err(lambda: m.edit_config(target='running', config=prof('web').replace('<network-profile ', '<network-profile xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="create" ')))
m.edit_config(target='candidate', config=prof('trial'))
m.commit(confirmed=True, timeout='1')
out['trial_live'] = 'trial' in m.get_config(source='running').data_xml
deadline = time.time() + 10
while time.time() < deadline and '<name>trial</name>' in m.get_config(source='running').data_xml:
    time.sleep(0.2)
out['trial_reverted'] = '<name>trial</name>' not in m.get_config(source='running').data_xml
out['schema'] = m.get_schema('tandem-network-profile').data[:200]
out['validate'] = err(lambda: m.validate(source='candidate'))
out['discard'] = str(m.discard_changes().ok)
# Notifications interleaved with operations on the same session.
m.create_subscription()
m.edit_config(target='running', config=prof('notified'))
n = m.take_notification(timeout=10)
out['notification'] = n.notification_xml if n is not None else None
out['after_subscribe'] = '<name>notified</name>' in m.get_config(source='running').data_xml
m.close_session()
other.close_session()
print(json.dumps(out))
`;

interface PyError { tag: string; type: string; app_tag: string | null; path: string | null; message: string }
interface NcclientResult {
  caps: string[]; candidate: string; running_before: string; running_after: string; xpath: string; report_all: string; tagged: string;
  lock_other: PyError; must: PyError; exists: PyError; validate: PyError | null;
  stable: boolean; trial_live: boolean; trial_reverted: boolean; schema: string; discard: string;
  notification: string | null; after_subscribe: boolean;
}

describe('netconf-ops: ncclient against tandem start', function () {
  this.timeout(120000);
  let agent: TandemProcess;

  before(async function () {
    if (!existsSync(DEBIAN_PYTHON)) this.skip();
    agent = await startTandem();
  });
  after(async () => {
    await agent?.stop();
  });

  it('edits, commits, confirms, filters and reports errors as RFC 6241 says', async () => {
    const { result: r } = await runPython<NcclientResult>(SCRIPT, { host: agent.host, port: agent.port, username: agent.username, password: agent.password }, 90000);
    expect(r.caps).to.include.members([
      'urn:ietf:params:netconf:capability:candidate:1.0',
      'urn:ietf:params:netconf:capability:confirmed-commit:1.1',
      'urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit&also-supported=report-all,report-all-tagged,trim',
    ]);
    expect(r.candidate).to.contain('<name>web</name>');
    expect(r.running_before).to.not.contain('<name>web</name>');
    expect(r.lock_other.tag).to.equal('lock-denied');
    expect(r.running_after).to.contain('<name>web</name>');
    expect(r.stable).to.equal(true);
    expect(r.xpath).to.contain('<name>web</name>');
    expect(r.report_all).to.contain('<session-idle-timeout>300</session-idle-timeout>');
    expect(r.tagged).to.match(/xmlns:wd="urn:ietf:params:xml:ns:netconf:default:1.0"[^>]*wd:default="true"/);
    expect(r.must).to.deep.include({ tag: 'operation-failed', type: 'application', app_tag: 'connection-mirror-requires-tcp-fast-path' });
    expect(r.must.path).to.contain("network-profile[name='p']");
    expect(r.exists).to.deep.include({ tag: 'data-exists', type: 'application' });
    expect(r.trial_live).to.equal(true);
    expect(r.trial_reverted).to.equal(true);
    expect(r.schema).to.contain('module tandem-network-profile');
    expect(r.validate).to.equal(null);
    expect(r.discard).to.equal('True');
    expect(r.notification).to.contain('netconf-config-change').and.contain("network-profile[name='notified']");
    expect(r.after_subscribe).to.equal(true);
  });
});
