// `npm run lab` (root): the namespace lab — client, ha1 / ha2, server, a sync link apart from the
// data links. First both agents are started in their routers' namespaces and configured over
// NETCONF as a user would (ha1 with ncclient, ha2 with an Ansible playbook) and their running
// configuration read back; then a failover through the real agents (agent-failover-run.ts: VRRP,
// firewall, CG-NAT and ha-fp-conntrack configured over NETCONF; long-lived TCP connections through
// ha1, ha1's agent SIGKILLed and its links cut, ha2 takes over, every connection checked); then
// the control run with ha-fp-conntrack disabled. Everything is torn down at the end, on failure,
// and on Ctrl-C.
//   npm run lab -- [--connections N] [--no-agents] [--in-process] [--keep]
// --in-process runs the failover with the engines in the lab process and a stand-in for sync
// (failover-run.ts) instead of the agents; --keep builds the topology only and leaves it up until
// Ctrl-C (to explore it by hand).
import { parseArgs } from 'node:util';
import { agentFailoverRun } from './agent-failover-run.js';
import { failoverRun } from './failover-run.js';
import { LAB, LabTopology } from './lab-topology.js';
import { LAB_CONFIG_XML, LabAgent } from './lab-agents.js';
import { isRoot } from './namespace-fixture.js';

function say(line: string): void {
  process.stdout.write(`lab: ${line}\n`);
}

async function keep(): Promise<void> {
  const lab = new LabTopology('lab');
  let done = false;
  const stop = async () => {
    if (done) return;
    done = true;
    say('tearing down');
    await lab.teardown();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  try {
    lab.build();
    lab.takeGateway('ha1');
  } catch (err) {
    await lab.teardown();
    throw err;
  }
  say(`topology up: ${Object.entries(lab.ns).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  say(`client ${LAB.client} -> gateway ${LAB.lanGateway} (ha1 holds it) -> server ${LAB.server}; sync link ${LAB.routers.ha1.sync} <-> ${LAB.routers.ha2.sync}`);
  say(`try: ip netns exec ${lab.ns.client} bash ; Ctrl-C tears it all down`);
  setInterval(() => undefined, 1 << 30); // keeps the process alive until a signal
}

/** Both agents in their namespaces, configured over NETCONF (ncclient, Ansible), read back. */
async function agentsStep(): Promise<void> {
  const lab = new LabTopology('lab');
  const agents: LabAgent[] = [];
  try {
    lab.build();
    say(`topology up (namespaces ${lab.prefix}-*); starting tandem in ha1 and ha2`);
    const ha1 = await LabAgent.start(lab.ns.ha1);
    agents.push(ha1);
    const ha2 = await LabAgent.start(lab.ns.ha2);
    agents.push(ha2);
    say(`agents listening (inside their namespaces) on 127.0.0.1:${ha1.port} and 127.0.0.1:${ha2.port}`);
    await ha1.configureWithNcclient(LAB_CONFIG_XML);
    say('ha1 configured with ncclient (edit-config candidate + commit)');
    const recap = (await ha2.configureWithAnsible(LAB_CONFIG_XML)).split('\n').find((l) => l.includes('ok=')) ?? '';
    say(`ha2 configured with ansible-playbook (ansible.netcommon.netconf_config): ${recap.trim()}`);
    for (const [name, agent] of [['ha1', ha1], ['ha2', ha2]] as const) {
      const running = await agent.runningConfig();
      if (!running.includes(LAB.natPool)) throw new Error(`${name}'s running configuration lacks the CG-NAT pool:\n${running}`);
    }
    say('both running configurations hold the firewall and the CG-NAT pool');
  } finally {
    for (const agent of agents) await agent.stop();
    await lab.teardown();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    connections: { type: 'string', default: '1000' },
    keep: { type: 'boolean', default: false },
    'no-agents': { type: 'boolean', default: false },
    'in-process': { type: 'boolean', default: false },
  } });
  if (!isRoot()) {
    process.stderr.write('lab: needs root (it creates network namespaces, nftables rulesets and conntracks)\n');
    process.exit(2);
  }
  if (values.keep) return keep();
  const connections = Number(values.connections);
  if (!Number.isInteger(connections) || connections < 1 || connections > 60_000) {
    process.stderr.write(`lab: --connections must be an integer 1..60000, got ${values.connections}\n`);
    process.exit(2);
  }
  // failoverRun tears its topology down itself, also when it throws; a first signal lets it finish.
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) {
      // Second signal: tear down now.
      void Promise.all([...LabTopology.active].map((t) => t.teardown())).then(() => process.exit(130));
      return;
    }
    interrupted = true;
    say('interrupted: finishing the current step, then tearing down (again to stop at once)');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (!values['no-agents']) await agentsStep();
  if (interrupted) return;
  if (!values['in-process']) {
    say(`failover through the agents with ha-fp-conntrack, ${connections} connections`);
    const withSync = await agentFailoverRun({ sync: true, connections, log: say });
    if (interrupted) return;
    say(`control run: ha-fp-conntrack enabled false, ${connections} connections`);
    const control = await agentFailoverRun({ sync: false, connections, log: say });
    const ok = withSync.after === connections && withSync.resets === 0 && control.after === 0;
    say(JSON.stringify({ withSync, control }));
    say(ok ? `PASS: ${withSync.after}/${connections} survived with sync (first data ${withSync.outageMs} ms after the kill), ${control.after} without`
      : 'FAIL: see the figures above');
    process.exitCode = ok ? 0 : 1;
    return;
  }
  say(`failover with conntrack transfer, ${connections} connections`);
  const withSync = await failoverRun(true, connections, say);
  if (interrupted) return;
  say(`control run without conntrack transfer, ${connections} connections`);
  const control = await failoverRun(false, connections, say);
  const ok = withSync.after === connections && withSync.resets === 0 && control.after === 0;
  say(JSON.stringify({ withSync, control }));
  say(ok ? `PASS: ${withSync.after}/${connections} survived with sync (${withSync.outageMs} ms), ${control.after} without`
    : 'FAIL: see the figures above');
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: Error) => {
  process.stderr.write(`lab: ${err.message}\n`);
  process.exit(1);
});
