// Run Python NETCONF clients (Debian's python3-ncclient, under /usr/bin/python3) from tests: the
// script reads one JSON object on stdin and prints one JSON object on its last stdout line.
import { spawn } from 'node:child_process';

export const DEBIAN_PYTHON = '/usr/bin/python3';

export interface PythonResult<T> {
  result: T;
  stderr: string;
}

/** Run `code` with `input` as JSON on stdin; bounded by timeoutMs (the child is killed by PID). */
export function runPython<T = unknown>(code: string, input: unknown, timeoutMs = 60000): Promise<PythonResult<T>> {
  return new Promise((resolve, reject) => {
    const child = spawn(DEBIAN_PYTHON, ['-c', code], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`python client timed out after ${timeoutMs} ms\n${err}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) {
        reject(new Error(`python client exited ${code}\nstdout: ${out}\nstderr: ${err}`));
        return;
      }
      try {
        resolve({ result: JSON.parse(last) as T, stderr: err });
      } catch {
        reject(new Error(`python client printed no JSON result\nstdout: ${out}\nstderr: ${err}`));
      }
    });
    child.stdin.end(JSON.stringify(input));
  });
}

/** ncclient connect arguments for a test agent. */
export function ncclientConnectArgs(t: { host: string; port: number; username: string; password: string }) {
  return { host: t.host, port: t.port, username: t.username, password: t.password };
}

/**
 * Python prelude: `connect()` opens an ncclient manager from the JSON input `inp`
 * (no host-key check, no agent or key files: password only).
 */
export const NCCLIENT_PRELUDE = `
import json, sys
from ncclient import manager
from ncclient.operations.rpc import RPCError
inp = json.load(sys.stdin)
def connect(**kw):
    return manager.connect(host=inp['host'], port=inp['port'], username=inp['username'], password=inp['password'],
                           hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30, **kw)
`;
