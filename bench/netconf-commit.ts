// The commit path of the operations layer on a large datastore (1,000 virtual services and 10,000
// firewall rules, from yang-config-generator): a small edit-config + commit, a direct edit of
// running, get-config (cached and filtered), and the cost of one full libyang parse + validation
// for comparison. `node dist/bench/netconf-commit.js` or through bench/run.ts as 'netconf-commit'.
import { mkdtempSync, rmSync } from 'node:fs';
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
import { createSubsystems } from '../sync/subsystems.js';
import { DEFAULT_SIZE, generateRunningConfig } from './yang-config-generator.js';

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
  run().then((r) => process.stdout.write(`${JSON.stringify(r)}\n`), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
