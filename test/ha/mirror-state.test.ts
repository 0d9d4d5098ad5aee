// Rule 10 through NETCONF state on two agents (soft engine): flows of a virtual service are
// mirrored only when its profile is tcp-fast-path with connection-mirror true, and the counters a
// user reads (tcpstat mirror-conn-list-on-active on the master, mirrored-connections-on-standby on
// the backup) match after sync; a service whose profile does not mirror counts nothing and its
// flows stay off the backup.
import { expect } from 'chai';
import type { FlowTuple } from '../../fastpath/engine.js';
import { TCP_ACK, TCP_SYN } from '../../fastpath/soft/vrf-dataplane.js';
import { freePort, waitFor } from '../sync/two-nodes.js';
import { editAndCommit, haConfig, startTestAgent, stopTestAgent, type TestAgent } from './netconf-agent.js';

const SERVICES = `<config>
  <network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>mirror-on</name><type>tcp-fast-path</type><tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path></network-profile>
  <network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>mirror-off</name><type>tcp-fast-path</type></network-profile>
  <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>web</name><vip>192.0.2.100</vip><port>80</port><protocol>tcp</protocol>
      <pool-member><address>10.9.0.1</address><port>80</port></pool-member><network-profile>mirror-on</network-profile></virtual-service>
    <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>api</name><vip>192.0.2.101</vip><port>80</port><protocol>tcp</protocol>
      <pool-member><address>10.9.0.1</address><port>80</port></pool-member><network-profile>mirror-off</network-profile></virtual-service>
  </vrf>
</config>`;

const TCPSTAT = '<get><filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><tcpstat/></virtual-service></vrf></filter></get>';

function counter(reply: string, service: string, leaf: string): number {
  const entry = new RegExp(`<virtual-service[^>]*><name>${service}</name>(.*?)</virtual-service>`).exec(reply)?.[1] ?? '';
  const v = new RegExp(`<${leaf}>(\\d+)</${leaf}>`).exec(entry)?.[1];
  return v === undefined ? -1 : Number(v);
}

describe('rule 10 through NETCONF state: only mirroring profiles mirror, and the counters match on both agents', function () {
  this.timeout(60000);
  let ha1: TestAgent | undefined;
  let ha2: TestAgent | undefined;
  after(async () => {
    await stopTestAgent(ha1);
    await stopTestAgent(ha2);
  });

  it('mirrors web (connection-mirror true), not api (false)', async () => {
    const port = await freePort();
    ha1 = await startTestAgent('mirror1');
    ha2 = await startTestAgent('mirror2');
    for (const [a, state, src, dst] of [[ha1, 'master', '127.0.0.1', '127.0.0.2'], [ha2, 'backup', '127.0.0.2', '127.0.0.1']] as const) {
      expect(await editAndCommit(a, haConfig(state, src, dst, port))).to.include('<ok/>');
      expect(await editAndCommit(a, SERVICES)).to.include('<ok/>');
    }
    await waitFor(() => ha1!.parts.service.ready() && ha2!.parts.service.ready(), 'sync up', 20000);
    const flows = (vip: string, n: number, base: number): FlowTuple[] =>
      Array.from({ length: n }, (_, i) => ({ proto: 'tcp', src: `10.8.0.${base + i}`, dst: vip, sport: 30000 + base + i, dport: 80 }));
    const web = flows('192.0.2.100', 6, 1), api = flows('192.0.2.101', 4, 100);
    for (const step of [[...web, ...api].map((flow) => ({ flow, flags: TCP_SYN })), [...web, ...api].map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), [...web, ...api].map((flow) => ({ flow, flags: TCP_ACK }))]) {
      await ha1.engine.inject('main', step);
    }
    await waitFor(() => ha2!.engine.counters('main').conntracks >= 6, 'web flows on ha2');
    const deadline = Date.now() + 10000;
    let s1 = '', s2 = '';
    while (Date.now() < deadline) {
      s1 = await ha1.client.rpc(TCPSTAT);
      s2 = await ha2.client.rpc(TCPSTAT);
      if (counter(s2, 'web', 'mirrored-connections-on-standby') === 6) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(counter(s1, 'web', 'mirror-conn-list-on-active'), s1).to.equal(6);
    expect(counter(s2, 'web', 'mirrored-connections-on-standby'), s2).to.equal(6);
    expect(counter(s1, 'api', 'mirror-conn-list-on-active'), s1).to.equal(0);
    expect(counter(s2, 'api', 'mirrored-connections-on-standby'), s2).to.equal(0);
    expect(counter(s1, 'api', 'connections'), s1).to.equal(4);
    expect(ha2.engine.counters('main').conntracks).to.equal(6); // api's flows never reached the backup
  });
});
