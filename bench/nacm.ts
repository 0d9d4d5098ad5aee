// What NACM costs per request: the operations layer in-process (no SSH, no subsystems), running
// with N network profiles, as a user of group admin (the factory permit-all rule), an operator
// (a path rule) and a user with no group (the RFC defaults). Run: node dist/bench/nacm.js [N]
// (exports run() in the form bench/run.ts expects).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argv } from 'node:process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadTandemContext } from '../yang/libyang/index.js';
import { createNetconfOperations } from '../agent/operations/index.js';
import { parseXml } from '../agent/netconf/xml-parser.js';
import type { RpcContext } from '../agent/netconf/rpc-dispatcher.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const NP = 'urn:tandem:yang:tandem-network-profile';
const ROUNDS = 20;

export async function run(profiles = 2000): Promise<Record<string, unknown>> {
  const yang = await loadTandemContext();
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-nacm-'));
  const groups: Record<string, string[]> = { admin: ['admin'], ops: ['operator'] };
  const ops = await createNetconfOperations({
    yang, stateDir: dir, subsystems: [], stateProviders: [], rpcProviders: [],
    users: { identity: (n) => Promise.resolve({ groups: groups[n] ?? [], recovery: false }) },
  });
  const session = (sessionId: number, username: string): RpcContext => {
    ops.sessionStarted({ sessionId, username, transport: 'netconf-ssh', sourceHost: '127.0.0.1', loginTime: new Date().toISOString(),
      inRpcs: 0, inBadRpcs: 0, outRpcErrors: 0, outNotifications: 0 });
    return { sessionId, username, sendNotification: () => undefined, closeAfterReply: () => undefined, killSession: () => false };
  };
  const rpc = (s: RpcContext, xml: string) => ops.dispatch(s, parseXml(xml));
  const admin = session(1, 'admin');
  const operator = session(2, 'ops');
  const reader = session(3, 'reader');
  const figures: Record<string, unknown> = { profiles, rounds: ROUNDS, loadavg: (await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ') };
  try {
    let body = '';
    for (let i = 0; i < profiles; i++) body += `<network-profile xmlns="${NP}"><name>p${i}</name><type>tcp-fast-path</type></network-profile>`;
    await rpc(admin, `<edit-config xmlns="${BASE}"><target><running/></target><config>${body}`
      + `<nacm xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-acm" xmlns:np="${NP}"><rule-list><name>operator</name><group>operator</group>`
      + '<rule><name>np</name><path>/np:network-profile</path><access-operations>create update delete</access-operations><action>permit</action></rule>'
      + '</rule-list></nacm></config></edit-config>');
    const getConfig = `<get-config xmlns="${BASE}"><source><running/></source></get-config>`;
    const edit = (ds: string, name: string) => `<edit-config xmlns="${BASE}"><target><${ds}/></target><config>`
      + `<network-profile xmlns="${NP}"><name>${name}</name><type>udp-fast-path</type></network-profile></config></edit-config>`;
    const perOp = async (s: RpcContext, xml: (i: number) => string) => {
      await rpc(s, xml(-1));
      const t = performance.now();
      for (let i = 0; i < ROUNDS; i++) await rpc(s, xml(i));
      return Number(((performance.now() - t) / ROUNDS).toFixed(2));
    };
    let t = performance.now();
    await rpc(reader, getConfig);
    figures['getConfigFirstNoGroupMs'] = Number((performance.now() - t).toFixed(1));
    figures['getConfigAdminMs'] = await perOp(admin, () => getConfig);
    figures['getConfigNoGroupMs'] = await perOp(reader, () => getConfig);
    figures['editRunningAdminMs'] = await perOp(admin, (i) => edit('running', `a${i}`));
    figures['editRunningOperatorMs'] = await perOp(operator, (i) => edit('running', `o${i}`));
    figures['editCandidateAdminMs'] = await perOp(admin, (i) => edit('candidate', `ca${i}`));
    figures['editCandidateOperatorMs'] = await perOp(operator, (i) => edit('candidate', `co${i}`));
    t = performance.now();
    await rpc(admin, getConfig);
    figures['getConfigAfterChangeAdminMs'] = Number((performance.now() - t).toFixed(1));
  } finally {
    await ops.close();
    yang.free();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}

if (argv[1] && fileURLToPath(import.meta.url) === argv[1]) {
  run(argv[2] ? Number(argv[2]) : undefined).then((f) => process.stdout.write(`${JSON.stringify({ bench: 'nacm', ...f })}\n`), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
