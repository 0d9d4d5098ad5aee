// The commit path of the operations layer on a large datastore (1,000 virtual services and 10,000
// firewall rules, from yang-config-generator): a small edit-config + commit, a direct edit of
// running, get-config (cached and filtered), and the cost of one full libyang parse + validation
// for comparison. `node dist/bench/netconf-commit.js` or through bench/run.ts as 'netconf-commit'.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadTandemContext } from '../yang/libyang/index.js';
import { createNetconfOperations } from '../agent/operations/index.js';
import { parseXml } from '../agent/netconf/xml-parser.js';
import type { RpcContext } from '../agent/netconf/rpc-dispatcher.js';
import type { CommitSubsystem, RpcProvider, StateProvider } from '../core/subsystem.js';
import { createFastpathParts } from '../fastpath/fastpath-parts.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';
import { createSubsystems } from '../ha/ha-parts.js';
import { DEFAULT_SIZE, generateRunningConfig } from './yang-config-generator.js';
import { startTandem } from '../test/helpers/tandem-process.js';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { warmUpClient } from './client-warmup.js';

const NP = 'urn:tandem:yang:tandem-network-profile';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2));
}

/** The same operations on a small datastore (20 profiles): the per-operation overhead. */
async function small(yang: Awaited<ReturnType<typeof loadTandemContext>>, iterations: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-small-'));
  try {
    const ops = await createNetconfOperations({ yang, stateDir: dir, subsystems: [], stateProviders: [], rpcProviders: [] });
    const ctx: RpcContext = { sessionId: 1, username: 'bench', sendNotification: () => undefined, closeAfterReply: () => undefined, killSession: () => false };
    const B = 'xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"';
    const rpc = (xml: string) => ops.dispatch(ctx, parseXml(xml));
    for (let i = 0; i < 20; i++) {
      await rpc(`<edit-config ${B}><target><running/></target><config><network-profile xmlns="${NP}"><name>p${i}</name><type>tcp-fast-path</type></network-profile></config></edit-config>`);
    }
    const pair: number[] = [];
    const commit: number[] = [];
    const get: number[] = [];
    for (let i = 0; i < iterations; i++) {
      let t = performance.now();
      await rpc(`<edit-config ${B}><target><running/></target><config><network-profile xmlns="${NP}"><name>x</name><type>tcp-fast-path</type></network-profile></config></edit-config>`);
      await rpc(`<edit-config ${B}><target><running/></target><config><network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"><name>x</name></network-profile></config></edit-config>`);
      pair.push(performance.now() - t);
      t = performance.now();
      await rpc(`<edit-config ${B}><target><candidate/></target><config><network-profile xmlns="${NP}"><name>c${i}</name><type>tcp-proxy</type></network-profile></config></edit-config>`);
      await rpc(`<commit ${B}/>`);
      commit.push(performance.now() - t);
      t = performance.now();
      await rpc(`<get-config ${B}><source><running/></source></get-config>`);
      get.push(performance.now() - t);
    }
    await ops.close();
    return {
      editMergeRemovePairRunningMs: { p50: pct(pair, 50), p99: pct(pair, 99) },
      editCandidateAndCommitMs: { p50: pct(commit, 50), p99: pct(commit, 99) },
      getConfigMs: { p50: pct(get, 50), p99: pct(get, 99) },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Parts = { subsystems: CommitSubsystem[]; stateProviders: StateProvider[]; rpcProviders: RpcProvider[] };

async function large(yang: Awaited<ReturnType<typeof loadTandemContext>>, iterations: number, parts: Parts): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-commit-'));
  try {
    const ops = await createNetconfOperations({ yang, stateDir: dir, ...parts });
    const ctx: RpcContext = { sessionId: 1, username: 'bench', sendNotification: () => undefined, closeAfterReply: () => undefined, killSession: () => false };
    const rpc = async (xml: string) => {
      const r = await ops.dispatch(ctx, parseXml(xml));
      return 'ok' in r ? '' : r.xml;
    };
    const B = 'xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"';
    const big = generateRunningConfig(DEFAULT_SIZE).replace(/^\s*<\?xml[^>]*\?>/, '');
    const body = /^\s*<(config|data)\b/.test(big) ? big.replace(/^\s*<(config|data)\b[^>]*>/, '').replace(/<\/(config|data)>\s*$/, '') : big;
    let t = performance.now();
    await rpc(`<copy-config ${B}><target><running/></target><source><config>${body}</config></source></copy-config>`);
    const loadMs = performance.now() - t;
    const size = (await rpc(`<get-config ${B}><source><running/></source></get-config>`)).length;

    const commit: number[] = [];
    const direct: number[] = [];
    const getCfg: number[] = [];
    const getFiltered: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const prof = `<network-profile xmlns="${NP}"><name>bench-${i}</name><type>tcp-fast-path</type></network-profile>`;
      t = performance.now();
      await rpc(`<edit-config ${B}><target><candidate/></target><config>${prof}</config></edit-config>`);
      await rpc(`<commit ${B}/>`);
      commit.push(performance.now() - t);
      t = performance.now();
      await rpc(`<edit-config ${B}><target><running/></target><config><network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"><name>bench-${i}</name></network-profile></config></edit-config>`);
      direct.push(performance.now() - t);
      t = performance.now();
      await rpc(`<get-config ${B}><source><running/></source></get-config>`);
      getCfg.push(performance.now() - t);
      t = performance.now();
      await rpc(`<get-config ${B}><source><running/></source><filter type="subtree"><network-profile xmlns="${NP}"/></filter></get-config>`);
      getFiltered.push(performance.now() - t);
    }
    // One full parse + validation of the same datastore, the floor of any commit that revalidates.
    const full: number[] = [];
    const text = await rpc(`<get-config ${B}><source><running/></source></get-config>`);
    const inner = text.replace(/^<data[^>]*>/, '').replace(/<\/data>$/, '');
    for (let i = 0; i < 5; i++) {
      t = performance.now();
      yang.parse(inner, { format: 'xml', kind: 'config', validate: true }).free();
      full.push(performance.now() - t);
    }
    await ops.close();
    return {
      datastore: { virtualServices: DEFAULT_SIZE.virtualServices, firewallRules: DEFAULT_SIZE.firewallRules, getConfigBytes: size, loadMs: Number(loadMs.toFixed(1)) },
      editCandidateAndCommitMs: { p50: pct(commit, 50), p99: pct(commit, 99) },
      editRunningMs: { p50: pct(direct, 50), p99: pct(direct, 99) },
      getConfigMs: { p50: pct(getCfg, 50), p99: pct(getCfg, 99) },
      getConfigSubtreeFilterMs: { p50: pct(getFiltered, 50), p99: pct(getFiltered, 99) },
      fullParseValidateMs: { p50: pct(full, 50) },
      iterations,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** User + system CPU time (ms) of a process, all threads, from /proc (Linux). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const FW = 'urn:tandem:yang:tandem-firewall';
const rule = (i: number, action: string) => `<rule><name>r${i}</name><action>${action}</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port></rule>`;
const vrf = (body: string) => `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="${FW}"><default-action>accept</default-action>${body}</firewall></vrf></config>`;
/**
 * The edit of iteration i on a datastore of `rules` rules, all loaded 'accept': rule (i * 7919) %
 * rules gets the other action than it has (`dropped`: the rules now 'drop'), so that every commit
 * changes one rule. (Until stop 14 the action followed i's parity: at 10,000 rules every other
 * commit set a rule to the action it already had, which tandem now sees as no change.)
 */
function flipOneRule(i: number, rules: number, dropped: Set<number>): string {
  const n = (i * 7919) % rules;
  const drop = !dropped.has(n);
  if (drop) dropped.add(n);
  else dropped.delete(n);
  return `<edit-config><target><candidate/></target>${vrf(rule(n, drop ? 'drop' : 'accept'))}</edit-config>`;
}

/**
 * Issue 8's figure, as a user drives tandem: a real `tandem start` (soft engine) and an ssh2
 * NETCONF client; N firewall rules in VRF main's running, then each iteration edits one rule's
 * action on the candidate and commits. The agent logs at info, as operators run it (stop 13; at
 * debug, its extra lines per commit cost ~1 ms of the pair): where the time goes comes from its
 * 'commit applied' lines; TANDEM_BENCH_LOG_LEVEL=debug adds the debug-only figures (libyang
 * validation of the new running, how it was validated and saved).
 */
export async function singleRuleOverSsh(rules: number, iterations: number): Promise<Record<string, unknown>> {
  // BENCH_TANDEM_CLI: another build's dist/cli/cli.js (an anchor run side by side).
  const t = await startTandem({ env: { TANDEM_LOG_LEVEL: process.env.TANDEM_BENCH_LOG_LEVEL ?? 'info' },
    ...(process.env.BENCH_TANDEM_CLI ? { cli: process.env.BENCH_TANDEM_CLI } : {}) });
  const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
  const expectOk = (reply: string, what: string): void => {
    if (!reply.includes('<ok/>')) throw new Error(`${what}: ${reply.slice(0, 500)}`);
  };
  /** Iteration i: one rule's action flipped on the candidate, then commit. */
  const dropped = new Set<number>();
  const editAndCommit = async (i: number): Promise<void> => {
    expectOk(await c.rpc(flipOneRule(i, rules, dropped)), 'edit');
    expectOk(await c.rpc('<commit/>'), 'commit');
  };
  try {
    const loadStart = performance.now();
    expectOk(await c.rpc(`<edit-config><target><candidate/></target>${vrf(Array.from({ length: rules }, (_, i) => rule(i, 'accept')).join(''))}</edit-config>`), 'load edit');
    expectOk(await c.rpc('<commit/>'), 'load commit');
    const loadMs = performance.now() - loadStart;
    await new Promise((r) => setTimeout(r, 500)); // the load's own log lines are flushed before counting starts
    // Pairs run first, not measured (TANDEM_BENCH_WARMUP, default 0: cold, the first commits after
    // start): V8 is still optimizing a commit's code for the first few thousand commits.
    const warmup = Number(process.env.TANDEM_BENCH_WARMUP ?? 0);
    for (let i = 0; i < warmup; i++) await editAndCommit(i);
    const logStart = t.stdout().length;
    // CPU time of the agent (all its threads) across the loop: a figure a loaded machine moves less than wall time.
    const cpuBefore = cpuMsOf(t.pid);
    const times: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const started = performance.now();
      await editAndCommit(i);
      times.push(performance.now() - started);
    }
    const agentCpuMsPerCommit = Math.round(((cpuMsOf(t.pid) - cpuBefore) / iterations) * 100) / 100;
    const logs = t.stdout().slice(logStart).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const field = (msg: string, key: string): number[] => logs.filter((l) => l.msg === msg && typeof l[key] === 'number').map((l) => l[key] as number);
    const p50 = (xs: number[]) => (xs.length ? pct(xs, 50) : undefined);
    // Per subsystem and phase, from the transaction's own timing.
    const phases: Record<string, number | undefined> = {};
    const applied = logs.filter((l) => l.msg === 'commit applied' && l.phases) as { phases: Record<string, Record<string, number>> }[];
    for (const name of new Set(applied.flatMap((l) => Object.keys(l.phases)))) {
      for (const phase of ['validate', 'prepare', 'apply']) {
        const xs = applied.map((l) => l.phases[name]?.[phase]).filter((x): x is number => typeof x === 'number');
        if (xs.length) phases[`${name}.${phase}`] = p50(xs);
      }
    }
    return {
      rules, iterations, warmupCommits: warmup, loadMs: Math.round(loadMs),
      editAndCommitMs: { p50: pct(times, 50), p95: pct(times, 95) },
      agentCpuMsPerCommit,
      // How the commits went (issue 8): validated on the changed rules only, saved as a journal record.
      // Every measured commit changed a rule: each one's transaction ran (logged 'commit applied').
      commitsApplied: applied.length,
      commitsValidatedOnChangedRules: logs.filter((l) => l.msg === 'new running validated' && l.validation === 'changed-rules').length,
      commitsSavedToJournal: logs.filter((l) => l.msg === 'running saved' && l.save === 'journal').length,
      agentSideMsP50: {
        validate: p50(field('new running validated', 'validateMs')),
        transactionAndValidate: p50(field('running saved', 'transactionAndValidateMs')),
        transaction: p50(field('commit applied', 'ms')),
        jsonForSubsystems: p50(field('commit applied', 'jsonMs')),
        save: p50(field('running saved', 'saveMs')),
        total: p50(field('running saved', 'totalMs')),
        phases,
      },
    };
  } finally {
    c.close();
    await t.stop();
  }
}

export async function run(iterations = 40): Promise<Record<string, unknown>> {
  const yang = await loadTandemContext();
  try {
    const out: Record<string, unknown> = { small: await small(yang, 200) };
    out.large = await large(yang, iterations, { subsystems: [], stateProviders: [], rpcProviders: [] });
    // The same with the agent's subsystems on the soft engine: each commit also prints the
    // configuration as JSON for them and runs their validate/prepare/apply.
    const engine = await SoftEngine.create();
    const fastpath = createFastpathParts(engine);
    const sync = createSubsystems(engine);
    try {
      out.largeWithSubsystems = await large(yang, Math.min(iterations, 10), {
        subsystems: [...fastpath.subsystems, ...sync.subsystems], stateProviders: [], rpcProviders: sync.rpcProviders,
      });
    } finally {
      await sync.close();
      await engine.close();
    }
    return out;
  } finally {
    yang.free();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // `node dist/bench/netconf-commit.js single-rule [iterations]`: only issue 8's figure (10 / 1,000 / 10,000 rules).
  // `node dist/bench/netconf-commit.js single-rule [iterations] [sizes, e.g. 10,1000,10000]`.
  const singleRule = process.argv[2] === 'single-rule';
  const iterations = Number(process.argv[3] ?? 40);
  const sizes = (process.argv[4] ?? '10,1000,10000').split(',').map(Number);
  (singleRule
    ? (async () => {
      // The client warmed up first (client-warmup.ts): the first size is not measured with a cold client.
      const clientDropped = new Set<number>();
      const clientWarmup = await warmUpClient(Number(process.env.BENCH_CLIENT_WARMUP ?? 6000), (i) => (i % 2 === 0 ? flipOneRule(i / 2, 10, clientDropped) : '<commit/>'));
      const out = [];
      for (const n of sizes) out.push(await singleRuleOverSsh(n, iterations));
      return { clientWarmup, singleRuleOverSsh: out };
    })()
    : run()).then((r) => process.stdout.write(`${JSON.stringify(r)}\n`), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
