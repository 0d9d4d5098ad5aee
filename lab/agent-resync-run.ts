// The sync link is cut and restored (issue 5, third variant), through the REAL agents: ha1 and
// ha2 run `tandem start --engine linux` configured over NETCONF (lab-pair-config.ts). A first batch
// of connections is synchronised; the sync link goes down; while ha1's agent reports its sync
// connections down, the first batch closes, its conntracks leave ha1's table (deleted with
// `conntrack -D`, what their expiry would do two minutes later) and a second batch opens — ha2
// misses all of it (it still holds the first batch, none of the second). The link comes back; the
// agents reconnect and the full resync (SPEC rule 2) brings ha2's table back to ha1's: the second
// batch added, the stale first batch purged.
import type { LabAgent } from './lab-agents.js';
import { LabAgentPair, serverConntracks, until } from './lab-agent-pair.js';
import { LabConnections } from './lab-connections.js';
import { SYNC_STATE_FILTER, leafText } from './lab-pair-config.js';
import { LAB, LabTopology } from './lab-topology.js';

export interface AgentResyncResult {
  /** Connections of the first batch, synchronised before the cut. */
  first: number;
  /** ha2's conntracks towards the server once the first batch is synchronised. */
  ha2BeforeCut: number;
  /** With the link down, after the first batch closed (and left ha1's table) and the second opened. */
  ha1WhileCut: number;
  ha2WhileCut: number;
  /** After the link is back and the resync done. */
  ha1After: number;
  ha2After: number;
  /** From the link back up to ha2 matching ha1. */
  resyncMs: number;
  /** ha1's agent: last-full-resync/count after the restore ('' when absent). */
  lastFullResyncCount: string;
  /** ha1's agent: conntracks/delta-resyncs after the restore (a delta resync repaired ha2; docs/ha-sync.md § Full resync). */
  deltaResyncs: number;
}

/** The `connection-status` of every sync client of the VRF, as the agent reports them. */
async function clientStatuses(agent: LabAgent): Promise<string[]> {
  const xml = await agent.get(SYNC_STATE_FILTER);
  return [...xml.matchAll(/<connection-status>([^<]*)<\/connection-status>/g)].map((m) => m[1] ?? '');
}

export async function agentResyncRun(first: number, second: number, log: (line: string) => void = () => undefined): Promise<AgentResyncResult> {
  const lab = new LabTopology('rs');
  const agents: LabAgent[] = [];
  const batches: LabConnections[] = [];
  try {
    lab.build();
    log(`topology up (namespaces ${lab.prefix}-*); starting both agents`);
    const { ha1 } = await LabAgentPair.start(lab, { sync: true }, agents);
    const a = await LabConnections.open(lab, first);
    batches.push(a);
    let ha2BeforeCut = 0;
    await until(() => (ha2BeforeCut = serverConntracks(lab, 'ha2')) >= first,
      () => `ha2's kernel to hold the first ${first} conntracks (has ${ha2BeforeCut})`, 30_000 + first, 200);
    log(`${first} connections synchronised to ha2; cutting the sync link`);

    lab.setSyncLink(false);
    let statuses: string[] = [];
    // Keepalives every second, a silent peer is cut after 3 s.
    await until(async () => (statuses = await clientStatuses(ha1)).length > 0 && statuses.every((s) => s !== 'established'),
      () => `ha1's sync connections to be down (last seen ${statuses.join(',')})`, 20_000, 500);
    const closed = await a.closeConnections();
    if (closed !== first) throw new Error(`closed ${closed} of the first ${first} connections`);
    const b = await LabConnections.open(lab, second, { firstPort: 7100, sources: a.sources });
    batches.push(b);
    // The closed connections' conntracks (FIN / TIME_WAIT, 2 min) leave ha1's table now. A late
    // segment of them cannot bring one back: mid-stream packets of unknown connections are invalid.
    lab.exec(lab.ns.ha1, 'conntrack', ['-D', '-p', 'tcp', '--orig-dst', LAB.server, '--orig-port-dst', '7000']);
    let ha1WhileCut = 0;
    await until(() => (ha1WhileCut = serverConntracks(lab, 'ha1')) === second && serverConntracks(lab, 'ha1', true) === second,
      () => `ha1 to hold only the second batch's ${second} established conntracks (has ${ha1WhileCut})`, 20_000, 200);
    const ha2WhileCut = serverConntracks(lab, 'ha2');
    log(`link down: ha1 has ${ha1WhileCut}, ha2 still ${ha2WhileCut}; restoring the sync link`);

    const restoredAt = Date.now();
    lab.setSyncLink(true);
    let ha2After = 0;
    let ha1After = 0;
    // Reconnect backoff up to 5 s (jittered), then the full resync and the purge of stale entries.
    await until(() => {
      ha1After = serverConntracks(lab, 'ha1');
      ha2After = serverConntracks(lab, 'ha2');
      return ha2After === ha1After;
    }, () => `ha2 to come back to ha1's count (ha1 ${ha1After}, ha2 ${ha2After})`, 30_000, 100);
    const resyncMs = Date.now() - restoredAt;
    await until(async () => (statuses = await clientStatuses(ha1)).length > 0 && statuses.every((s) => s === 'established'),
      () => `ha1's sync connections to be established again (last seen ${statuses.join(',')})`, 20_000, 500);
    // Settled, not a moment of passage: counted again once the connections are up.
    ha1After = serverConntracks(lab, 'ha1');
    ha2After = serverConntracks(lab, 'ha2');
    const state = await ha1.get(SYNC_STATE_FILTER);
    const lastFullResync = /<last-full-resync>([\s\S]*?)<\/last-full-resync>/.exec(state)?.[1] ?? '';
    const lastFullResyncCount = leafText(lastFullResync, 'count') ?? '';
    const deltaResyncs = Number(/<delta-resyncs>(\d+)<\/delta-resyncs>/.exec(state)?.[1] ?? 0);
    log(`resync: ha2 holds ${ha2After} = ha1's ${ha1After}, ${resyncMs} ms after the link came back (ha1 last-full-resync count ${lastFullResyncCount || '-'}, delta resyncs ${deltaResyncs})`);
    return { first, ha2BeforeCut, ha1WhileCut, ha2WhileCut, ha1After, ha2After, resyncMs, lastFullResyncCount, deltaResyncs };
  } finally {
    for (const batch of batches) batch.close();
    for (const agent of agents) await agent.stop().catch(() => undefined);
    await lab.teardown();
  }
}
