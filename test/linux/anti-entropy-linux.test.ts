// Anti-entropy on the linux engine, through the real agents (`tandem start --engine linux` in the
// lab's network namespaces, configured with ncclient): once NATed connections are synchronised to
// ha2's kernel, their conntracks are deleted there with `conntrack -D` behind sync's back. Nothing
// in sync itself would bring them back (no event on the master, no resync); the master's next
// anti-entropy round finds the differing ranges and writes them again. ha2's state data counts the
// repair, and later rounds find nothing different.
import { expect } from 'chai';
import { skipUnlessAgentLabCanRun } from '../lab/agent-lab-prerequisites.js';
import type { LabAgent } from '../../lab/lab-agents.js';
import { LabAgentPair, serverConntracks, syncedMarkConntracks, until } from '../../lab/lab-agent-pair.js';
import { LabConnections } from '../../lab/lab-connections.js';
import { SYNC_STATE_FILTER } from '../../lab/lab-pair-config.js';
import { LAB, LabTopology } from '../../lab/lab-topology.js';

const CONNECTIONS = 60;
const INTERVAL_S = 2;
const INTERVAL_XML = `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">`
  + `<anti-entropy-interval>${INTERVAL_S}</anti-entropy-interval></ha-fp-conntrack></vrf></config>`;

async function antiEntropy(agent: LabAgent): Promise<Record<string, number>> {
  const xml = await agent.get(SYNC_STATE_FILTER);
  const block = /<anti-entropy>([\s\S]*?)<\/anti-entropy>/.exec(xml)?.[1] ?? '';
  const out: Record<string, number> = {};
  for (const m of block.matchAll(/<([a-z-]+)>(\d+)<\/\1>/g)) out[m[1] as string] = Number(m[2]);
  return out;
}

describe('linux engine: anti-entropy brings back conntracks deleted on the backup (real agents, namespaces)', function () {
  this.timeout(180_000);
  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it(`${CONNECTIONS} conntracks deleted with conntrack -D in ha2's namespace come back by anti-entropy`, async () => {
    const lab = new LabTopology('ae');
    const agents: LabAgent[] = [];
    let conns: LabConnections | undefined;
    try {
      lab.build();
      const { ha1, ha2 } = await LabAgentPair.start(lab, { sync: true }, agents);
      await ha1.configureWithNcclient(INTERVAL_XML);
      await ha2.configureWithNcclient(INTERVAL_XML);
      conns = await LabConnections.open(lab, CONNECTIONS);
      let n = 0;
      await until(() => (n = serverConntracks(lab, 'ha2')) === CONNECTIONS, () => `ha2's kernel to hold ${CONNECTIONS} conntracks (has ${n})`, 30_000, 200);
      // Synced everywhere and compared clean at least once before the fault.
      await until(async () => ((await antiEntropy(ha1))['ranges-compared'] ?? 0) > 0, 'a first anti-entropy round', 20_000, 500);
      // Then a whole round that repaired nothing on ha2: under load the first rounds can still be
      // repairing (or live updates still arriving), and a write landing just after `conntrack -D`
      // would bring some back before anti-entropy is asked to (CI, load 10: 10 of 60 back at once).
      const repairs = (s: Record<string, number>): number => (s['added'] ?? 0) + (s['updated'] ?? 0) + (s['removed'] ?? 0);
      let before = await antiEntropy(ha2);
      let rounds = (await antiEntropy(ha1))['rounds'] ?? 0;
      await until(async () => {
        const r = (await antiEntropy(ha1))['rounds'] ?? 0;
        if (r <= rounds) return false;
        const now = await antiEntropy(ha2);
        const quiet = repairs(now) === repairs(before);
        before = now;
        rounds = r;
        return quiet;
      }, 'an anti-entropy round that repaired nothing on ha2', 30_000, 300);

      lab.exec(lab.ns.ha2, 'conntrack', ['-D', '-p', 'tcp', '--orig-dst', LAB.server]);
      expect(serverConntracks(lab, 'ha2')).to.equal(0);

      await until(() => (n = serverConntracks(lab, 'ha2')) === CONNECTIONS, () => `anti-entropy to bring ha2 back to ${CONNECTIONS} (has ${n})`, 10 * INTERVAL_S * 1000, 200);
      expect(serverConntracks(lab, 'ha2', true)).to.equal(CONNECTIONS);
      let after: Record<string, number> = {};
      await until(async () => ((after = await antiEntropy(ha2))['added'] ?? 0) - (before['added'] ?? 0) === CONNECTIONS,
        () => `ha2's state to count ${CONNECTIONS} added (${JSON.stringify(after)})`, 10_000, 300);
      expect((after['removed'] ?? 0) - (before['removed'] ?? 0)).to.equal(0);
      expect(after['refused']).to.equal(0);

      // Later rounds compare again and find nothing to repair: the lab's connections are the only
      // synced conntracks. The agents' own NETCONF sessions (this test's polls, over the namespace's
      // loopback) are in ha1's table but never synced: a peer cannot carry a loopback session, and
      // synced they would end on the two nodes in different closing states and be repaired forever.
      expect(serverConntracks(lab, 'ha1', false, '127.0.0.1'), 'ha1 holds NETCONF sessions over loopback').to.be.greaterThan(0);
      expect(syncedMarkConntracks(lab, 'ha2', '127.0.0.1'), 'loopback sessions synced to ha2').to.equal(0);
      const m1 = await antiEntropy(ha1);
      await until(async () => ((await antiEntropy(ha1))['rounds'] ?? 0) >= (m1['rounds'] ?? 0) + 2, 'two more rounds', 10 * INTERVAL_S * 1000, 500);
      const m2 = await antiEntropy(ha1);
      expect(m2['ranges-compared']).to.be.greaterThan(m1['ranges-compared'] as number);
      const s3 = await antiEntropy(ha2);
      expect((s3['added'] ?? 0) - (before['added'] ?? 0), 'the lab connections are not added again').to.equal(CONNECTIONS);
      expect(s3['removed'] ?? 0).to.equal(before['removed'] ?? 0);
      expect(s3['updated'] ?? 0, 'updated by later rounds').to.equal(after['updated'] ?? 0);
      expect(serverConntracks(lab, 'ha2', true)).to.equal(CONNECTIONS);
    } finally {
      conns?.close();
      for (const a of agents) await a.stop().catch(() => undefined);
      await lab.teardown();
    }
  });
});
