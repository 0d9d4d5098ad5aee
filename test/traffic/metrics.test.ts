// The OpenMetrics endpoint of `tandem start --metrics HOST:PORT`, scraped with a real HTTP GET:
// the same dataplane counters as the NETCONF state, per VRF and worker, and the sync counters.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writePcap } from '../../fastpath/traffic/pcap-writer.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const TRAFFIC_NS = 'urn:tandem:yang:tandem-traffic';

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('traffic: OpenMetrics endpoint (tandem start --metrics)', function () {
  this.timeout(120_000);
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  let dir = '';
  let url = '';

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-metrics-'));
    t = await startTandem({ args: ['--metrics', '127.0.0.1:0'] });
    const m = /^tandem: OpenMetrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)$/m.exec(t.stderr());
    if (!m) throw new Error(`no OpenMetrics line in:\n${t.stderr()}`);
    url = m[1] as string;
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    // A VRF with a firewall rule and a sync peer that does not answer (its counters are still shown).
    const edit = await c.rpc(`<edit-config><target><candidate/></target><config>
      <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>g1</name><state>master</state></group></ha>
      <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
        <firewall xmlns="urn:tandem:yang:tandem-firewall">
          <rule><name>no-telnet</name><protocol>tcp</protocol><destination-port><start>23</start></destination-port><action>drop</action></rule>
        </firewall>
        <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
          <peer><name>p1</name><source>127.0.0.1</source><address>127.0.0.9</address><port>1</port></peer>
          <listen-ha-group>g1</listen-ha-group><shared-secret>metrics-test-shared-secret</shared-secret>
        </ha-fp-conntrack>
      </vrf></config></edit-config>`);
    expect(edit).to.include('<ok/>');
    expect(await c.rpc('<commit/>')).to.include('<ok/>');
  });

  after(async () => {
    c?.close();
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the dataplane counters, per VRF and worker, and the sync counters; they move with traffic', async () => {
    const file = path.join(dir, 'two.pcap');
    await writePcap(file, [
      { timeMs: 1, proto: 'udp', src: '10.1.0.1', dst: '198.51.100.1', sport: 1000, dport: 2000 },
      { timeMs: 2, proto: 'udp', src: '198.51.100.1', dst: '10.1.0.1', sport: 2000, dport: 1000 },
      { timeMs: 3, proto: 'tcp', src: '10.1.0.2', dst: '198.51.100.1', sport: 1001, dport: 23, tcpFlags: 0x02 },
    ]);
    const reply = await (c as NetconfTestClient).rpc(`<replay-pcap xmlns="${TRAFFIC_NS}"><vrf>main</vrf><file>${file}</file></replay-pcap>`);
    expect(reply).to.include('<id');
    let text = '';
    for (let i = 0; i < 100; i++) {
      const res = await fetch(url);
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-type')).to.include('application/openmetrics-text');
      text = await res.text();
      if (value(text, 'tandem_fastpath_conntracks{vrf="main"}') === 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(text.trimEnd().endsWith('# EOF'), text).to.equal(true);
    expect(value(text, 'tandem_fastpath_conntracks{vrf="main"}'), text).to.equal(1);
    expect(value(text, 'tandem_fastpath_conntracks_created_total{vrf="main"}')).to.equal(1);
    expect(value(text, 'tandem_fastpath_dropped_firewall_total{vrf="main"}')).to.equal(1);
    expect(value(text, 'tandem_firewall_rule_dropped_total{vrf="main",rule="no-telnet"}')).to.equal(1);
    expect(value(text, 'tandem_firewall_default_accepted_total{vrf="main"}')).to.equal(1);
    expect(value(text, 'tandem_fastpath_conntracks_by_state{vrf="main",protocol="udp",state="replied"}')).to.equal(1);
    const workers = text.split('\n').filter((l) => /^tandem_fastpath_conntracks\{vrf="main",worker="\d+"\} /.test(l));
    expect(workers.length).to.be.greaterThan(0);
    expect(workers.reduce((n, l) => n + Number(l.split(' ')[1]), 0)).to.equal(1);
    // Sync: the peer never answers, so its connections are down.
    expect(text).to.match(/^tandem_sync_connection_up\{vrf="main",peer="p1",client="npf_event0"\} 0$/m);
    // The endpoint shows what NETCONF state shows (what `synced` means is sync's business: issue 10, item 3).
    const state = await (c as NetconfTestClient).rpc('<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>'
      + '<ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><conntracks/></ha-fp-conntrack></vrf></filter></get>');
    expect(value(text, 'tandem_sync_conntracks_synced{vrf="main"}')).to.equal(Number(/<synced>(\d+)<\/synced>/.exec(state)?.[1]));
    expect(text).to.match(/^# TYPE tandem_sync_transmit counter$/m);

    const notFound = await fetch(url.replace('/metrics', '/other'));
    expect(notFound.status).to.equal(404);
  });
});
