// Debian's python3-ncclient (0.6.13) against the protocol layer: connect, hello and capabilities,
// base:1.1 framing, get-config and get, rpc-errors as RPCError fields, close-session.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startInProcessAgent, type InProcessAgent } from '../helpers/in-process-agent.js';
import { DEBIAN_PYTHON, NCCLIENT_PRELUDE, runPython } from '../helpers/python-client.js';
import { TestDispatcher } from '../helpers/test-dispatcher.js';

const SCRIPT = `${NCCLIENT_PRELUDE}
from ncclient.xml_ import to_ele
out = {}
m = connect()
out['session_id'] = m.session_id
out['caps'] = list(m.server_capabilities)
from ncclient.transport.session import NetconfBase
out['base11'] = m._session._base == NetconfBase.BASE_11
out['get_config'] = m.get_config(source='running').data_xml
out['get'] = m.get().data_xml
try:
    m.dispatch(to_ele('<fail xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"/>'))
    out['error'] = None
except RPCError as outer:
    e = outer.errors[0]  # with several rpc-errors, ncclient keeps each in .errors
    out['error'] = {'tag': e.tag, 'type': e.type, 'severity': e.severity, 'message': e.message, 'path': e.path,
                    'app_tag': e.app_tag, 'count': len(outer.errors), 'second': outer.errors[1].tag}
try:
    m.dispatch(to_ele('<no-such-op xmlns="urn:example"/>'))
    out['unknown'] = None
except RPCError as e:
    out['unknown'] = {'tag': e.tag, 'type': e.type}
m.close_session()
out['connected_after_close'] = m.connected
print(json.dumps(out))
`;

describe('NETCONF protocol with ncclient', function () {
  this.timeout(90000);
  let srv: InProcessAgent;
  let disp: TestDispatcher;

  before(async function () {
    if (!existsSync(DEBIAN_PYTHON)) this.skip();
    disp = new TestDispatcher();
    srv = await startInProcessAgent(disp);
  });
  after(async () => {
    await srv?.stop();
  });

  it('connects, negotiates base:1.1, reads data, gets precise errors and closes the session', async () => {
    const { result } = await runPython<Record<string, unknown>>(SCRIPT, { host: srv.host, port: srv.port, username: srv.user, password: srv.password });
    expect(Number(result.session_id)).to.be.greaterThan(0);
    expect(result.caps).to.include.members(['urn:ietf:params:netconf:base:1.0', 'urn:ietf:params:netconf:base:1.1']);
    expect(result.base11).to.equal(true);
    expect(result.get_config).to.contain('<user>alice</user>');
    expect(result.get).to.contain(`<session>${String(result.session_id)}</session>`);
    expect(result.error).to.deep.include({ tag: 'data-missing', type: 'application', severity: 'error', message: 'no such vrf', app_tag: 'x-app', count: 2, second: 'lock-denied' });
    expect((result.error as { path: string }).path).to.equal("/tandem-vrf:vrf[name='a:b']");
    expect(result.unknown).to.deep.equal({ tag: 'operation-not-supported', type: 'protocol' });
    expect(result.connected_after_close).to.equal(false);
    const sid = Number(result.session_id);
    // ncclient's own message-ids are urn:uuid strings: the dispatcher saw get-config and get as operations.
    expect(disp.operations).to.include.members(['get-config', 'get', 'fail', 'close-session']);
    const deadline = Date.now() + 5000;
    while (!disp.ended.some((e) => e.sessionId === sid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(disp.ended.find((e) => e.sessionId === sid)?.reason).to.equal('closed');
  });

  it('logs in with a public key file', async () => {
    const keyFile = path.join(srv.stateDir, 'bob-key');
    await writeFile(keyFile, srv.privateKey, { mode: 0o600 });
    const { result } = await runPython<{ data: string }>(`
import json, sys
from ncclient import manager
inp = json.load(sys.stdin)
m = manager.connect(host=inp['host'], port=inp['port'], username=inp['username'], key_filename=inp['key'],
                    hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30)
d = m.get().data_xml
m.close_session()
print(json.dumps({'data': d}))
`, { host: srv.host, port: srv.port, username: srv.keyUser, key: keyFile });
    expect(result.data).to.contain('<user>bob</user>');
  });
});
