// What a person at a terminal sees: `tandem user add --password-stdin` prompts without echo; `tandem
// start` writes human-readable log lines to a terminal and JSON lines to a pipe (or what
// --log-format says), with the banner on stderr, apart from the log lines.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TANDEM_CLI } from '../helpers/tandem-process.js';
import { PTY_AVAILABLE, runOnPty } from '../helpers/pty-run.js';
import { UserStore } from '../../agent/ssh/user-store.js';

const BANNER = 'NETCONF over SSH on 127\\.0\\.0\\.1:\\d+';

describe('terminal', function () {
  this.timeout(60000);
  let dir: string;
  before(function () {
    if (!PTY_AVAILABLE) this.skip(); // needs /usr/bin/python3 (Debian) for its pty module
  });
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-tty-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('user add --password-stdin on a terminal prompts twice and does not echo', async () => {
    const r = await runOnPty([process.execPath, TANDEM_CLI, 'user', 'add', 'erin', '--password-stdin', '--state-dir', dir], [
      { expect: 'Password for erin: ', send: 'Hidden-Pass1\r' },
      { expect: 'Retype password for erin: ', send: 'Hidden-Pass1\r' },
    ]);
    expect(r.status, r.output).to.equal(0);
    expect(r.output).to.contain('Password for erin: ');
    expect(r.output).not.to.contain('Hidden-Pass1');
    expect(r.output).to.contain("user 'erin' now has a password");
    const store = new UserStore(dir);
    await store.load();
    expect(await store.checkPassword('erin', 'Hidden-Pass1')).to.equal(true);
  });

  it('a typo in the second entry stores nothing; Backspace edits; Ctrl-C aborts', async () => {
    const typo = await runOnPty([process.execPath, TANDEM_CLI, 'user', 'add', 'erin', '--password-stdin', '--state-dir', dir], [
      { expect: 'Password for erin: ', send: 'abcX\x7fd\r' },
      { expect: 'Retype password for erin: ', send: 'abcx\r' },
    ]);
    expect(typo.status, typo.output).to.equal(1);
    expect(typo.output).to.contain('the two passwords differ; nothing stored');
    expect(typo.output).not.to.match(/abc/);
    const edited = await runOnPty([process.execPath, TANDEM_CLI, 'user', 'add', 'erin', '--password-stdin', '--state-dir', dir], [
      { expect: 'Password for erin: ', send: 'abcX\x7fd\r' },
      { expect: 'Retype password for erin: ', send: 'abcd\r' },
    ]);
    expect(edited.status, edited.output).to.equal(0);
    const store = new UserStore(dir);
    await store.load();
    expect(await store.checkPassword('erin', 'abcd')).to.equal(true);
    const interrupted = await runOnPty([process.execPath, TANDEM_CLI, 'user', 'add', 'frank', '--password-stdin', '--state-dir', dir], [
      { expect: 'Password for frank: ', send: 'secr\x03' },
    ]);
    expect(interrupted.status).to.equal(1);
    expect(interrupted.output).to.contain('interrupted');
    const users = JSON.parse(await readFile(path.join(dir, 'users.json'), 'utf8')).users as Record<string, unknown>;
    expect(Object.keys(users)).to.deep.equal(['erin']);
  });

  it('tandem start on a terminal: human-readable log lines, no JSON', async () => {
    const r = await runOnPty([process.execPath, TANDEM_CLI, 'start', '--state-dir', dir, '--listen', '127.0.0.1:0'], [
      { expect: 'INFO.{0,12}agent: NETCONF over SSH listening' },
      { expect: BANNER, signal: 15 }, // the SIGTERM handler is installed once the banner is out
    ], { env: { TANDEM_LOG_LEVEL: 'info', TANDEM_LOG_FORMAT: '' } });
    expect(r.status, r.output).to.equal(0);
    expect(r.output).to.match(/\d\d:\d\d:\d\d\.\d{3}\S*\s+\S*INFO.{0,12}agent: NETCONF over SSH listening .*port=\S*\d+/);
    expect(r.output).to.contain('\x1b[32mINFO'); // coloured on a terminal
    expect(r.output).not.to.contain('{"level"');
  });

  it('--log-format json on a terminal writes JSON lines', async () => {
    const r = await runOnPty([process.execPath, TANDEM_CLI, 'start', '--state-dir', dir, '--listen', '127.0.0.1:0', '--log-format', 'json'], [
      { expect: '"msg":"NETCONF over SSH listening"' },
      { expect: BANNER, signal: 15 },
    ], { env: { TANDEM_LOG_LEVEL: 'info', TANDEM_LOG_FORMAT: '' } });
    expect(r.status, r.output).to.equal(0);
    expect(r.output).to.match(/^\{"level":30,.*"component":"agent".*"msg":"NETCONF over SSH listening"\}\r?$/m);
  });

  it('piped: JSON lines on stdout, the banner only on stderr; --log-format pretty forces pretty lines', async () => {
    const run = (args: string[]) => new Promise<{ out: string; err: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [TANDEM_CLI, 'start', '--state-dir', dir, '--listen', '127.0.0.1:0', ...args],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TANDEM_LOG_LEVEL: 'info', TANDEM_LOG_FORMAT: '' } });
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 45000);
      child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        if (new RegExp(BANNER).test(err)) child.kill('SIGTERM');
      });
      child.on('error', reject);
      child.on('exit', () => {
        clearTimeout(timer);
        resolve({ out, err });
      });
    });
    const json = await run([]);
    expect(json.err).to.match(new RegExp(BANNER));
    expect(json.out).not.to.contain('NETCONF over SSH on');
    const lines = json.out.trim().split('\n');
    expect(lines.length).to.be.greaterThan(1);
    for (const l of lines) expect(() => JSON.parse(l) as unknown, l).not.to.throw();
    const pretty = await run(['--log-format', 'pretty']);
    expect(pretty.out).to.match(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}agent: NETCONF over SSH listening /m);
    expect(pretty.out).not.to.contain('{"level"');
    expect(pretty.out).not.to.contain('\x1b['); // no colours into a pipe
  });

  it('refuses an unknown --log-format with exit status 2', async () => {
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, [TANDEM_CLI, 'start', '--state-dir', dir, '--log-format', 'xml'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
      child.on('exit', (code) => resolve({ code, err }));
    });
    expect(r.code).to.equal(2);
    expect(r.err).to.contain("--log-format must be json or pretty, got 'xml'");
  });
});
