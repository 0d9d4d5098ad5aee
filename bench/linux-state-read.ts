// `npm run bench -- linux-state-read` (root): the cost of a state read on the linux engine as the
// kernel table grows. For each size (default 10^3, 10^5, 10^6; TANDEM_BENCH_STATE_READ_SIZES):
// a fresh VRF namespace is filled with that many established, SNAT-bound TCP conntracks by the
// ctnetlink ceiling writer (bench/ctnetlink-ceiling/ceiling.c), a real `tandem start --engine linux`
// is configured over NETCONF with that VRF (HA group, ha-fp-conntrack, a virtual service), and a
// raw ssh2 NETCONF client times TANDEM_BENCH_STATE_READ_GETS (default 200) `<get>`s of each of:
//   ha-fp-conntrack   the VRF's ha-fp-conntrack state (the figure of issue 8 item 4)
//   counters          the VRF's fast-path-counters (one `nft -j list counters` per read)
//   tcpstat           the virtual service's tcpstat (the live counts; a dump per read before)
//   anchor            <get-config> of the VRF's running configuration (no state provider runs):
//                     the NETCONF round trip on this machine at this load, to read the others against.
// The table size is global to the host and other jobs may change it: it is set again right before
// each fill, and the conntracks the kernel took are reported (`created`) next to the size asked.
// The kinds are interleaved (one of each per round) so they see the same load. p50/p95 in ms.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isRoot, run as sh } from '../lab/namespace-fixture.js';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { startTandem } from '../test/helpers/tandem-process.js';
import { buildCeilingProbe, sizeConntrackTable, TRACKING_RULESET } from './ctnetlink-ceiling.js';

const SHARED_SECRET = 'bench-state-read-7fQ2xL9pV4mK8sR1';

function progress(line: string): void {
  process.stderr.write(`bench linux-state-read: ${line}\n`);
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round((sorted[i] ?? 0) * 100) / 100;
}

function configXml(vrf: string, port: number): string {
  return `<config>
  <system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system>
  <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>g1</name><state>master</state></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name>
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <peer><name>peer1</name><source>127.0.0.1</source><address>127.0.0.2</address><port>${port}</port></peer>
      <listen-ha-group>g1</listen-ha-group>
      <shared-secret>${SHARED_SECRET}</shared-secret>
    </ha-fp-conntrack>
    <firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action>
      <rule><name>no-telnet</name><action>drop</action><protocol>tcp</protocol><destination-port><start>23</start></destination-port></rule>
    </firewall>
    <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>web</name><vip>198.51.100.10</vip><port>443</port><protocol>tcp</protocol>
      <pool-member><address>10.77.0.2</address><port>443</port><weight>1</weight></pool-member></virtual-service>
  </vrf>
</config>`;
}

const GETS = {
  'ha-fp-conntrack': (vrf: string) => `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf>`,
  counters: (vrf: string) => `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name><fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"/></vrf>`,
  tcpstat: (vrf: string) => `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name><virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>web</name><tcpstat/></virtual-service></vrf>`,
  anchor: (vrf: string) => `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name></vrf>`,
} as const;

type Kind = keyof typeof GETS;

async function readRun(binary: string, n: number, rounds: number): Promise<Record<string, unknown>> {
  const vrf = `lsr${randomBytes(3).toString('hex')}`;
  sh('ip', ['netns', 'add', vrf]);
  let t: Awaited<ReturnType<typeof startTandem>> | undefined;
  let c: NetconfTestClient | undefined;
  try {
    sh('ip', ['-n', vrf, 'link', 'set', 'lo', 'up']);
    sh('ip', ['netns', 'exec', vrf, 'nft', '-f', '-'], TRACKING_RULESET);
    sizeConntrackTable(n);
    const maxAtFill = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8'));
    progress(`${n}: filling the table (nf_conntrack_max ${maxAtFill}, load ${loadavg()})`);
    const fill = JSON.parse(execFileSync('ip', ['netns', 'exec', vrf, binary, String(n), '256', '1'], { encoding: 'utf8' }).trim().split('\n').pop() ?? '{}') as { created: number; errors: number };
    t = await startTandem({ args: ['--engine', 'linux'], env: { TANDEM_LOG_LEVEL: 'warn' }, readyTimeoutMs: 120_000 });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 600_000 });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const started = Date.now();
    const edit = await c.rpc(`<edit-config><target><candidate/></target>${configXml(vrf, port)}</edit-config>`);
    if (!edit.includes('<ok/>')) throw new Error(`edit-config refused: ${edit}`);
    const commit = await c.rpc('<commit/>'); // returns once the VRF's dataplane has counted the table (one dump)
    if (!commit.includes('<ok/>')) throw new Error(`commit refused: ${commit}`);
    const commitMs = Date.now() - started;
    const counters = await c.rpc(`<get><filter type="subtree">${GETS.counters(vrf)}</filter></get>`);
    const counted = Number(/<conntracks>(\d+)<\/conntracks>/.exec(counters)?.[1] ?? -1);
    const inKernel = Number(sh('ip', ['netns', 'exec', vrf, 'conntrack', '-C']).trim());
    const times: Record<Kind, number[]> = { 'ha-fp-conntrack': [], counters: [], tcpstat: [], anchor: [] };
    const kinds = Object.keys(GETS) as Kind[];
    const loadBefore = loadavg();
    progress(`${n}: ${counted} conntracks counted by the engine; ${rounds} rounds of ${kinds.join(', ')} (load ${loadBefore})`);
    for (let i = 0; i < rounds; i++) {
      for (const kind of kinds) {
        const filter = `<filter type="subtree">${GETS[kind](vrf)}</filter>`;
        const rpc = kind === 'anchor' ? `<get-config><source><running/></source>${filter}</get-config>` : `<get>${filter}</get>`;
        const t0 = process.hrtime.bigint();
        const reply = await c.rpc(rpc);
        times[kind].push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!reply.includes('<data')) throw new Error(`${kind}: no data: ${reply.slice(0, 300)}`);
      }
    }
    const out: Record<string, unknown> = {
      conntracks: n, nfConntrackMaxAtFill: maxAtFill, created: fill.created, fillErrors: fill.errors, inKernel, countedByEngine: counted, commitWithSeedMs: commitMs, gets: rounds,
      loadavgBefore: loadBefore, loadavgAfter: loadavg(),
    };
    for (const kind of kinds) {
      const sorted = [...times[kind]].sort((a, b) => a - b);
      out[kind] = { p50Ms: percentile(sorted, 50), p95Ms: percentile(sorted, 95) };
    }
    return out;
  } finally {
    c?.close();
    await t?.stop();
    try {
      sh('ip', ['netns', 'exec', vrf, 'conntrack', '-F']);
    } catch {
      // nothing to flush
    }
    sh('ip', ['netns', 'del', vrf]);
    // The conntrack hash is shared by all namespaces: let the kernel free this one's entries.
    await new Promise((r) => setTimeout(r, 2000));
  }
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, conntracks, the linux engine)' };
  let probe;
  try {
    probe = buildCeilingProbe();
  } catch (err) {
    return { skipped: `no C compiler to build the table filler (apt-get install build-essential): ${String(err)}` };
  }
  const sizes = (process.env.TANDEM_BENCH_STATE_READ_SIZES ?? '1000,100000,1000000').split(',').map(Number);
  const rounds = Number(process.env.TANDEM_BENCH_STATE_READ_GETS ?? 200);
  const out: Record<string, unknown> = {};
  const restore = sizeConntrackTable(Math.max(...sizes));
  try {
    for (const n of sizes) {
      try {
        out[String(n)] = await readRun(probe.binary, n, rounds);
      } catch (err) {
        out[String(n)] = { failed: err instanceof Error ? err.message : String(err) };
      }
      progress(`${n}: ${JSON.stringify(out[String(n)])}`);
    }
  } finally {
    restore();
    probe.dispose();
  }
  return out;
}
