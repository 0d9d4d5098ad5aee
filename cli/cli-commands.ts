// `tandem start` and `tandem user add`: argument parsing (node:util parseArgs) and what they print.
import { mkdir, readFile } from 'node:fs/promises';
import { stderr, stdout } from 'node:process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { EngineName } from '../agent/agent.js';
import type { ServerLimits } from '../agent/ssh/netconf-ssh-server.js';
import { UserStore } from '../agent/ssh/user-store.js';
import { parsePenalties } from '../agent/ssh/source-penalties.js';
import { parseStartups } from '../agent/ssh/startup-limiter.js';
import { readPassword } from './password-prompt.js';
import { LOG_FORMATS, logger, setLogFormat, type LogFormat } from '../core/log.js';
import { applyInProcessV8Flags, missingTuning, STARTUP_SETTLE_MS } from './process-tuning.js';
import { enableFilePageRelease, releaseFilePagesLater } from '../core/file-pages.js';

export const START_USAGE = `tandem start [--state-dir DIR] [--listen HOST:PORT] [--engine soft|linux] [--startup FILE] [--metrics HOST:PORT]
             [--max-sessions N] [--max-sessions-per-user N] [--reserved-sessions N]
             [--max-startups START:RATE:FULL] [--max-unauthenticated N] [--per-source-max-startups START:RATE:FULL]
             [--per-source-penalties SPEC|off] [--max-auth-attempts N] [--login-timeout SEC]
             [--hello-timeout SEC] [--idle-timeout SEC] [--max-message-size BYTES] [--max-depth N] [--max-elements N]
             [--max-output-queue BYTES] [--log-format json|pretty] [--plane worker|in-process]
  defaults: --state-dir ./tandem-state --listen 127.0.0.1:8830 --engine soft --plane worker
            --max-sessions 100 --max-sessions-per-user 64 --reserved-sessions 10 (for admin/recovery users)
            --max-startups 128:30:256 (--max-unauthenticated N sets FULL) --per-source-max-startups 64:30:96
            --per-source-penalties 'authfail:5 noauth:1 grace-exceeded:10 max:600 min:15' --max-auth-attempts 6
            --login-timeout 30 --hello-timeout 30 --idle-timeout 3600 (0: never) --max-message-size 16777216
            --max-depth 128 --max-elements 2000000 --max-output-queue 1048576
            --log-format: pretty when stdout is a terminal, else json (also TANDEM_LOG_FORMAT)
  logs go to stdout, this banner and errors to stderr
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

export function parseListen(v: string, option = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${option} must be HOST:PORT (e.g. 127.0.0.1:8830 or [::1]:8830), got '${v}'`);
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
        plane: { type: 'string', default: 'worker' },
        startup: { type: 'string' },
        metrics: { type: 'string' },
        'max-sessions': { type: 'string' },
        'max-sessions-per-user': { type: 'string' },
        'reserved-sessions': { type: 'string' },
        'max-startups': { type: 'string' },
        'per-source-max-startups': { type: 'string' },
        'per-source-penalties': { type: 'string' },
        'max-output-queue': { type: 'string' },
        'max-unauthenticated': { type: 'string' },
        'max-auth-attempts': { type: 'string' },
        'login-timeout': { type: 'string' },
        'hello-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'max-message-size': { type: 'string' },
        'max-depth': { type: 'string' },
        'max-elements': { type: 'string' },
        'log-format': { type: 'string' },
      },
    });
    const logFormat = values['log-format'];
    if (logFormat !== undefined) {
      if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) throw new UsageError(`--log-format must be json or pretty, got '${logFormat}'`);
      setLogFormat(logFormat as LogFormat);
    }
    const engine = values.engine;
    if (engine !== 'soft' && engine !== 'linux') throw new UsageError(`--engine must be soft or linux, got '${engine}'`);
    const plane = values.plane;
    if (plane !== 'worker' && plane !== 'in-process') throw new UsageError(`--plane must be worker or in-process, got '${plane}'`);
    const listen = parseListen(values.listen);
    const metrics = values.metrics === undefined ? undefined : parseListen(values.metrics, '--metrics');
    const sec = (name: string, v: string | undefined, min = 1) => {
      const n = positiveInt(name, v, min);
      return n === undefined ? undefined : n * 1000;
    };
    const parsed = <T>(name: string, v: string | undefined, parse: (v: string) => T): T | undefined => {
      if (v === undefined) return undefined;
      try {
        return parse(v);
      } catch (err) {
        throw new UsageError(`--${name}: ${(err as Error).message}`);
      }
    };
    const startups = parsed('max-startups', values['max-startups'], parseStartups);
    const limits: Partial<ServerLimits> = {
      maxSessions: positiveInt('max-sessions', values['max-sessions']),
      maxSessionsPerUser: positiveInt('max-sessions-per-user', values['max-sessions-per-user']),
      reservedSessions: positiveInt('reserved-sessions', values['reserved-sessions'], 0),
      maxStartupsStart: startups?.start,
      maxStartupsRate: startups?.rate,
      maxUnauthenticated: positiveInt('max-unauthenticated', values['max-unauthenticated']) ?? startups?.full,
      perSourceMaxStartups: parsed('per-source-max-startups', values['per-source-max-startups'], parseStartups),
      maxOutputQueueBytes: positiveInt('max-output-queue', values['max-output-queue'], 65536),
      maxAuthAttempts: positiveInt('max-auth-attempts', values['max-auth-attempts']),
      loginTimeoutMs: sec('login-timeout', values['login-timeout']),
      helloTimeoutMs: sec('hello-timeout', values['hello-timeout']),
      idleTimeoutMs: sec('idle-timeout', values['idle-timeout'], 0),
      maxSize: positiveInt('max-message-size', values['max-message-size'], 1024),
      maxDepth: positiveInt('max-depth', values['max-depth'], 8),
      maxElements: positiveInt('max-elements', values['max-elements'], 16),
    };
    for (const k of Object.keys(limits) as (keyof ServerLimits)[]) if (limits[k] === undefined) delete limits[k];
    // undefined is a value here ("off"), so it is set after the clean-up of what was not given.
    if (values['per-source-penalties'] !== undefined) {
      limits.penalties = parsed('per-source-penalties', values['per-source-penalties'], parsePenalties);
    }
    if (values.startup !== undefined) await readFile(values.startup); // a missing file is an error now, not later

    const untuned = missingTuning();
    if (untuned.length > 0) {
      logger('cli').warn({ missing: untuned }, 'started without the process tuning of bin/tandem: idle memory is ~30 MB higher (docs/memory.md)');
    }
    const v8Flags = applyInProcessV8Flags(); // before libyang is compiled (startAgent loads it)
    logger('cli').debug({ v8Flags }, 'V8 flags set in the process');
    // Loaded here so that `tandem user add` does not load the YANG and operations layers.
    const { startAgent } = await import('../agent/agent.js');
    const agent = await startAgent({ stateDir: values['state-dir'], listen, engine: engine as EngineName, startupFile: values.startup, limits, metrics, plane });
    if (process.env.TANDEM_MEMORY_TUNING !== 'off') {
      enableFilePageRelease(true); // also after a large removal (agent/datastore/libyang-renewal.ts)
      releaseFilePagesLater(STARTUP_SETTLE_MS, 'start-up');
    }
    const users = Object.keys((await new UserStore(agent.stateDir).load()).users);
    const hostFor = agent.host.includes(':') ? `[${agent.host}]` : agent.host;
    // Before the banner: whoever reads it may send SIGTERM at once.
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      stderr.write(`tandem: ${signal}, shutting down\n`);
      agent.close().then(() => process.exit(0), (err: unknown) => {
        stderr.write(`tandem: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // On stderr: stdout carries the log lines (JSON for collectors), the banner is for the person.
    stderr.write(`tandem: NETCONF over SSH on ${hostFor}:${agent.port} (state in ${agent.stateDir}, engine ${engine})\n`
      + `  connect:  ssh -s -p ${agent.port} USER@${agent.host} netconf\n`
      + `  ncclient: manager.connect(host='${agent.host}', port=${agent.port}, username=USER, password=..., hostkey_verify=False)\n`
      + `  users:    ${users.length ? users.join(', ') : 'none yet'} (add one: tandem user add NAME --password-stdin --group admin --state-dir ${agent.stateDir}; without a group: read-only)\n`
      + agent.hostKeys.map((k) => `  host key: ${k.publicKey}\n`).join('')
      + (agent.metrics ? `tandem: OpenMetrics on http://${agent.metrics.host.includes(':') ? `[${agent.metrics.host}]` : agent.metrics.host}:${agent.metrics.port}/metrics\n` : ''));

    return -1;
  }, START_USAGE);
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
      // From a pipe, one line; on a terminal, a prompt without echo (cli/password-prompt.ts).
      const password = await readPassword(name);
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
