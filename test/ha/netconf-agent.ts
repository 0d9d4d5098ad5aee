// One agent as the two-agent HA tests compose it (operations layer, fastpath, sync and ha
// subsystems on a soft engine, SSH server, an ssh2 NETCONF client), with the test-only fault hooks
// of the commit transaction. Everything is stopped and removed by stopAgent. The operations layer
// reaches the dataplane parts through the plane bridge (agent/plane/, over a MessageChannel in this
// thread, as `tandem start` does over its plane worker's port), unless `bridged: false`.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createNetconfOperations, type NetconfOperations } from '../../agent/operations/index.js';
import { loadOrCreateHostKeys } from '../../agent/ssh/host-keys.js';
import { NetconfSshServer } from '../../agent/ssh/netconf-ssh-server.js';
import { bridgeInProcess, type RunningPlane } from '../../agent/plane/start-plane.js';
import { UserStore } from '../../agent/ssh/user-store.js';
import type { CommitFaultHooks } from '../../core/subsystem.js';
import { FastpathStateProvider, FastpathSubsystem } from '../../fastpath/fastpath-subsystem.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN } from '../../fastpath/soft/vrf-dataplane.js';
import type { DataplaneEngine, FlowTuple } from '../../fastpath/engine.js';
import { createSubsystems, type SyncParts } from '../../ha/ha-parts.js';
import { loadTandemContext, type YangContext } from '../../yang/libyang/index.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { freePort } from '../sync/two-nodes.js';

export const PASSWORD = 'ha-test-password';

export interface TestAgent<E extends DataplaneEngine = SoftEngine> {
  name: string;
  dir: string;
  yang: YangContext;
  engine: E;
  parts: SyncParts;
  ops: NetconfOperations;
  server: NetconfSshServer;
  client: NetconfTestClient;
  notifications: Record<string, unknown>[];
  /** The bridge between the operations layer and the parts (absent with `bridged: false`). */
  bridge?: RunningPlane;
  /** Where the agent's NETCONF SSH server listens (a second session, e.g. a subscriber, connects there). */
  address: { host: string; port: number };
}

export interface TestAgentOptions {
  /** Through the plane bridge (default true), as `tandem start` runs it. */
  bridged?: boolean;
}

export async function startTestAgent(name: string, faults?: CommitFaultHooks, opts: TestAgentOptions = {}): Promise<TestAgent> {
  return startTestAgentOn(name, await SoftEngine.create({ workers: 2 }), faults, opts);
}

/** The same on any engine (closed by stopTestAgent). */
export async function startTestAgentOn<E extends DataplaneEngine>(name: string, engine: E, faults?: CommitFaultHooks, opts: TestAgentOptions = {}): Promise<TestAgent<E>> {
  const dir = await mkdtemp(path.join(tmpdir(), `tandem-${name}-`));
  const yang = await loadTandemContext();
  const parts = createSubsystems(engine, { nodeId: name, backoffMinMs: 20, backoffMaxMs: 200 });
  const direct = {
    subsystems: [new FastpathSubsystem(engine), ...parts.subsystems],
    stateProviders: [...(engine instanceof SoftEngine ? [new FastpathStateProvider(engine)] : []), ...parts.stateProviders],
    rpcProviders: parts.rpcProviders,
    attachNotify: parts.attachNotify,
  };
  // The parts and the engine are closed by stopTestAgent, not by the bridge.
  const bridge = opts.bridged === false ? undefined : await bridgeInProcess({ ...direct, engine, close: async () => {} });
  const served = bridge ?? direct;
  const ops = await createNetconfOperations({
    yang, stateDir: dir, faults,
    subsystems: served.subsystems,
    stateProviders: served.stateProviders,
    rpcProviders: served.rpcProviders,
  });
  const notifications: Record<string, unknown>[] = [];
  served.attachNotify((n) => {
    notifications.push(n);
    ops.notify(n);
  });
  const users = new UserStore(dir);
  await users.load();
  await users.add('admin', { password: PASSWORD, groups: ['admin'] });
  const server = new NetconfSshServer({ hostKeys: await loadOrCreateHostKeys(dir), users, dispatcher: ops });
  const addr = await server.listen('127.0.0.1', 0);
  const client = await NetconfTestClient.connect({ host: addr.host, port: addr.port, username: 'admin', password: PASSWORD });
  return { name, dir, yang, engine, parts, ops, server, client, notifications, address: addr, ...(bridge ? { bridge } : {}) };
}

export async function stopTestAgent(a: TestAgent<DataplaneEngine> | undefined): Promise<void> {
  if (!a) return;
  a.client.close();
  await a.server.close();
  await a.ops.close();
  await a.bridge?.close();
  await a.parts.close();
  await a.engine.close();
  a.yang.free();
  await rm(a.dir, { recursive: true, force: true });
}

/** edit-config on the candidate then commit; the commit's reply. */
export async function editAndCommit(a: TestAgent<DataplaneEngine>, config: string): Promise<string> {
  const edit = await a.client.rpc(`<edit-config><target><candidate/></target>${config}</edit-config>`);
  expect(edit, `${a.name} edit-config`).to.include('<ok/>');
  return a.client.rpc('<commit/>');
}

/** edit-config on the candidate then commit, both answered <ok/>. */
export async function commit(a: TestAgent<DataplaneEngine>, config: string): Promise<void> {
  expect(await editAndCommit(a, config), `${a.name} commit`).to.include('<ok/>');
}

export function haConfig(state: string, source: string, address: string, port: number): string {
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

export function flows(n: number): FlowTuple[] {
  return Array.from({ length: n }, (_, i) => ({ proto: 'tcp', src: `10.7.${i >> 8}.${i & 255}`, dst: '192.0.2.10', sport: 40000 + i, dport: 443 }));
}

/** Opens `fs` on an agent's engine as real TCP handshakes (SYN, SYN-ACK, ACK): established conntracks. */
export async function openFlows(a: TestAgent, fs: FlowTuple[]): Promise<void> {
  for (const step of [fs.map((flow) => ({ flow, flags: TCP_SYN })), fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), fs.map((flow) => ({ flow, flags: TCP_ACK }))]) {
    await a.engine.inject('main', step);
  }
}

export const HA_FILTER = '<filter type="subtree"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf></filter>';

/** A leaf of the agent's ha-fp-conntrack state (the first one of that name), over NETCONF <get>. */
export async function stateLeaf(a: TestAgent<DataplaneEngine>, leaf: string): Promise<string | undefined> {
  const reply = await a.client.rpc(`<get>${HA_FILTER}</get>`);
  return new RegExp(`<${leaf}>([^<]*)</${leaf}>`).exec(reply)?.[1];
}

/**
 * ha1 and ha2 for one suite (call inside `describe`): started in its before hook, stopped in its
 * after hook, with a free port for their sync listeners.
 */
export class AgentPair {
  port = 0;
  private readonly agents: { ha1?: TestAgent; ha2?: TestAgent } = {};

  constructor() {
    before(async () => {
      this.port = await freePort();
      this.agents.ha1 = await startTestAgent('ha1');
      this.agents.ha2 = await startTestAgent('ha2');
    });
    after(async () => {
      await stopTestAgent(this.agents.ha1);
      await stopTestAgent(this.agents.ha2);
    });
  }

  get ha1(): TestAgent {
    return this.started('ha1');
  }

  get ha2(): TestAgent {
    return this.started('ha2');
  }

  /** Stops one of them and starts it again: a fresh engine, an empty table, the same state dir name. */
  async restart(name: 'ha1' | 'ha2'): Promise<TestAgent> {
    await stopTestAgent(this.agents[name]);
    this.agents[name] = undefined;
    const a = await startTestAgent(name);
    this.agents[name] = a;
    return a;
  }

  private started(name: 'ha1' | 'ha2'): TestAgent {
    const a = this.agents[name];
    if (!a) throw new Error(`${name} is not running (the suite's before hook failed?)`);
    return a;
  }
}
