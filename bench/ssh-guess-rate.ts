// How many passwords one source can try per second against the agent's SSH server: a `tandem start`
// child process, and from 127.0.0.1 `BENCH_SSH_GUESS_PARALLEL` (4) connections at a time, each
// trying wrong passwords until the server closes it, then reconnecting, for
// `BENCH_SSH_GUESS_SECONDS` (30) seconds. Guesses are counted by the server (its "authentication
// failed" log lines, i.e. password checks made), connections refused at accept by the client.
// Modes: per-source penalties off, then the defaults (authfail:5 min:15 max:600). With
// BENCH_TANDEM_CLI=/path/to/dist/cli/cli.js it measures that build instead (the "before").
// Run: `npm run bench -- ssh-guess-rate`.
import ssh2 from 'ssh2';
import { startTandem } from '../test/helpers/tandem-process.js';

const SECONDS = Number(process.env.BENCH_SSH_GUESS_SECONDS ?? 30);
const PARALLEL = Number(process.env.BENCH_SSH_GUESS_PARALLEL ?? 4);
/** A refused connection is retried after this pause (an attacker would spin; a benchmark on a shared machine does not). */
const RETRY_PAUSE_MS = 50;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One connection trying passwords until closed; resolves how it went. */
function attempt(port: number, user: string, next: () => string): Promise<{ tried: number; handshake: boolean }> {
  const conn = new ssh2.Client();
  let tried = 0;
  let handshake = false;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      conn.end();
      resolve({ tried, handshake });
    };
    const timer = setTimeout(done, 60000);
    conn.on('handshake', () => { handshake = true; });
    conn.on('error', done);
    conn.on('close', done);
    conn.on('ready', done);
    conn.connect({
      host: '127.0.0.1', port, username: user, readyTimeout: 30000, tryKeyboard: false,
      authHandler: (_methods, _partial, cb) => {
        tried += 1;
        cb({ type: 'password', username: user, password: next() });
        return undefined;
      },
    });
  });
}

async function measure(mode: string, args: string[], cli: string | undefined): Promise<Record<string, unknown>> {
  const t = await startTandem({ args, cli, env: { TANDEM_LOG_LEVEL: 'info' } });
  try {
    let n = 0;
    const next = () => `guess-${n++}`;
    let connections = 0;
    let refused = 0;
    let clientTries = 0;
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(Array.from({ length: PARALLEL }, async () => {
      while (Date.now() < end) {
        const r = await attempt(t.port, t.username, next);
        connections += 1;
        clientTries += r.tried;
        if (!r.handshake) {
          refused += 1;
          await sleep(RETRY_PAUSE_MS);
        }
      }
    }));
    await sleep(500);
    // This build logs "authentication failed" with the method; older ones "password rejected".
    const checks = t.stdout().split('\n').filter((l) => (l.includes('"authentication failed"') && l.includes('"method":"password"'))
      || l.includes('"password rejected"')).length;
    return {
      mode, seconds: SECONDS, parallel: PARALLEL, password_checks: checks, guesses_per_s: Math.round((checks / SECONDS) * 10) / 10,
      connections, refused_at_accept: refused, checks_per_connection: Math.round((checks / Math.max(1, connections - refused)) * 100) / 100,
      client_attempts: clientTries,
    };
  } finally {
    await t.stop();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const cli = process.env.BENCH_TANDEM_CLI;
  const modes: [string, string[]][] = cli ? [['given build', []]]
    : [['per-source penalties off', ['--per-source-penalties', 'off']], ['defaults (authfail:5 min:15 max:600)', []]];
  const out: Record<string, unknown>[] = [];
  for (const [mode, args] of modes) {
    process.stderr.write(`bench ssh-guess-rate: ${mode}, ${SECONDS} s\n`);
    out.push(await measure(mode, args, cli));
  }
  return { cli: cli ?? 'this build', modes: out };
}
