// Dataplane counters over NETCONF where the limits bite: a CG-NAT pool of one port block and a
// conntrack table of four entries; a capture replayed with replay-pcap gives exact values of
// nat-port-blocks-in-use, nat-allocation-failures and dropped-table-full.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
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

describe('traffic: counters of CG-NAT blocks, allocation failures and a full table', function () {
  this.timeout(120_000);
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-counters-'));
    t = await startTandem();
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    const edit = await c.rpc(`<edit-config><target><candidate/></target><config>
      <system xmlns="urn:tandem:yang:tandem-system"><fast-path><limits><conntrack><max>4</max></conntrack></limits></fast-path></system>
      <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
        <cg-nat xmlns="urn:tandem:yang:tandem-cg-nat">
          <pool><name>one-block</name><prefix>198.51.100.1/32</prefix><port-range><start>1024</start><end>1055</end></port-range><port-block-size>32</port-block-size></pool>
          <rule><name>subscribers</name><source-prefix>10.0.0.0/24</source-prefix><pool>one-block</pool></rule>
        </cg-nat>
      </vrf></config></edit-config>`);
    expect(edit).to.include('<ok/>');
    const commit = await c.rpc('<commit/>');
    expect(commit, commit).to.include('<ok/>');
  });

  after(async () => {
    c?.close();
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('counts one block in use, one allocation failure and one table-full drop', async () => {
    const client = c as NetconfTestClient;
    const udp = (i: number, src: string): FrameSpec => ({ timeMs: i, proto: 'udp', src, dst: '192.0.2.9', sport: 2000 + i, dport: 53 });
    // Subscriber .1 opens three flows (one block); then .2 finds no free block; then .1's fourth flow
    // fills the table (4 entries) and its fifth is refused. Three replays, one after the other: the
    // subscribers live in different workers, so one capture would race them for the only block.
    const steps: FrameSpec[][] = [[udp(1, '10.0.0.1'), udp(2, '10.0.0.1'), udp(3, '10.0.0.1')], [udp(4, '10.0.0.2')], [udp(5, '10.0.0.1'), udp(6, '10.0.0.1')]];
    const verdicts = { forwarded: 0, nat: 0, full: 0 };
    for (const [n, frames] of steps.entries()) {
      const file = path.join(dir, `limits-${n}.pcap`);
      await writePcap(file, frames);
      const reply = await client.rpc(`<replay-pcap xmlns="urn:tandem:yang:tandem-traffic"><vrf>main</vrf><file>${file}</file></replay-pcap>`);
      const id = /<id[^>]*>(\d+)<\/id>/.exec(reply)?.[1];
      expect(id, reply).to.equal(String(n + 1));
      let source = '';
      for (let i = 0; i < 100; i++) {
        const r = await client.rpc(`<get><filter type="subtree"><traffic xmlns="urn:tandem:yang:tandem-traffic"><source><id>${id}</id></source></traffic></filter></get>`);
        source = /<source>[\s\S]*?<\/source>/.exec(r)?.[0] ?? '';
        if (source.includes('<status>completed</status>')) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(source, source).to.include('<status>completed</status>');
      verdicts.forwarded += leafNum(source, 'forwarded');
      verdicts.nat += leafNum(source, 'dropped-nat');
      verdicts.full += leafNum(source, 'dropped-table-full');
    }
    expect(verdicts).to.deep.equal({ forwarded: 4, nat: 1, full: 1 });
    const counters = await client.rpc(`<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
      <fast-path-counters xmlns="urn:tandem:yang:tandem-fast-path-counters"><total/></fast-path-counters></vrf></filter></get>`);
    const total = (/<total>[\s\S]*?<\/total>/.exec(counters) as RegExpExecArray)[0];
    expect(leafNum(total, 'conntracks')).to.equal(4);
    expect(leafNum(total, 'created')).to.equal(4);
    expect(leafNum(total, 'nat-port-blocks-in-use')).to.equal(1);
    expect(leafNum(total, 'nat-allocation-failures')).to.equal(1);
    expect(leafNum(total, 'dropped-table-full')).to.equal(1);
    expect(total).to.match(/<conntracks-by-state>\s*<protocol>udp<\/protocol>\s*<state>unreplied<\/state>\s*<count>4<\/count>/);
  });
});
