// The scenario of the plane-isolation test and benchmark: a synced pair of two real `tandem start`
// processes (soft engine, ha1 master 127.0.0.1 <-> ha2 backup 127.0.0.2, flows generated on ha1 all
// along), and a large firewall edit + commit on ha1 from one NETCONF session while another session
// of ha1 reads a small get-config in a loop. What it measures only comes from outside the agents:
// their log lines (each sync connection opened or lost) and their NETCONF answers.
import { performance } from 'node:perf_hooks';
import { findAll, NetconfClient } from '../../cli/netconf-client.js';
import { demoConfigXml, freePort, syncState } from '../../demo/demo-run.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const TRAFFIC_NS = 'urn:tandem:yang:tandem-traffic';

export interface PairUnderEditOptions {
  /** Firewall rules in the one edit-config. */
  rules: number;
  /** Where the dataplane runs in both agents (`tandem start --plane`). */
  plane: 'worker' | 'in-process';
  /** Another build's cli.js (a before/after comparison); default this build's. */
  cli?: string;
  /** Pause between two reads of the reading session (ms). */
  readEveryMs?: number;
  /** Flows per second the generator opens on ha1 during the edit. */
  flowRate?: number;
}

export interface PairUnderEditFigures {
  plane: string;
  rules: number;
  editBytes: number;
  editMs: number;
  commitMs: number;
  /** Sync connections lost (log 'sync connection down' with a reason other than stopped) on ha1 / ha2 during the edit + commit. */
  syncDownHa1: number;
  syncDownHa2: number;
  /** Sync connections (re)established during the edit + commit (0 when none went down). */
  syncReconnectsHa1: number;
  syncReconnectsHa2: number;
  /** Connections established per node at the end (both clients of each node's VRF). */
  establishedHa1: number;
  establishedHa2: number;
  clientsHa1: number;
  clientsHa2: number;
  /** Conntracks ha2 holds as synced before and after (flows kept arriving). */
  ha2SyncedBefore: number;
  ha2SyncedAfter: number;
  /** The other session's small get-config during the edit + commit. */
  /** When each sync connection went down on ha1 / ha2 (ms after the edit-config was sent; the commit was sent at editMs), with the reason. */
  downs: string[];
  /** ha1's own timing of the commit (ms per subsystem and phase, from its 'commit applied' log line). */
  commitPhases?: unknown;
  reads: number;
  readP50Ms: number;
  readP99Ms: number;
  readMaxMs: number;
}

export function ruleEdit(n: number): string {
  const rules: string[] = [];
  for (let i = 0; i < n; i++) {
    rules.push(`<rule><name>r${i}</name><action>drop</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port></rule>`);
  }
  return `<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall">${rules.join('')}</firewall></vrf></config></edit-config>`;
}

/** 'ha1 +12345 ms: no message from peer for 3012 ms' for each connection lost, from the JSON log lines. */
function downs(node: string, text: string, t0: number): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"msg":"sync connection down"') || line.includes('"reason":"stopped"')) continue;
    try {
      const l = JSON.parse(line) as { time: string; reason?: string; client?: string };
      out.push(`${node} +${Date.parse(l.time) - t0} ms ${l.client ?? ''}: ${l.reason ?? ''}`);
    } catch {
      out.push(`${node}: ${line.slice(0, 200)}`);
    }
  }
  return out;
}

function lastPhases(text: string): unknown {
  const lines = text.split('\n').filter((l) => l.includes('"msg":"commit applied"'));
  const last = lines.at(-1);
  if (!last) return undefined;
  try {
    const l = JSON.parse(last) as { ms?: number; phases?: unknown };
    return { ms: l.ms, phases: l.phases };
  } catch {
    return undefined;
  }
}

function count(text: string, msg: string): number {
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    // A connection closed on purpose (stop, reconfiguration) is not a loss.
    if (msg === 'sync connection down' && line.includes('"reason":"stopped"')) continue;
    n++;
  }
  return n;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const round = (x: number) => Math.round(x * 10) / 10;

async function waitFor(what: string, ms: number, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs the scenario; every process and session it starts is stopped, also on failure. */
export async function runPairUnderEdit(opts: PairUnderEditOptions): Promise<PairUnderEditFigures> {
  const procs: TandemProcess[] = [];
  const clients: NetconfClient[] = [];
  const env = { TANDEM_LOG_LEVEL: 'info', TANDEM_LOG_FORMAT: 'json' };
  const args = ['--plane', opts.plane];
  try {
    const ha1 = await startTandem({ args, env, cli: opts.cli });
    procs.push(ha1);
    const ha2 = await startTandem({ args, env, cli: opts.cli });
    procs.push(ha2);
    const connect = async (t: TandemProcess, timeoutMs = 30_000) => {
      const c = await NetconfClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs });
      clients.push(c);
      return c;
    };
    const c1 = await connect(ha1, 600_000);
    const c2 = await connect(ha2);
    const reader = await connect(ha1, 600_000);
    const port = await freePort();
    await c1.configure(demoConfigXml('127.0.0.1', '127.0.0.2', port, 'master'));
    await c2.configure(demoConfigXml('127.0.0.2', '127.0.0.1', port, 'backup'));
    await waitFor('both sync connections of both nodes established', 30_000, async () => {
      const [a, b] = [await syncState(c1), await syncState(c2)];
      return a.clients > 0 && a.established === a.clients && b.clients > 0 && b.established === b.clients;
    });
    // Flows all along the edit: conntracks created on ha1 and sent to ha2.
    const rate = opts.flowRate ?? 200;
    await c1.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><rate>${rate}</rate><duration>3600</duration>
      <protocol-mix><tcp>1</tcp></protocol-mix><established-share>100</established-share></start-traffic>`);
    await new Promise((r) => setTimeout(r, 1500));
    const ha2SyncedBefore = (await syncState(c2)).synced;

    const logsAt = [ha1.stdout().length, ha2.stdout().length];
    const latencies: number[] = [];
    let reading = true;
    const readEvery = opts.readEveryMs ?? 20;
    const readLoop = (async () => {
      const deadline = Date.now() + 900_000;
      while (reading && Date.now() < deadline) {
        const t = performance.now();
        await reader.rpc('<get-config><source><running/></source><filter type="subtree"><ha xmlns="urn:tandem:yang:tandem-ha"/></filter></get-config>');
        latencies.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, readEvery));
      }
    })();
    const edit = ruleEdit(opts.rules);
    const t0 = Date.now();
    let t = performance.now();
    await c1.rpc(edit);
    const editMs = performance.now() - t;
    t = performance.now();
    await c1.rpc('<commit/>');
    const commitMs = performance.now() - t;
    // Keepalive timeouts fire up to 3 s after the silence began: give them room to show.
    await new Promise((r) => setTimeout(r, 4000));
    reading = false;
    await readLoop;
    const [s1, s2] = [await syncState(c1), await syncState(c2)];
    const log1 = ha1.stdout().slice(logsAt[0]);
    const log2 = ha2.stdout().slice(logsAt[1]);
    const sorted = [...latencies].sort((a, b) => a - b);
    const ruleCount = findAll(await c1.rpc('<get-config><source><running/></source><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall"><rule><name>r0</name></rule></firewall></vrf></filter></get-config>'), 'rule').length;
    if (ruleCount !== 1) throw new Error(`rule r0 is not in ha1's running after the commit (${ruleCount})`);
    return {
      plane: opts.plane,
      rules: opts.rules,
      editBytes: Buffer.byteLength(edit),
      editMs: Math.round(editMs),
      commitMs: Math.round(commitMs),
      syncDownHa1: count(log1, 'sync connection down'),
      syncDownHa2: count(log2, 'sync connection down'),
      syncReconnectsHa1: count(log1, 'sync connection established'),
      syncReconnectsHa2: count(log2, 'sync connection established'),
      establishedHa1: s1.established,
      establishedHa2: s2.established,
      clientsHa1: s1.clients,
      clientsHa2: s2.clients,
      ha2SyncedBefore,
      ha2SyncedAfter: s2.synced,
      downs: [...downs('ha1', log1, t0), ...downs('ha2', log2, t0)],
      commitPhases: lastPhases(log1),
      reads: latencies.length,
      readP50Ms: round(percentile(sorted, 50)),
      readP99Ms: round(percentile(sorted, 99)),
      readMaxMs: round(sorted.at(-1) ?? NaN),
    };
  } finally {
    for (const c of clients) c.close();
    for (const p of procs) await p.stop();
  }
}

