// Network namespaces for root tests: unique names per run (tandem-t-<random>-<role>), veth links
// with addresses inside the namespaces only, processes started inside them, and a cleanup that
// removes all of it (call it from after(), it is safe to call twice and after a partial setup).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export const ROOT_SKIP_REASON = 'needs root (creates network namespaces, nftables rulesets and conntracks)';

export function run(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

export class NamespaceFixture {
  readonly prefix: string;
  readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor(tag = 't') {
    this.prefix = `tandem-${tag}-${randomBytes(3).toString('hex')}`;
  }

  /** Creates namespace <prefix>-<role> with its loopback up; returns its name. */
  add(role: string): string {
    const name = `${this.prefix}-${role}`;
    run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair between two namespaces, addresses given as CIDR (e.g. 10.77.0.1/24). */
  link(a: string, ifA: string, cidrA: string | undefined, b: string, ifB: string, cidrB: string | undefined): void {
    run('ip', ['link', 'add', 'name', ifA, 'netns', a, 'type', 'veth', 'peer', 'name', ifB, 'netns', b]);
    for (const [ns, ifname, cidr] of [[a, ifA, cidrA], [b, ifB, cidrB]] as const) {
      if (cidr) run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', ifname]);
      run('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
    }
  }

  exec(ns: string, cmd: string, args: string[], input?: string): string {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], input);
  }

  /** Starts a process inside a namespace; it is killed (by PID) in cleanup(). */
  spawn(ns: string, cmd: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * Flushes every namespace's conntrack table (a namespace already gone is skipped): what the
   * benchmarks do with their large tables before the namespaces go.
   */
  flushConntracks(): void {
    for (const ns of this.namespaces) {
      try {
        this.exec(ns, 'conntrack', ['-F']);
      } catch {
        // nothing to flush
      }
    }
  }

  async cleanup(): Promise<void> {
    for (const child of this.children) {
      if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
    }
    this.children.clear();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
  }
}

/** Reads JSON lines from a child's stdout; `next()` waits (bounded) for the next line matching a predicate. */
export class JsonLines {
  private readonly lines: Record<string, unknown>[] = [];
  private waiter?: () => void;

  constructor(child: ChildProcess) {
    if (!child.stdout) throw new Error('child has no stdout pipe');
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        return; // not one of ours
      }
      this.waiter?.();
    });
  }

  async next(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.lines.findIndex(predicate);
      if (index >= 0) return this.lines.splice(0, index + 1)[index];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching line within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(timer); resolve(); };
      });
    }
  }
}
