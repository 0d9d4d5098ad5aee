// Install anywhere: the agent with the soft engine runs from a copy of the project whose
// node_modules holds only the non-optional production dependencies (as `npm ci` leaves it on a
// machine with no C compiler, where syscall-napi cannot build), and `--engine linux` there fails
// with a message that says what to install. The copy is built in a temp dir; the shared
// node_modules is never touched.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { LINUX_NATIVE_MODULES } from '../../fastpath/load-linux-engine.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface PackageJson { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> }

/** Where `name` resolves from package directory `from` (nested node_modules first, then upwards). */
function resolvePackage(name: string, from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === ROOT || dir === path.dirname(dir)) throw new Error(`${name} not found from ${from}`);
  }
}

/** The package dirs (relative to ROOT) of the dependency closure, following no optional dependency. */
async function requiredClosure(): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (dir: string) => {
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
    const optional = new Set(Object.keys(pkg.optionalDependencies ?? {}));
    for (const name of Object.keys(pkg.dependencies ?? {})) {
      if (optional.has(name)) continue; // npm lists optional deps in both maps
      const found = resolvePackage(name, dir);
      const rel = path.relative(ROOT, found);
      if (seen.has(rel)) continue;
      seen.add(rel);
      await visit(found);
    }
  };
  await visit(ROOT);
  return [...seen].sort();
}

function tandem(dir: string, args: string[], input?: string) {
  return spawnSync(process.execPath, [path.join(dir, 'dist/cli/cli.js'), ...args], { cwd: dir, input, encoding: 'utf8', timeout: 60000 });
}

describe('install without the native modules (no C compiler)', function () {
  this.timeout(120000);
  let dir: string;
  let copied: string[];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-nonative-'));
    copied = await requiredClosure();
    await cp(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
    await cp(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true });
    await symlink(path.join(ROOT, 'yang'), path.join(dir, 'yang')); // YANG modules and libyang.wasm: no native code
    for (const rel of copied) await cp(path.join(ROOT, rel), path.join(dir, rel), { recursive: true, dereference: true });
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the copy holds the production dependencies and none of the native modules', () => {
    expect(copied).to.include.members(['node_modules/pino', 'node_modules/ssh2', 'node_modules/saxes']);
    for (const name of LINUX_NATIVE_MODULES) {
      expect(copied, name).not.to.include(`node_modules/${name}`);
      expect(existsSync(path.join(dir, 'node_modules', name)), name).to.equal(false);
    }
    // Nothing in the copy can build or load a .node addon of the linux engine.
    const check = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('syscall-napi')"], { cwd: dir, encoding: 'utf8' });
    expect(check.status).to.not.equal(0);
    expect(check.stderr).to.match(/Cannot find package 'syscall-napi'/);
  });

  it('tandem start --engine soft answers a NETCONF hello and get (and says it keeps its file-backed pages: no syscall-napi)', async () => {
    const stateDir = path.join(dir, 'state');
    const add = tandem(dir, ['user', 'add', 'admin', '--password-stdin', '--state-dir', stateDir], 'admin-secret\n');
    expect(add.status, add.stderr).to.equal(0);
    const child = spawn(process.execPath, [path.join(dir, 'dist/cli/cli.js'), 'start', '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--engine', 'soft'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TANDEM_LOG_LEVEL: 'info', TANDEM_LOG_FORMAT: 'json' } });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not listening after 60 s:\n${out}`)), 60000);
        const check = () => {
          const m = /NETCONF over SSH on 127\.0\.0\.1:(\d+) /.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        };
        child.stdout.on('data', check);
        child.stderr.on('data', check);
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`exited before listening:\n${out}`));
        });
      });
      const c = await NetconfTestClient.connect({ host: '127.0.0.1', port, username: 'admin', password: 'admin-secret' });
      try {
        expect(c.serverHello).to.contain('urn:ietf:params:netconf:base:1.1');
        const reply = await c.rpc('<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><datastores/></netconf-state></filter></get>');
        expect(reply).to.contain('<data');
        expect(reply).to.contain('<name>running</name>');
        expect(reply).not.to.contain('rpc-error');
      } finally {
        c.close();
      }
      // core/file-pages.ts needs syscall-napi for madvise: without it the agent runs and says why it keeps them.
      let kept: string | undefined;
      for (let i = 0; i < 100 && !kept; i++) {
        kept = out.split('\n').find((l) => l.includes('"msg":"file-backed pages kept"'));
        if (!kept) await new Promise((res) => setTimeout(res, 100));
      }
      expect(kept, out.slice(-2000)).to.be.a('string');
      expect((JSON.parse(kept!) as { reason: string }).reason).to.match(/syscall-napi cannot be loaded/);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    }
  });

  it('tandem start --engine linux fails at once and says what to install', () => {
    const r = tandem(dir, ['start', '--state-dir', path.join(dir, 'state-linux'), '--listen', '127.0.0.1:0', '--engine', 'linux']);
    expect(r.status, r.stdout + r.stderr).to.equal(1);
    expect(r.stderr).to.contain('the linux engine needs the native modules netlink and syscall-napi');
    expect(r.stderr).to.match(/Cannot find package '(netlink|syscall-napi)'/);
    expect(r.stderr).to.contain('build-essential');
    expect(r.stderr).to.contain('npm ci');
    expect(r.stdout).not.to.contain('NETCONF over SSH on');
  });

  it('with netlink installed but syscall-napi never built (its build/ absent), the message names the missing addon', async () => {
    for (const rel of ['node_modules/netlink', 'node_modules/node-gyp-build']) {
      await cp(path.join(ROOT, rel), path.join(dir, rel), { recursive: true, dereference: true });
    }
    await cp(path.join(ROOT, 'node_modules/syscall-napi'), path.join(dir, 'node_modules/syscall-napi'), {
      recursive: true, dereference: true, filter: (src) => !src.includes(`${path.sep}build`),
    });
    expect(existsSync(path.join(dir, 'node_modules/syscall-napi/build'))).to.equal(false);
    const r = tandem(dir, ['start', '--state-dir', path.join(dir, 'state-linux2'), '--listen', '127.0.0.1:0', '--engine', 'linux']);
    expect(r.status, r.stdout + r.stderr).to.equal(1);
    expect(r.stderr).to.contain('the linux engine needs the native modules netlink and syscall-napi');
    expect(r.stderr).to.match(/Cannot find module '[^']*syscall\.node'/);
  });
});
