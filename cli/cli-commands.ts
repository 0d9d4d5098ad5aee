// `tandem start` and `tandem user add`: argument parsing (node:util parseArgs) and what they print.
import { mkdir, readFile } from 'node:fs/promises';
import { stderr, stdin, stdout } from 'node:process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { EngineName } from '../agent/agent.js';
import type { ServerLimits } from '../agent/ssh/netconf-ssh-server.js';
import { UserStore } from '../agent/ssh/user-store.js';

export const START_USAGE = `tandem start [--state-dir DIR] [--listen HOST:PORT] [--engine soft|linux] [--startup FILE]
             [--max-sessions N] [--max-unauthenticated N] [--max-auth-attempts N] [--login-timeout SEC]
             [--hello-timeout SEC] [--idle-timeout SEC] [--max-message-size BYTES] [--max-depth N] [--max-elements N]
  defaults: --state-dir ./tandem-state --listen 127.0.0.1:8830 --engine soft
            --max-sessions 100 --max-unauthenticated 128 --max-auth-attempts 6 --login-timeout 30 --hello-timeout 30
            --idle-timeout 3600 (0: never) --max-message-size 67108864 --max-depth 128 --max-elements 2000000
`;
export const USER_USAGE = `tandem user add NAME (--password-stdin | --key FILE) [--group GROUP]... [--recovery] [--state-dir DIR]
  --group GROUP  NACM group of the user (repeatable; replaces the user's groups); the factory NACM
                 configuration gives group 'admin' every right, everyone else read-only access
  --recovery     the recovery user: never subject to NACM (RFC 8341 3.2.3)
`;

/** Exit status 2 with a message: the command line itself is wrong. */
class UsageError extends Error {}

function positiveInt(name: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  }
  return Number(v);
}

export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen must be HOST:PORT (e.g. 127.0.0.1:8830 or [::1]:8830), got '${v}'`);
  return { host: (m[1] ?? m[2])!, port };
}

async function guarded(body: () => Promise<number>, usage: string): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      stderr.write(`tandem: ${(err as Error).message}\nusage: ${usage}`);
      return 2;
    }
    throw err;
  }
}

/** Runs the agent; resolves -1 (keep running) once listening. SIGTERM/SIGINT stop it cleanly. */
export function runStart(args: string[]): Promise<number> {
  return guarded(async () => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        'state-dir': { type: 'string', default: './tandem-state' },
        listen: { type: 'string', default: '127.0.0.1:8830' },
        engine: { type: 'string', default: 'soft' },
        startup: { type: 'string' },
        'max-sessions': { type: 'string' },
        'max-unauthenticated': { type: 'string' },
        'max-auth-attempts': { type: 'string' },
        'login-timeout': { type: 'string' },
        'hello-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'max-message-size': { type: 'string' },
        'max-depth': { type: 'string' },
        'max-elements': { type: 'string' },
      },
    });
    const engine = values.engine;
    if (engine !== 'soft' && engine !== 'linux') throw new UsageError(`--engine must be soft or linux, got '${engine}'`);
    const listen = parseListen(values.listen);
    const sec = (name: string, v: string | undefined, min = 1) => {
      const n = positiveInt(name, v, min);
      return n === undefined ? undefined : n * 1000;
    };
    const limits: Partial<ServerLimits> = {
      maxSessions: positiveInt('max-sessions', values['max-sessions']),
      maxUnauthenticated: positiveInt('max-unauthenticated', values['max-unauthenticated']),
      maxAuthAttempts: positiveInt('max-auth-attempts', values['max-auth-attempts']),
      loginTimeoutMs: sec('login-timeout', values['login-timeout']),
      helloTimeoutMs: sec('hello-timeout', values['hello-timeout']),
      idleTimeoutMs: sec('idle-timeout', values['idle-timeout'], 0),
      maxSize: positiveInt('max-message-size', values['max-message-size'], 1024),
      maxDepth: positiveInt('max-depth', values['max-depth'], 8),
      maxElements: positiveInt('max-elements', values['max-elements'], 16),
    };
    for (const k of Object.keys(limits) as (keyof ServerLimits)[]) if (limits[k] === undefined) delete limits[k];
    if (values.startup !== undefined) await readFile(values.startup); // a missing file is an error now, not later

    // Loaded here so that `tandem user add` does not load the YANG and operations layers.
    const { startAgent } = await import('../agent/agent.js');
    const agent = await startAgent({ stateDir: values['state-dir'], listen, engine: engine as EngineName, startupFile: values.startup, limits });
    const users = Object.keys((await new UserStore(agent.stateDir).load()).users);
    const hostFor = agent.host.includes(':') ? `[${agent.host}]` : agent.host;
    stdout.write(`tandem: NETCONF over SSH on ${hostFor}:${agent.port} (state in ${agent.stateDir}, engine ${engine})\n`
      + `  connect:  ssh -s -p ${agent.port} USER@${agent.host} netconf\n`
      + `  ncclient: manager.connect(host='${agent.host}', port=${agent.port}, username=USER, password=..., hostkey_verify=False)\n`
      + `  users:    ${users.length ? users.join(', ') : 'none yet'} (add one: tandem user add NAME --password-stdin --group admin --state-dir ${agent.stateDir}; without a group: read-only)\n`
      + agent.hostKeys.map((k) => `  host key: ${k.publicKey}\n`).join(''));

    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      stdout.write(`tandem: ${signal}, shutting down\n`);
      agent.close().then(() => process.exit(0), (err: unknown) => {
        stderr.write(`tandem: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    return -1;
  }, START_USAGE);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** What the user's NACM standing now is, for the confirmation line. */
function access(groups: string[] | undefined, recovery: boolean): string {
  return (groups ? `; groups: ${groups.join(', ') || 'none'}` : '') + (recovery ? '; recovery user (not subject to NACM)' : '');
}

export function runUser(args: string[]): Promise<number> {
  return guarded(async () => {
    const [sub, ...rest] = args;
    if (sub !== 'add') throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand 'user ${sub}'`);
    const { values, positionals } = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: true,
      options: {
        'password-stdin': { type: 'boolean', default: false },
        key: { type: 'string' },
        group: { type: 'string', multiple: true },
        recovery: { type: 'boolean', default: false },
        'state-dir': { type: 'string', default: './tandem-state' },
      },
    });
    if (positionals.length !== 1) throw new UsageError('give exactly one user NAME');
    const name = positionals[0]!;
    if (values['password-stdin'] === (values.key !== undefined)) throw new UsageError('give either --password-stdin or --key FILE');
    const groups = values.group;
    const recovery = values.recovery;
    const store = new UserStore(path.resolve(values['state-dir']));
    await mkdir(path.dirname(store.file), { recursive: true, mode: 0o700 });
    if (values['password-stdin']) {
      // One line: the password without its line ending (as `echo pw | tandem user add ...` sends it).
      const password = (await readStdin()).replace(/\r?\n$/, '');
      if (password.length === 0) throw new UsageError('empty password on stdin');
      await store.add(name, { password, groups, recovery });
      stdout.write(`tandem: user '${name}' now has a password (scrypt hash in ${store.file})${access(groups, recovery)}\n`);
    } else {
      let publicKey: string;
      try {
        publicKey = await readFile(values.key!, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read key file: ${(err as Error).message}`);
      }
      await store.add(name, { publicKey, groups, recovery });
      stdout.write(`tandem: user '${name}' may log in with the key in ${values.key} (${store.file})${access(groups, recovery)}\n`);
    }
    return 0;
  }, USER_USAGE);
}
