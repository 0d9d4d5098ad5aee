// The C build of the lab's TCP load tool (lab/tcp-load.c, the twin of lab/tcp-load.ts): built
// once per process with the system C compiler into a temp dir that is removed at exit. The
// takeover benchmark uses it so that the test clients are not the bottleneck (node.js clients
// sent the kill wave up to 4 s late at 50,000 flows on a shared 2-core machine).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lab/tcp-load.c');

let built: string | undefined;

/** The path of the built tool; throws with the compiler's words when it cannot be built. */
export function tcpLoadBinary(): string {
  if (built !== undefined) return built;
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-tcp-load-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const binary = path.join(dir, 'tcp-load');
  try {
    execFileSync('cc', ['-O2', '-o', binary, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot build ${SOURCE} (a C compiler is needed: apt-get install build-essential): ${stderr || String(err)}`, { cause: err });
  }
  built = binary;
  return binary;
}
