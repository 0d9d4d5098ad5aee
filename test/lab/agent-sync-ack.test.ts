// `synced` means acknowledged by the peer, on the linux engine through the real agents: after a
// load of connections through ha1, ha1's `conntracks/synced` equals the conntracks ha2's kernel
// holds, with nothing in flight and nothing refused (ha2's `synced`, what its engine holds, agrees).
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from './agent-lab-prerequisites.js';
import type { LabAgent } from '../../lab/lab-agents.js';
import { LabAgentPair, serverConntracks, until } from '../../lab/lab-agent-pair.js';
import { LabConnections } from '../../lab/lab-connections.js';
import { SYNC_STATE_FILTER, leafText } from '../../lab/lab-pair-config.js';
import { LabTopology } from '../../lab/lab-topology.js';

const CONNECTIONS = Number(process.env.TANDEM_SYNC_ACK_CONNECTIONS ?? 2000);

describe('lab: synced on the linux engine is what the peer acknowledged', function () {
  this.timeout(180_000);

  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it(`after ${CONNECTIONS} connections: ha1's synced equals the conntracks in ha2's kernel`, async () => {
    const lab = new LabTopology('ak');
    const agents: LabAgent[] = [];
    let conns: LabConnections | undefined;
    try {
      lab.build();
      const { ha1, ha2 } = await LabAgentPair.start(lab, { sync: true }, agents);
      conns = await LabConnections.open(lab, CONNECTIONS);
      let inKernel = 0;
      await until(() => (inKernel = serverConntracks(lab, 'ha2')) >= CONNECTIONS,
        () => `ha2's kernel to hold the ${CONNECTIONS} synchronised conntracks (has ${inKernel})`, 30_000 + CONNECTIONS, 100);
      let state = '';
      await until(async () => {
        state = await ha1.get(SYNC_STATE_FILTER);
        return leafText(state, 'synced') === String(serverConntracks(lab, 'ha2'));
      }, () => `ha1's synced (${leafText(state, 'synced')}) to equal ha2's kernel count (${serverConntracks(lab, 'ha2')})`, 20_000, 200);
      inKernel = serverConntracks(lab, 'ha2');
      console.log(`      ha1 synced ${leafText(state, 'synced')}, in-flight ${leafText(state, 'in-flight')}, peer-refused ${leafText(state, 'peer-refused')}; ha2's kernel ${inKernel}`);
      expect(inKernel).to.equal(CONNECTIONS);
      expect(leafText(state, 'synced')).to.equal(String(CONNECTIONS));
      expect(leafText(state, 'in-flight')).to.equal('0');
      expect(leafText(state, 'peer-refused')).to.equal('0');
      const backup = await ha2.get(SYNC_STATE_FILTER);
      expect(leafText(backup, 'synced'), 'ha2 shows what its engine holds').to.equal(String(CONNECTIONS));
      expect(leafText(backup, 'receive-error')).to.equal('0');
    } finally {
      conns?.close();
      for (const agent of agents) await agent.stop().catch(() => undefined);
      await lab.teardown();
    }
  });
});
