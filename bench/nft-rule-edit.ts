// `npm run bench -- nft-rule-edit` (root): the dataplane part of a one-rule commit on the linux
// engine (issue 8 item 1) at 10, 1,000 and 10,000 firewall rules (TANDEM_BENCH_NFT_RULES): what the
// fast-path subsystem runs for a commit that changes one rule, prepareVrf (nft -c of the batch)
// then applyVrf (the batch, with nft's echo of the new handle), on a real kernel in a namespace
// this bench creates and removes. Each round changes the action of the middle rule, in turn:
//   in-place   the commit's rule delta given (what a commit that changes one rule sends): one nft
//              batch that deletes that rule by handle and inserts it again before its successor
//   whole      the same change without the delta (what any other change of the VRF does, and what
//              every firewall change did before): the whole table rendered, checked and loaded
// The two kinds alternate (same load for both); the ratio whole / in-place is the figure that does
// not depend on the load. p50/p95 in ms, with the load average before and after.
// `socket`: the cost of the nf_tables socket itself, a one-step check on a socket opened for it
// (as every check and apply did before) against the same check on the socket the engine keeps
// between commits (NftRuleEditSocket), alternating; freshOverKept is the load-independent figure.
// Then the same one-rule change as a user makes it (`netconf`): a real `tandem start --engine
// linux`, the VRF in a namespace of its own, an ssh2 NETCONF client timing edit-config of the
// candidate + commit (TANDEM_BENCH_NFT_NETCONF=0 skips it).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { VrfDataplaneConfig } from '../fastpath/engine.js';
import { LinuxEngine } from '../fastpath/linux/linux-engine.js';
import { NftRuleEditSocket, sendRuleEdit } from '../fastpath/linux/nft-rule-batch.js';
import type { RuleEditOp } from '../fastpath/linux/nft-rule-edit.js';
import { isRoot, run as sh } from '../lab/namespace-fixture.js';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../test/helpers/tandem-process.js';

type Json = Record<string, unknown>;

function progress(line: string): void {
  process.stderr.write(`bench nft-rule-edit: ${line}\n`);
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round((sorted[i] ?? 0) * 100) / 100;
}

function rule(i: number, action: string): Json {
  return {
    name: `r${i}`, action, protocol: 'tcp',
    'source-prefix': `10.${(i >> 8) & 255}.${i & 255}.0/24`,
    'destination-port': { start: 1024 + (i % 60000) },
  };
}

const LEAVES = { 'default-action': 'accept', 'drop-invalid': true };

function config(rules: Json[], delta?: VrfDataplaneConfig['ruleDelta']): VrfDataplaneConfig {
  return {
    name: 'main',
    json: { name: 'main', 'tandem-firewall:firewall': { ...LEAVES, rule: rules } },
    ...(delta ? { ruleDelta: delta } : {}),
  };
}

async function timed(engine: LinuxEngine, cfg: VrfDataplaneConfig): Promise<number> {
  const t0 = performance.now();
  await engine.prepareVrf(cfg);
  await engine.applyVrf('main', cfg);
  return performance.now() - t0;
}

async function atSize(n: number, rounds: number): Promise<Record<string, unknown>> {
  const ns = `tandem-bnre-${randomBytes(3).toString('hex')}`;
  sh('ip', ['netns', 'add', ns]);
  const engine = new LinuxEngine({ namespaceOf: () => ns });
  try {
    const rules = Array.from({ length: n }, (_, i) => rule(i, 'accept'));
    await timed(engine, config(rules));
    const mid = Math.floor(n / 2);
    const times: Record<'in-place' | 'whole', number[]> = { 'in-place': [], whole: [] };
    for (let round = 0; round < rounds; round++) {
      for (const kind of ['in-place', 'whole'] as const) {
        const edited = rule(mid, rules[mid]!.action === 'drop' ? 'accept' : 'drop');
        rules[mid] = edited;
        const delta = kind === 'in-place'
          ? { removed: [String(edited.name)], placed: [{ after: mid === 0 ? null : `r${mid - 1}`, rule: edited }], leaves: LEAVES }
          : undefined;
        times[kind].push(await timed(engine, config(rules, delta)));
      }
    }
    const out: Record<string, unknown> = { rules: n, rounds };
    for (const kind of ['in-place', 'whole'] as const) {
      const sorted = times[kind].slice().sort((a, b) => a - b);
      out[kind] = { p50: percentile(sorted, 50), p95: percentile(sorted, 95) };
    }
    const p50 = (k: 'in-place' | 'whole') => (out[k] as { p50: number }).p50;
    out.wholeOverInPlace = Math.round((p50('whole') / p50('in-place')) * 10) / 10;
    out.socket = await socketCost(ns, rounds * 2);
    return out;
  } finally {
    await engine.close();
    sh('ip', ['netns', 'del', ns]);
  }
}

/** A one-step check on a fresh socket vs on a kept one, alternating. */
async function socketCost(ns: string, rounds: number): Promise<Record<string, unknown>> {
  const check: RuleEditOp[] = [{ op: 'add-counter', name: 'bench-socket-probe' }];
  const kept = new NftRuleEditSocket(ns);
  const times: Record<'fresh' | 'kept', number[]> = { fresh: [], kept: [] };
  try {
    await kept.send(check, 'check'); // opened here, as at a VRF's first edit
    for (let round = 0; round < rounds; round++) {
      let t0 = performance.now();
      await sendRuleEdit(ns, check, 'check');
      times.fresh.push(performance.now() - t0);
      t0 = performance.now();
      await kept.send(check, 'check');
      times.kept.push(performance.now() - t0);
    }
  } finally {
    kept.close();
  }
  const out: Record<string, unknown> = { rounds, keptSocketsOpened: kept.opened };
  for (const k of ['fresh', 'kept'] as const) {
    const sorted = times[k].slice().sort((a, b) => a - b);
    out[k] = { p50: percentile(sorted, 50), p95: percentile(sorted, 95) };
  }
  out.freshOverKept = Math.round(((out.fresh as { p50: number }).p50 / (out.kept as { p50: number }).p50) * 10) / 10;
  return out;
}

function ruleXml(i: number, action: string): string {
  return `<rule><name>r${i}</name><action>${action}</action><protocol>tcp</protocol><source-prefix>10.${(i >> 8) & 255}.${i & 255}.0/24</source-prefix>`
    + `<destination-port><start>${1024 + (i % 60000)}</start></destination-port></rule>`;
}

function vrfXml(vrf: string, rules: string): string {
  return `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name><firewall xmlns="urn:tandem:yang:tandem-firewall">${rules}</firewall></vrf></config>`;
}

/** edit-config of the candidate + commit over NETCONF on a real agent, changing the middle rule's action. */
async function overNetconf(n: number, rounds: number): Promise<Record<string, unknown>> {
  const ns = `bnr-${randomBytes(3).toString('hex')}`; // a VRF name: at most 15 characters
  sh('ip', ['netns', 'add', ns]);
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  try {
    t = await startTandem({ args: ['--engine', 'linux'], env: { TANDEM_LOG_LEVEL: 'warn' } });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    const client = c;
    const commit = async (config: string): Promise<void> => {
      const edit = await client.rpc(`<edit-config><target><candidate/></target>${config}</edit-config>`);
      const done = await client.rpc('<commit/>');
      if (!edit.includes('<ok/>') || !done.includes('<ok/>')) throw new Error(`commit refused: ${edit} ${done}`);
    };
    const rules = Array.from({ length: n }, (_, i) => ruleXml(i, 'accept')).join('');
    await commit(`<config><system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system>${vrfXml(ns, `<default-action>accept</default-action>${rules}`).slice('<config>'.length)}`);
    const mid = Math.floor(n / 2);
    const times: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const t0 = performance.now();
      await commit(vrfXml(ns, ruleXml(mid, round % 2 === 0 ? 'drop' : 'accept')));
      times.push(performance.now() - t0);
    }
    const sorted = times.sort((a, b) => a - b);
    return { rules: n, rounds, p50: percentile(sorted, 50), p95: percentile(sorted, 95) };
  } finally {
    c?.close();
    await t?.stop();
    sh('ip', ['netns', 'del', ns]);
  }
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (network namespaces, nftables)' };
  const sizes = (process.env.TANDEM_BENCH_NFT_RULES ?? '10,1000,10000').split(',').map(Number);
  const rounds = Number(process.env.TANDEM_BENCH_NFT_ROUNDS ?? 15);
  const out: Record<string, unknown> = { loadBefore: loadavg() };
  const results: Record<string, unknown>[] = [];
  for (const n of sizes) {
    progress(`${n} rules, ${rounds} rounds (load ${loadavg()})`);
    results.push(await atSize(n, rounds));
  }
  out.sizes = results;
  const p50 = (i: number) => ((results[i]?.['in-place'] as { p50: number } | undefined)?.p50 ?? NaN);
  if (results.length > 1) out.inPlaceLargestOverSmallest = Math.round((p50(results.length - 1) / p50(0)) * 10) / 10;
  if (process.env.TANDEM_BENCH_NFT_NETCONF !== '0') {
    const netconf: Record<string, unknown>[] = [];
    for (const n of sizes) {
      progress(`netconf: ${n} rules, ${rounds} commits (load ${loadavg()})`);
      netconf.push(await overNetconf(n, rounds));
    }
    out.netconf = netconf;
    const np50 = (i: number) => (netconf[i]?.p50 as number | undefined) ?? NaN;
    if (netconf.length > 1) out.netconfLargestOverSmallest = Math.round((np50(netconf.length - 1) / np50(0)) * 10) / 10;
  }
  out.loadAfter = loadavg();
  return out;
}
