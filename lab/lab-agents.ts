// The agents of the lab: `tandem start --engine linux` inside ha1's and ha2's namespaces, and the
// configuration of the pair as a user gives it over NETCONF — ha1 with ncclient, ha2 with an
// Ansible playbook (ansible.netcommon.netconf_config) — both run inside the router's namespace,
// where the agent listens on 127.0.0.1.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserStore } from '../agent/ssh/user-store.js';
import { tuningEnv } from '../cli/process-tuning.js';
import { LAB_DATAPLANE_XML } from './lab-pair-config.js';

const TANDEM_CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url));
const PYTHON = '/usr/bin/python3';
const USER = 'admin';
const PASSWORD = 'lab-secret';

/** The configuration both routers get: the linux engine, the firewall and CG-NAT of the lab. */
export const LAB_CONFIG_XML = `<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system>
  <vrf xmlns="urn:tandem:yang:tandem-vrf">
    <name>main</name>
    ${LAB_DATAPLANE_XML}
  </vrf>
</config>`;

function run(cmd: string, args: string[], input: string | undefined, timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')} failed (${code ?? signal}):\n${out.slice(-2000)}\n${err.slice(-2000)}`));
    });
    child.stdin.end(input ?? '');
  });
}

export class LabAgent {
  private constructor(readonly namespace: string, readonly stateDir: string, readonly child: ChildProcess, readonly port: number) {}

  /** Starts the agent inside `namespace` with a fresh state dir and the lab user. */
  static async start(namespace: string): Promise<LabAgent> {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'tandem-lab-agent-'));
    await new UserStore(stateDir).add(USER, { password: PASSWORD, groups: ['admin'] });
    const child = spawn('ip', ['netns', 'exec', namespace, process.execPath, TANDEM_CLI, 'start', '--engine', 'linux',
      '--listen', '127.0.0.1:0', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...tuningEnv(), TANDEM_LOG_LEVEL: process.env.TANDEM_LAB_AGENT_LOG_LEVEL ?? 'warn' } });
    let out = '';
    // TANDEM_LAB_AGENT_LOG=<dir>: each agent's output (JSON log lines) also goes to <dir>/<namespace>.log,
    // at TANDEM_LAB_AGENT_LOG_LEVEL (default warn).
    const logDir = process.env.TANDEM_LAB_AGENT_LOG;
    const logFile = logDir ? createWriteStream(path.join(logDir, `${namespace}.log`), { flags: 'a' }) : undefined;
    const collect = (d: string) => {
      if (out.length < 1_000_000) out += d;
      logFile?.write(d);
    };
    child.stdout?.setEncoding('utf8').on('data', collect);
    child.stderr?.setEncoding('utf8').on('data', collect);
    child.once('exit', () => logFile?.end());
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`agent in ${namespace} not listening after 60 s:\n${out}`)), 60_000);
        // The banner is on stderr, the log lines on stdout.
        child.stderr?.on('data', () => {
          const m = /^tandem: NETCONF over SSH on [^:\s]+:(\d+) /m.exec(out);
          if (m) { clearTimeout(timer); resolve(Number(m[1])); }
        });
        child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`agent in ${namespace} exited (${code}):\n${out}`)); });
      });
      return new LabAgent(namespace, stateDir, child, port);
    } catch (err) {
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(stateDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** edit-config on the candidate and commit, with ncclient (Debian's python3-ncclient). */
  async configureWithNcclient(xml: string): Promise<void> {
    const code = `
import json, sys
from ncclient import manager
inp = json.load(sys.stdin)
m = manager.connect(host='127.0.0.1', port=inp['port'], username=inp['user'], password=inp['password'],
                    hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30)
m.edit_config(target='candidate', config=inp['xml'])
m.commit()
m.close_session()
print(json.dumps({'ok': True}))
`;
    await run('ip', ['netns', 'exec', this.namespace, PYTHON, '-c', code], JSON.stringify({ port: this.port, user: USER, password: PASSWORD, xml }), 60_000);
  }

  /** The same with an Ansible playbook (ansible.netcommon.netconf_config, connection netconf). */
  async configureWithAnsible(xml: string): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-lab-ansible-'));
    try {
      await writeFile(path.join(dir, 'config.xml'), xml);
      await writeFile(path.join(dir, 'inventory.ini'), `[routers]
ha ansible_host=127.0.0.1 ansible_port=${this.port} ansible_user=${USER} ansible_password=${PASSWORD} ansible_connection=ansible.netcommon.netconf ansible_network_os=default
`);
      await writeFile(path.join(dir, 'playbook.yml'), `- name: Configure a tandem router over NETCONF
  hosts: routers
  gather_facts: false
  tasks:
    - name: Firewall and CG-NAT of VRF main, committed from the candidate
      ansible.netcommon.netconf_config:
        content: "{{ lookup('file', 'config.xml') }}"
        target: candidate
        commit: true
`);
      return await run('ip', ['netns', 'exec', this.namespace, 'ansible-playbook', '-i', path.join(dir, 'inventory.ini'), path.join(dir, 'playbook.yml')],
        undefined, 180_000, { ANSIBLE_HOST_KEY_CHECKING: 'False', ANSIBLE_CONFIG: path.join(dir, 'none.cfg'), ANSIBLE_LOCAL_TEMP: dir });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The running configuration, read back with ncclient (get-config). */
  async runningConfig(): Promise<string> {
    const code = `
import json, sys
from ncclient import manager
inp = json.load(sys.stdin)
m = manager.connect(host='127.0.0.1', port=inp['port'], username=inp['user'], password=inp['password'],
                    hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30)
print(json.dumps({'data': m.get_config(source='running').data_xml}))
m.close_session()
`;
    const out = await run('ip', ['netns', 'exec', this.namespace, PYTHON, '-c', code], JSON.stringify({ port: this.port, user: USER, password: PASSWORD }), 60_000);
    return (JSON.parse(out.trim().split('\n').pop() ?? '{}') as { data?: string }).data ?? '';
  }

  /** `<get>` with a subtree filter (operational state and configuration), with ncclient. */
  async get(filterXml: string): Promise<string> {
    const code = `
import json, sys
from ncclient import manager
inp = json.load(sys.stdin)
m = manager.connect(host='127.0.0.1', port=inp['port'], username=inp['user'], password=inp['password'],
                    hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30)
print(json.dumps({'data': m.get(filter=('subtree', inp['filter'])).data_xml}))
m.close_session()
`;
    const out = await run('ip', ['netns', 'exec', this.namespace, PYTHON, '-c', code],
      JSON.stringify({ port: this.port, user: USER, password: PASSWORD, filter: filterXml }), 60_000);
    return (JSON.parse(out.trim().split('\n').pop() ?? '{}') as { data?: string }).data ?? '';
  }

  /** SIGKILL by PID (what the failover does to the master's agent); then the state dir goes. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill(signal);
      const force = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(force);
    }
    await rm(this.stateDir, { recursive: true, force: true });
  }
}
