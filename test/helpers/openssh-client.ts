// OpenSSH's `ssh -s ... netconf` as a NETCONF client for tests: input given whole on stdin (a hello
// and rpcs, end-of-message framed), output collected; bounded by a timeout (killed by PID).
import { spawn, spawnSync } from 'node:child_process';

export const BASE_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';

export function hasOpenSsh(): boolean {
  return !spawnSync('ssh', ['-V']).error;
}

/** A base:1.0 hello followed by these rpc bodies (message-ids 101, 102, ...), each ]]>]]> framed. */
export function eomSession(rpcs: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?><hello xmlns="${BASE_NS}"><capabilities>`
    + '<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>'
    + rpcs.map((r, i) => `<rpc xmlns="${BASE_NS}" message-id="${101 + i}">${r}</rpc>]]>]]>`).join('');
}

export interface SshRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run ssh -s netconf as `user` with a key file (or no key: BatchMode makes password logins fail). */
export function runOpenSsh(o: { port: number; user: string; key?: string; input: string | Buffer; options?: string[]; timeoutMs?: number }): Promise<SshRun> {
  return new Promise((resolve, reject) => {
    const args = ['-s', '-p', String(o.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'LogLevel=ERROR', '-F', '/dev/null',
      ...(o.key ? ['-i', o.key] : []), ...(o.options ?? []).flatMap((x) => ['-o', x]), `${o.user}@127.0.0.1`, 'netconf'];
    const ssh = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let so = '';
    let se = '';
    ssh.stdout.setEncoding('utf8').on('data', (d: string) => { so += d; });
    ssh.stderr.setEncoding('utf8').on('data', (d: string) => { se += d; });
    const timer = setTimeout(() => {
      ssh.kill('SIGKILL');
      reject(new Error(`ssh did not finish\n${so}\n${se}`));
    }, o.timeoutMs ?? 30000);
    ssh.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: so, stderr: se });
    });
    ssh.stdin.on('error', () => undefined); // ssh may exit before reading all of it (login refused)
    ssh.stdin.end(o.input);
  });
}
