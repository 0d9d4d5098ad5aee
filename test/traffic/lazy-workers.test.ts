// The soft engine's worker threads start with the first VRF committed over NETCONF (an idle agent
// runs none) and stop with the last one; traffic and the dataplane counters read right across both.
import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writePcap, type FrameSpec } from '../../fastpath/traffic/pcap-writer.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

function leafNum(xml: string, name: string): number {
  const v = new RegExp(`<${name}>(\\d+)</${name}>`).exec(xml)?.[1];
  if (v === undefined) throw new Error(`no <${name}> in ${xml}`);
  return Number(v);
}

const VRF = (body = '') => `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action></firewall>${body}</vrf>`;
const COUNTERS = `<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
  <fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"/></vrf></filter></get>`;

describe('traffic: soft-engine workers start with the first VRF and stop with the last', function () {
  this.timeout(120_000);
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-lazy-workers-'));
    t = await startTandem({ env: { TANDEM_LOG_LEVEL: 'info' } });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
  });

  after(async () => {
    c?.close();
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const logLines = (msg: string) => (t as TandemProcess).stdout().split('\n').filter((l) => l.includes(`"msg":"${msg}`));
  const threads = async () => Number(/^Threads:\s+(\d+)/m.exec(await readFile(`/proc/${(t as TandemProcess).pid}/status`, 'utf8'))?.[1]);

  async function replay(name: string, frames: FrameSpec[]): Promise<number> {
    const client = c as NetconfTestClient;
    const file = path.join(dir, `${name}.pcap`);
    await writePcap(file, frames);
    const reply = await client.rpc(`<replay-pcap xmlns="urn:tandem:yang:tandem-traffic"><vrf>main</vrf><file>${file}</file></replay-pcap>`);
    const id = /<id[^>]*>(\d+)<\/id>/.exec(reply)?.[1];
    expect(id, reply).to.be.a('string');
    for (let i = 0; i < 100; i++) {
      const r = await client.rpc(`<get><filter type="subtree"><traffic xmlns="urn:tandem:yang:tandem-traffic"><source><id>${id}</id></source></traffic></filter></get>`);
      const source = /<source>[\s\S]*?<\/source>/.exec(r)?.[0] ?? '';
      if (source.includes('<status>completed</status>')) return leafNum(source, 'forwarded');
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`replay ${name} did not complete`);
  }

  it('runs no worker while idle, starts them on the first VRF commit, counts its traffic, stops them on removal', async () => {
    const client = c as NetconfTestClient;
    expect(logLines('soft-engine workers started')).to.have.length(0);
    const idleThreads = await threads();
    expect(await client.rpc(`<edit-config><target><candidate/></target><config>${VRF()}</config></edit-config>`)).to.include('<ok/>');
    expect(await client.rpc('<commit/>')).to.include('<ok/>');
    const started = logLines('soft-engine workers started');
    expect(started).to.have.length(1);
    expect((JSON.parse(started[0] as string) as { workers: number }).workers).to.equal(2);
    expect(await threads(), 'two more threads (the workers)').to.be.at.least(idleThreads + 2);

    const udp = (i: number): FrameSpec => ({ timeMs: i, proto: 'udp', src: `10.0.0.${1 + i}`, dst: '192.0.2.9', sport: 2000 + i, dport: 53 });
    expect(await replay('first', Array.from({ length: 6 }, (_, i) => udp(i)))).to.equal(6);
    const counters = await client.rpc(COUNTERS);
    const total = (/<total>[\s\S]*?<\/total>/.exec(counters) as RegExpExecArray)[0];
    expect(leafNum(total, 'conntracks')).to.equal(6);
    expect(leafNum(total, 'created')).to.equal(6);
    // The per-worker counters add up to the total: both workers report.
    const workers = [...counters.matchAll(/<worker>([\s\S]*?)<\/worker>/g)].map((m) => m[1] as string);
    expect(workers).to.have.length(2);
    expect(workers.reduce((s, w) => s + leafNum(w, 'created'), 0)).to.equal(6);

    expect(await client.rpc(`<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>main</name></vrf></config></edit-config>`)).to.include('<ok/>');
    expect(await client.rpc('<commit/>')).to.include('<ok/>');
    expect(logLines('soft-engine workers stopped')).to.have.length(1);

    // The VRF again: a fresh pool, fresh counters.
    expect(await client.rpc(`<edit-config><target><candidate/></target><config>${VRF()}</config></edit-config>`)).to.include('<ok/>');
    expect(await client.rpc('<commit/>')).to.include('<ok/>');
    expect(logLines('soft-engine workers started')).to.have.length(2);
    expect(await replay('second', [udp(1), udp(2)])).to.equal(2);
    const again = (/<total>[\s\S]*?<\/total>/.exec(await client.rpc(COUNTERS)) as RegExpExecArray)[0];
    expect(leafNum(again, 'created')).to.equal(2);
    expect(leafNum(again, 'conntracks')).to.equal(2);
  });
});
