// Two agents on loopback configured over NETCONF (SSH, edit-config on the candidate, commit): each
// composes the operations layer with the fastpath subsystem and the sync/ha subsystems on its own
// soft engine. Traffic on ha1 reaches ha2's table, state data and the RPC answer over NETCONF, and
// a planned failover made by editing the HA group state leaves ha2 forwarding every connection.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createNetconfOperations, type NetconfOperations } from '../../agent/operations/index.js';
import { loadOrCreateHostKeys } from '../../agent/ssh/host-keys.js';
import { NetconfSshServer } from '../../agent/ssh/netconf-ssh-server.js';
import { UserStore } from '../../agent/ssh/user-store.js';
import { FastpathStateProvider, FastpathSubsystem } from '../../fastpath/fastpath-subsystem.js';
import type { FlowTuple } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, Verdict } from '../../fastpath/soft/vrf-dataplane.js';
import { createSubsystems, type SyncParts } from '../../sync/subsystems.js';
import { loadTandemContext, type YangContext } from '../../yang/libyang/index.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { freePort, waitFor } from '../sync/two-nodes.js';

const PASSWORD = 'ha-test-password';

interface Agent {
  name: string;
  dir: string;
  yang: YangContext;
  engine: SoftEngine;
  parts: SyncParts;
  ops: NetconfOperations;
  server: NetconfSshServer;
  client: NetconfTestClient;
  notifications: Record<string, unknown>[];
}

async function startAgent(name: string): Promise<Agent> {
  const dir = await mkdtemp(path.join(tmpdir(), `tandem-${name}-`));
  const yang = await loadTandemContext();
  const engine = await SoftEngine.create({ workers: 2 });
  const parts = createSubsystems(engine, { nodeId: name, backoffMinMs: 20, backoffMaxMs: 200 });
  const ops = await createNetconfOperations({
    yang, stateDir: dir,
    subsystems: [new FastpathSubsystem(engine), ...parts.subsystems],
    stateProviders: [new FastpathStateProvider(engine), ...parts.stateProviders],
    rpcProviders: parts.rpcProviders,
  });
  const notifications: Record<string, unknown>[] = [];
  parts.attachNotify((n) => {
    notifications.push(n);
    ops.notify(n);
  });
  const users = new UserStore(dir);
  await users.load();
  await users.add('admin', { password: PASSWORD, groups: ['admin'] });
  const server = new NetconfSshServer({ hostKeys: await loadOrCreateHostKeys(dir), users, dispatcher: ops });
  const addr = await server.listen('127.0.0.1', 0);
  const client = await NetconfTestClient.connect({ host: addr.host, port: addr.port, username: 'admin', password: PASSWORD });
  return { name, dir, yang, engine, parts, ops, server, client, notifications };
}

async function stopAgent(a: Agent | undefined): Promise<void> {
  if (!a) return;
  a.client.close();
  await a.server.close();
  await a.ops.close();
  await a.parts.close();
  await a.engine.close();
  a.yang.free();
  await rm(a.dir, { recursive: true, force: true });
}

function haConfig(state: string, source: string, address: string, port: number): string {
  return `<config>
  <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>${state}</state></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf">
    <name>main</name>
    <firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action></firewall>
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <peer><name>peer1</name><source>${source}</source><address>${address}</address><port>${port}</port></peer>
      <listen-ha-group>ha-group1</listen-ha-group>
      <shared-secret>a-shared-secret-over-netconf</shared-secret>
    </ha-fp-conntrack>
  </vrf>
</config>`;
}

async function commit(a: Agent, config: string): Promise<void> {
  const edit = await a.client.rpc(`<edit-config><target><candidate/></target>${config}</edit-config>`);
  expect(edit, `${a.name} edit-config`).to.include('<ok/>');
  const done = await a.client.rpc('<commit/>');
  expect(done, `${a.name} commit`).to.include('<ok/>');
}

function flows(n: number): FlowTuple[] {
  return Array.from({ length: n }, (_, i) => ({ proto: 'tcp', src: `10.7.${i >> 8}.${i & 255}`, dst: '192.0.2.10', sport: 40000 + i, dport: 443 }));
}

describe('HA: two agents configured over NETCONF on loopback', function () {
  this.timeout(60000);
  let ha1: Agent | undefined;
  let ha2: Agent | undefined;
  let port: number;

  before(async () => {
    port = await freePort();
    ha1 = await startAgent('ha1');
    ha2 = await startAgent('ha2');
  });
  after(async () => {
    await stopAgent(ha1);
    await stopAgent(ha2);
  });

  it('synchronises, reports state, runs the RPC and fails over by an edit of the HA group', async () => {
    const a = ha1 as Agent;
    const b = ha2 as Agent;
    await commit(a, haConfig('master', '127.0.0.1', '127.0.0.2', port));
    await commit(b, haConfig('backup', '127.0.0.2', '127.0.0.1', port));
    await waitFor(() => a.parts.service.ready() && b.parts.service.ready(), 'sync connections up', 20000);
    const fs = flows(200);
    for (const step of [fs.map((flow) => ({ flow, flags: TCP_SYN })), fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), fs.map((flow) => ({ flow, flags: TCP_ACK }))]) {
      await a.engine.inject('main', step);
    }
    await waitFor(() => b.engine.counters('main').conntracks === 200, '200 conntracks on ha2');

    const filter = '<filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf></filter>';
    const s1 = await a.client.rpc(`<get>${filter}</get>`);
    expect(s1).to.include('<name>npf_event0</name>').and.include('<name>npf_event1</name>');
    expect(s1).to.include('<connection-status>established</connection-status>');
    expect(s1).to.match(/<synced>200<\/synced>/);
    const s2 = await b.client.rpc(`<get>${filter}</get>`);
    expect(s2).to.match(/<receive>200<\/receive>/);
    const groups = await a.client.rpc('<get><filter type="subtree"><ha xmlns="urn:tandem:yang:tandem-ha"/></filter></get>');
    expect(groups).to.include('<current-state>master</current-state>').and.include('<controller>static</controller>');

    const reply = await a.client.rpc('<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>');
    expect(reply).to.include('Synchronization started');
    await waitFor(() => a.notifications.some((n) => 'tandem-ha-fp-conntrack:manual-synchronization-complete' in n), 'manual synchronization complete');
    const onBackup = await b.client.rpc('<ha-fp-conntrack-synchronization xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><vrf>main</vrf></ha-fp-conntrack-synchronization>');
    expect(onBackup).to.include('<rpc-error>').and.include('backup');

    // Planned failover: the HA group state is edited on both nodes.
    await commit(a, '<config><ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>backup</state></group></ha></config>');
    await commit(b, '<config><ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>master</state></group></ha></config>');
    expect(b.engine.role('main')).to.equal('master');
    expect(a.engine.role('main')).to.equal('backup');
    const verdicts = await b.engine.inject('main', fs.map((flow) => ({ flow, flags: TCP_ACK })));
    expect(verdicts.filter((v) => v === Verdict.Forward)).to.have.length(200);
    expect(b.notifications.some((n) => 'tandem-ha:group-state-change' in n)).to.equal(true);
  });

  it('refuses a configuration sync cannot run with a precise error', async () => {
    const a = ha1 as Agent;
    const edit = await a.client.rpc(`<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
      <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"><peer><name>peer2</name><source>127.0.0.1</source><address>127.0.0.2</address></peer></ha-fp-conntrack>
      </vrf></config></edit-config>`);
    expect(edit).to.include('<ok/>');
    const res = await a.client.rpc('<commit/>');
    expect(res).to.include('<rpc-error>').and.include('have the same address 127.0.0.2');
    await a.client.rpc('<discard-changes/>');
  });
});
