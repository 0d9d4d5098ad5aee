// Two network namespaces joined by one veth (the VRRP link), unique per run, removed by cleanup()
// even after a partial setup. Addresses live inside the namespaces only.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { KeepalivedProcess } from '../../ha/vrrp/keepalived-process.js';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export const ROOT_SKIP_REASON = 'needs root (creates network namespaces and runs keepalived in them)';

/** In a before hook: skip the suite, saying why, unless running as root. */
export function requireRoot(ctx: Mocha.Context): void {
  if (isRoot()) return;
  console.log(`    (skipped: ${ROOT_SKIP_REASON})`);
  ctx.skip();
}

/** Polls `cond` every 50 ms until it holds; fails with `what` after `timeoutMs` (bounded in count too). */
export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000; i++) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting until ${what}`);
}

/** A crash of keepalived: its VRRP child and its parent SIGKILLed (no priority-0 advert, no cleanup). */
export async function killKeepalived(ka: KeepalivedProcess | undefined): Promise<void> {
  const parent = ka?.pid;
  const child = await ka?.vrrpPid();
  expect(parent, 'keepalived parent PID').to.be.a('number');
  expect(child, 'keepalived VRRP child PID').to.be.a('number');
  process.kill(child!, 'SIGKILL');
  process.kill(parent!, 'SIGKILL');
}

export function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

export class VrrpNamespacePair {
  /** Namespace names, also used as VRF names (at most 15 characters). */
  readonly a: string;
  readonly b: string;
  readonly link = 'vr0';
  /** A /24 inside the namespaces: .1 on a, .2 on b. */
  readonly subnet: string;
  private created: string[] = [];

  constructor() {
    const tag = randomBytes(3).toString('hex');
    this.a = `tvrrp-${tag}-a`;
    this.b = `tvrrp-${tag}-b`;
    this.subnet = `192.168.${200 + (randomBytes(1)[0]! % 50)}`;
  }

  setup(): void {
    for (const ns of [this.a, this.b]) {
      run('ip', ['netns', 'add', ns]);
      this.created.push(ns);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    // Both ends are created directly inside their namespaces: nothing touches the host's.
    run('ip', ['-n', this.a, 'link', 'add', this.link, 'type', 'veth', 'peer', 'name', this.link, 'netns', this.b]);
    for (const [ns, host] of [[this.a, 1], [this.b, 2]] as const) {
      run('ip', ['-n', ns, 'addr', 'add', `${this.subnet}.${host}/24`, 'dev', this.link]);
      run('ip', ['-n', ns, 'link', 'set', this.link, 'up']);
    }
  }

  /** IPv4 addresses on the link in namespace `ns`. */
  addresses(ns: string): string[] {
    const out = JSON.parse(run('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', this.link])) as { addr_info?: { family: string; local: string }[] }[];
    return out.flatMap((l) => l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => a.local);
  }

  cleanup(): void {
    for (const ns of this.created.splice(0)) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
  }
}
