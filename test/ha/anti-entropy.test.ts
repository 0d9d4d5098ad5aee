// Anti-entropy between two agents configured over NETCONF (soft engines): the backup's table is
// made to diverge behind sync's back (entries deleted, NAT bindings and states altered, strays
// added, straight in its engine); once anti-entropy-interval is set the master's next round finds
// the differing ranges and repairs only them. The backup then holds exactly the master's mirrored
// set, both nodes count the repair in state data, the notification reaches a NETCONF subscriber
// (ssh2 client), and later rounds find nothing differing.
import { expect } from 'chai';
import type { ConntrackEntry, FlowTuple } from '../../fastpath/engine.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { freePort, waitFor } from '../sync/two-nodes.js';
import {
  commit, flows, HA_FILTER, haConfig, openFlows, PASSWORD, startTestAgent, stopTestAgent, type TestAgent,
} from './netconf-agent.js';

const SUBSCRIBE = '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>';
const HFC = 'urn:tandem:yang:tandem-ha-fp-conntrack';

function withInterval(config: string, seconds: number): string {
  return config.replace('<listen-ha-group>', `<anti-entropy-interval>${seconds}</anti-entropy-interval><listen-ha-group>`);
}

function intervalOnly(seconds: number): string {
  return `<config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="${HFC}">`
    + `<anti-entropy-interval>${seconds}</anti-entropy-interval></ha-fp-conntrack></vrf></config>`;
}

/** Polls an async condition every 100 ms until it holds (bounded by `timeoutMs`). */
async function until(cond: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every conntrack of a table as "orig > reply state" (what sync carries), sorted. */
async function table(a: TestAgent, onlySynced: boolean): Promise<string[]> {
  const out: string[] = [];
  const t = (x: FlowTuple): string => `${x.proto} ${x.src}:${x.sport}-${x.dst}:${x.dport}`;
  await a.engine.dump('main', (batch) => {
    for (const e of batch) if (!onlySynced || e.synced) out.push(`${t(e.orig)} > ${t(e.reply)} ${e.state}`);
  });
  return out.sort();
}

async function entriesOf(a: TestAgent, fs: FlowTuple[]): Promise<ConntrackEntry[]> {
  const want = new Set(fs.map((f) => `${f.src}:${f.sport}`));
  const out: ConntrackEntry[] = [];
  await a.engine.dump('main', (batch) => {
    for (const e of batch) if (want.has(`${e.orig.src}:${e.orig.sport}`)) out.push(e);
  });
  return out;
}

/** The anti-entropy container of an agent's state, leaf by leaf. */
async function antiEntropy(a: TestAgent): Promise<Record<string, number>> {
  const reply = await a.client.rpc(`<get>${HA_FILTER}</get>`);
  const block = /<anti-entropy>([\s\S]*?)<\/anti-entropy>/.exec(reply)?.[1];
  expect(block, `${a.name} anti-entropy state`).to.be.a('string');
  const out: Record<string, number> = {};
  for (const m of (block as string).matchAll(/<([a-z-]+)>(\d+)<\/\1>/g)) out[m[1] as string] = Number(m[2]);
  return out;
}

describe('HA: anti-entropy between two agents over NETCONF', function () {
  this.timeout(90000);
  let ha1: TestAgent | undefined;
  let ha2: TestAgent | undefined;
  let subscriber: NetconfTestClient | undefined;
  let port: number;

  before(async () => {
    port = await freePort();
    ha1 = await startTestAgent('ha1');
    ha2 = await startTestAgent('ha2');
  });
  after(async () => {
    subscriber?.close();
    await stopTestAgent(ha1);
    await stopTestAgent(ha2);
  });

  it('repairs exactly the divergence made behind sync\'s back, counts and notifies it, then finds none', async () => {
    const a = ha1 as TestAgent;
    const b = ha2 as TestAgent;
    // Anti-entropy off while the backup is made to diverge (a round must not repair half of it).
    await commit(a, withInterval(haConfig('master', '127.0.0.1', '127.0.0.2', port), 0));
    await commit(b, withInterval(haConfig('backup', '127.0.0.2', '127.0.0.1', port), 0));
    await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up', 20000);
    const fs = flows(400);
    await openFlows(a, fs);
    await waitFor(() => b.engine.counters('main').synced === 400, '400 synced conntracks on ha2');
    const master = await table(a, false);
    expect(master).to.have.length(400);
    expect(await table(b, true)).to.deep.equal(master);

    subscriber = await NetconfTestClient.connect({ ...b.address, username: 'admin', password: PASSWORD });
    expect(await subscriber.rpc(SUBSCRIBE)).to.include('<ok/>');

    // Behind sync's back, in ha2's engine: 20 deleted, 10 NAT bindings and 5 states altered, 7 strays.
    expect(await b.engine.remove('main', fs.slice(0, 20))).to.equal(20);
    const nat = await entriesOf(b, fs.slice(20, 30));
    expect(nat).to.have.length(10);
    await b.engine.remove('main', nat.map((e) => e.orig));
    expect(await b.engine.upsert(nat.map((e) => ({ ...e, reply: { ...e.reply, dport: e.reply.dport + 7 } })))).to.equal(10);
    const st = await entriesOf(b, fs.slice(30, 35));
    expect(await b.engine.upsert(st.map((e) => ({ ...e, state: 'fin-wait' as const })))).to.equal(5);
    const strays: ConntrackEntry[] = Array.from({ length: 7 }, (_, i) => {
      const orig: FlowTuple = { proto: 'tcp', src: `10.99.0.${i + 1}`, dst: '192.0.2.10', sport: 50000 + i, dport: 443 };
      return {
        vrf: 'main', orig, reply: { proto: 'tcp', src: orig.dst, dst: orig.src, sport: 443, dport: orig.sport }, state: 'established',
        timeout: 300, alg: false, establishedAt: 1, lastActivity: 1, synced: true,
      };
    });
    expect(await b.engine.upsert(strays)).to.equal(7);
    const diverged = await table(b, true);
    expect(diverged).to.have.length(400 - 20 + 7);
    expect(diverged).to.not.deep.equal(master);

    // Anti-entropy on, every second (a commit touching only this leaf).
    await commit(a, intervalOnly(1));
    await commit(b, intervalOnly(1));
    await until(async () => (await table(b, true)).join('\n') === master.join('\n'), 'ha2 holds exactly the master\'s mirrored set', 20000);

    const notes: string[] = [];
    const sum = { added: 0, updated: 0, removed: 0 };
    const deadline = Date.now() + 15000;
    while (sum.added + sum.updated + sum.removed < 42 && Date.now() < deadline) {
      const m = await subscriber.next(Math.max(1, deadline - Date.now()));
      if (!m.includes('ha-fp-conntrack-divergence-repaired')) continue;
      notes.push(m);
      for (const k of Object.keys(sum) as Array<keyof typeof sum>) sum[k] += Number(new RegExp(`<${k}>(\\d+)</${k}>`).exec(m)?.[1] ?? NaN);
    }
    expect(sum).to.deep.equal({ added: 20, updated: 15, removed: 7 });
    expect(notes[0]).to.include('<vrf>main</vrf>').and.include('<peer>peer1</peer>').and.match(/<ranges>\d+<\/ranges>/);

    const s2 = await antiEntropy(b);
    expect([s2['added'], s2['updated'], s2['removed'], s2['refused']]).to.deep.equal([20, 15, 7, 0]);
    const s1 = await antiEntropy(a);
    expect([s1['added'], s1['updated'], s1['removed']]).to.deep.equal([20, 15, 7]);
    expect(s1['ranges-differing']).to.be.greaterThan(0);
    // Only ranges that held a divergence were repaired: far fewer than all 2 x 64.
    expect(s1['ranges-differing']).to.be.at.most(42);
    expect(s2['ranges-differing']).to.equal(s1['ranges-differing']);

    // Later rounds compare everything again and find nothing.
    const rounds = s1['rounds'] as number;
    const compared = s1['ranges-compared'] as number;
    await until(async () => ((await antiEntropy(a))['rounds'] as number) >= rounds + 2, 'two more rounds', 15000);
    await until(async () => ((await antiEntropy(a))['ranges-compared'] as number) >= compared + 128, 'all ranges compared again', 15000);
    const later = await antiEntropy(a);
    expect(later['ranges-differing']).to.equal(s1['ranges-differing']);
    expect([later['added'], later['updated'], later['removed']]).to.deep.equal([20, 15, 7]);
    expect(await table(b, true)).to.deep.equal(master);
  });

  it('refuses an anti-entropy-interval out of range with a precise error and keeps the running value', async () => {
    const a = ha1 as TestAgent;
    const edit = await a.client.rpc(`<edit-config><target><candidate/></target>${intervalOnly(86401)}</edit-config>`);
    const res = edit.includes('<rpc-error>') ? edit : await a.client.rpc('<commit/>');
    expect(res).to.include('<rpc-error>').and.include('<error-tag>invalid-value</error-tag>')
      .and.include("ha-fp-conntrack/anti-entropy-interval</error-path>").and.include('0..86400');
    await a.client.rpc('<discard-changes/>');
    const running = await a.client.rpc(`<get-config><source><running/></source><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="${HFC}"><anti-entropy-interval/></ha-fp-conntrack></vrf></filter></get-config>`);
    expect(running).to.include('<anti-entropy-interval>1</anti-entropy-interval>');
  });
});
