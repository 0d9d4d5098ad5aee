// An `nft -f -` process started ahead of time in a VRF's namespace, blocked reading its script
// from stdin. A backup keeps one ready so that the switch to master only writes the (small) guard
// removal and closes stdin: no fork, exec, namespace entry or library loading between the VRRP
// notification and the kernel forwarding (those cost 30 ms on an idle machine and several hundred
// on a loaded one). If the process is gone when needed, the caller runs nft the ordinary way.
import { spawn, type ChildProcess } from 'node:child_process';
import { logger } from '../../core/log.js';

const log = logger('linux-engine');

export class PrimedNft {
  private readonly child: ChildProcess;
  private readonly exited: Promise<{ code: number | null; stderr: string }>;
  private used = false;
  private dead = false;

  constructor(readonly namespace: string | undefined) {
    const [cmd, args] = namespace === undefined ? ['nft', ['-f', '-']] : ['ip', ['netns', 'exec', namespace, 'nft', '-f', '-']];
    this.child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 4096) stderr += d; });
    this.child.stdin?.on('error', () => undefined); // reported through the exit code
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => { this.dead = true; resolve({ code: -1, stderr: err.message }); });
      this.child.once('exit', (code) => { this.dead = true; resolve({ code, stderr }); });
    });
  }

  /** Whether it can still take a script. */
  get ready(): boolean {
    return !this.used && !this.dead;
  }

  /** Gives it its script; resolves once nft applied it (one transaction), rejects with nft's message. */
  async run(script: string): Promise<void> {
    if (!this.ready) throw new Error('primed nft process already used or gone');
    this.used = true;
    this.child.stdin?.end(script);
    const { code, stderr } = await this.exited;
    if (code !== 0) throw new Error(`nft -f -${this.namespace ? ` (namespace ${this.namespace})` : ''} failed (${code}): ${stderr.trim()}`);
  }

  /** Ends it unused (its own child, by PID). */
  discard(): void {
    if (this.used || this.dead) return;
    this.used = true;
    if (!this.child.kill('SIGKILL')) log.debug({ pid: this.child.pid }, 'primed nft process already gone');
  }
}
