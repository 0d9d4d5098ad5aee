// Issue 11 (hygiene item 2), through the real agents (`tandem start --engine linux` in the lab's
// network namespaces, state read with ncclient): ha1's conntrack event thread is made to fail
// (TANDEM_TEST_EVENT_THREAD_FAIL, a file it removes when it fails on its next read) while NATed
// connections open. The engine starts a new thread on a new socket, counts the restart and the
// events it lost (tandem-fast-path-counters), and handles it as an event loss: sync resynchronises
// ha2 at once (ha-fp-conntrack: events-lost, event-loss-resyncs), so ha2's kernel ends with every
// connection, and the connections opened after the restart are synced by the new thread's events.
import { expect } from 'chai';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipUnlessAgentLabCanRun } from '../lab/agent-lab-prerequisites.js';
import type { LabAgent } from '../../lab/lab-agents.js';
import { LabAgentPair, serverConntracks, until } from '../../lab/lab-agent-pair.js';
import { LabConnections } from '../../lab/lab-connections.js';
import { SYNC_STATE_FILTER, leafText } from '../../lab/lab-pair-config.js';
import { LabTopology } from '../../lab/lab-topology.js';

const CONNECTIONS = 60;
const COUNTERS_FILTER = `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
  <fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"/></vrf>`;

async function leaves(agent: LabAgent, filter: string, names: string[]): Promise<Record<string, number>> {
  const xml = await agent.get(filter);
  return Object.fromEntries(names.map((n) => [n, Number(leafText(xml, n) ?? NaN)]));
}

describe('linux engine: a failed conntrack event thread is restarted and its loss repaired (real agents, namespaces)', function () {
  this.timeout(180_000);
  before(function () {
    skipUnlessAgentLabCanRun(this);
  });

  it('restarted, counted in state data, the peer resynchronised and holding every connection', async () => {
    const mark = join(tmpdir(), `tandem-event-thread-fail-lab-${process.pid}`);
    const saved = process.env.TANDEM_TEST_EVENT_THREAD_FAIL;
    const lab = new LabTopology('etr');
    const agents: LabAgent[] = [];
    const conns: LabConnections[] = [];
    try {
      lab.build();
      // Both agents get the hook; only a master reads events (ha1).
      process.env.TANDEM_TEST_EVENT_THREAD_FAIL = mark;
      const { ha1, ha2 } = await LabAgentPair.start(lab, { sync: true }, agents);
      if (saved === undefined) delete process.env.TANDEM_TEST_EVENT_THREAD_FAIL; else process.env.TANDEM_TEST_EVENT_THREAD_FAIL = saved;

      const first = await LabConnections.open(lab, CONNECTIONS);
      conns.push(first);
      let n = 0;
      await until(() => (n = serverConntracks(lab, 'ha2', true)) === CONNECTIONS, () => `ha2's kernel to hold ${CONNECTIONS} (has ${n})`, 30_000, 200);
      const c0 = await leaves(ha1, COUNTERS_FILTER, ['conntrack-event-reader-restarts', 'conntrack-events-lost']);
      expect(c0, 'no restart, no loss before the fault').to.deep.equal({ 'conntrack-event-reader-restarts': 0, 'conntrack-events-lost': 0 });
      const s0 = await leaves(ha1, SYNC_STATE_FILTER, ['events-lost', 'event-loss-resyncs']);
      expect(s0).to.deep.equal({ 'events-lost': 0, 'event-loss-resyncs': 0 });

      // The thread fails on its next read (an event of these connections or of a NETCONF session).
      writeFileSync(mark, '');
      const second = await LabConnections.open(lab, CONNECTIONS, { firstPort: 7100, sources: first.sources });
      conns.push(second);
      await until(() => !existsSync(mark), 'the event thread to fail (the hook removes its file)', 10_000, 50);

      let c1: Record<string, number> = {};
      await until(async () => (c1 = await leaves(ha1, COUNTERS_FILTER, ['conntrack-event-reader-restarts', 'conntrack-events-lost']))['conntrack-event-reader-restarts'] === 1,
        () => `ha1's state to show the restart (${JSON.stringify(c1)})`, 10_000, 200);
      expect(c1['conntrack-events-lost'], 'the event the failed thread read counted lost').to.be.at.least(1);
      let s1: Record<string, number> = {};
      await until(async () => ((s1 = await leaves(ha1, SYNC_STATE_FILTER, ['events-lost', 'event-loss-resyncs']))['event-loss-resyncs'] ?? 0) >= 1,
        () => `a full resync for the loss (${JSON.stringify(s1)})`, 10_000, 200);
      expect(s1['events-lost']).to.equal(c1['conntrack-events-lost']);

      // ha2 holds every connection: those the gap hid came with the resync.
      await until(() => (n = serverConntracks(lab, 'ha2', true)) === 2 * CONNECTIONS, () => `ha2's kernel to hold ${2 * CONNECTIONS} (has ${n})`, 30_000, 200);

      // The new thread reads: connections opened now reach ha2 by their events, with no further loss.
      const third = await LabConnections.open(lab, CONNECTIONS, { firstPort: 7200, sources: first.sources });
      conns.push(third);
      await until(() => (n = serverConntracks(lab, 'ha2', true)) === 3 * CONNECTIONS, () => `ha2's kernel to hold ${3 * CONNECTIONS} (has ${n})`, 30_000, 200);
      const c2 = await leaves(ha1, COUNTERS_FILTER, ['conntrack-event-reader-restarts', 'conntrack-events-lost']);
      expect(c2).to.deep.equal(c1);
      const s2 = await leaves(ha1, SYNC_STATE_FILTER, ['events-lost', 'event-loss-resyncs']);
      expect(s2).to.deep.equal(s1);
      expect(serverConntracks(lab, 'ha1', true)).to.equal(3 * CONNECTIONS);
      expect((await leaves(ha2, SYNC_STATE_FILTER, ['receive-error']))['receive-error'], 'ha2 refused nothing').to.equal(0);
    } finally {
      if (saved === undefined) delete process.env.TANDEM_TEST_EVENT_THREAD_FAIL; else process.env.TANDEM_TEST_EVENT_THREAD_FAIL = saved;
      rmSync(mark, { force: true });
      for (const c of conns) c.close();
      for (const a of agents) await a.stop().catch(() => undefined);
      await lab.teardown();
    }
  });
});
