// Running a real ansible-playbook (Debian's, with /usr/bin/python3 and ansible.netcommon) against
// tandem agents over NETCONF: the inventory, an isolated environment in the test's temp dir, and
// a bounded run whose output (stdout and stderr) the test reads.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

export const ANSIBLE_PLAYBOOK = '/usr/bin/ansible-playbook';

/** Whether Debian's ansible and python3 are installed (tests skip, saying so, when not). */
export function ansibleAvailable(): boolean {
  return existsSync(ANSIBLE_PLAYBOOK) && existsSync('/usr/bin/python3');
}

export interface NetconfHost {
  name: string;
  host: string;
  port: number;
  user: string;
  password: string;
}

/** An inventory of NETCONF hosts (connection ansible.netcommon.netconf). */
export function netconfInventory(hosts: NetconfHost[]): string {
  const entries = hosts.map((h) => `    ${h.name}:
      ansible_host: ${h.host}
      ansible_port: ${h.port}
      ansible_user: ${h.user}
      ansible_password: ${h.password}`).join('\n');
  return `all:
  vars:
    ansible_connection: ansible.netcommon.netconf
    ansible_network_os: ansible.netcommon.default
    ansible_python_interpreter: /usr/bin/python3
  hosts:
${entries}
`;
}

/** Writes the playbook and the inventory into `dir` and runs the playbook, killed after timeoutMs. */
export async function runPlaybook(dir: string, playbook: string, hosts: NetconfHost[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  await writeFile(path.join(dir, 'playbook.yml'), playbook);
  await writeFile(path.join(dir, 'inventory.yml'), netconfInventory(hosts));
  const env = {
    ...process.env, ANSIBLE_HOST_KEY_CHECKING: 'False', ANSIBLE_LOCAL_TEMP: path.join(dir, 'tmp'),
    ANSIBLE_PERSISTENT_CONTROL_PATH_DIR: path.join(dir, 'pc'), ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0',
    HOME: dir, PATH: `/usr/bin:${process.env.PATH ?? ''}`,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(ANSIBLE_PLAYBOOK, ['-i', path.join(dir, 'inventory.yml'), path.join(dir, 'playbook.yml')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const timer = setTimeout(() => {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`ansible-playbook timed out after ${timeoutMs} ms\n${out}`));
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}
