// 50 concurrent SSH sessions against `tandem start`, each doing get and edit-config: every edit
// lands, every reply is a proper reply, and the datastore ends with all of them.
import { expect } from 'chai';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';

const NP = 'urn:tandem:yang:tandem-network-profile';
const SESSIONS = 50;

describe('netconf-ops: 50 concurrent sessions with get and edit-config', function () {
  this.timeout(120000);
  let agent: TandemProcess;
  const clients: NetconfTestClient[] = [];

  before(async () => {
    agent = await startTandem({ args: ['--max-sessions', String(SESSIONS + 5)] });
  });
  after(async () => {
    for (const c of clients) c.close();
    await agent?.stop();
  });

  it('serves every session and applies every edit', async () => {
    const opts = { host: agent.host, port: agent.port, username: agent.username, password: agent.password, timeoutMs: 60000 };
    clients.push(...await Promise.all(Array.from({ length: SESSIONS }, () => NetconfTestClient.connect(opts))));
    const results = await Promise.all(clients.map(async (c, i) => {
      const got = await c.rpc('<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><sessions/></netconf-state></filter></get>');
      const edited = await c.rpc(`<edit-config><target><running/></target><config><network-profile xmlns="${NP}"><name>s${i}</name><type>tcp-fast-path</type></network-profile></config></edit-config>`);
      return { got, edited };
    }));
    for (const r of results) {
      expect(r.got).to.contain('<session-id>');
      expect(r.edited).to.contain('<ok/>');
    }
    const cfg = await clients[0].rpc('<get-config><source><running/></source></get-config>');
    for (let i = 0; i < SESSIONS; i++) expect(cfg).to.contain(`<name>s${i}</name>`);
  });
});
