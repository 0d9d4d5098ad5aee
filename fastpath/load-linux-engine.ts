// The linux engine is loaded only when it is chosen: its native modules (`netlink`, `syscall-napi`)
// are optional dependencies, absent where `npm ci` had no C compiler (syscall-napi builds with
// node-gyp at install). The soft engine never loads them; `--engine linux` without them fails here
// with what to install.
import type { DataplaneEngine } from './engine.js';

/** The native modules the linux engine's files import. */
export const LINUX_NATIVE_MODULES = ['netlink', 'syscall-napi'] as const;

/** Thrown when the linux engine's native modules cannot be loaded; the message says what to install. */
export class LinuxEngineUnavailableError extends Error {
  constructor(readonly reason: string) {
    super(`the linux engine needs the native modules ${LINUX_NATIVE_MODULES.join(' and ')} (optional dependencies), `
      + `which could not be loaded: ${reason}. Install a C/C++ compiler, make and python3 for node-gyp `
      + `(Debian: sudo apt-get install build-essential python3, or sudo bash .ci/setup-debian), then run npm ci again. `
      + `The soft engine (--engine soft) needs neither.`);
    this.name = 'LinuxEngineUnavailableError';
  }
}

/** The first line of a loader error, which names the module or the missing .node file. */
function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** A module that cannot be found, a .node addon that cannot be loaded, or node-gyp-build finding no build. */
function isNativeModuleFailure(err: unknown): boolean {
  const code = err !== null && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' || code === 'ERR_DLOPEN_FAILED') return true;
  const message = err instanceof Error ? err.message : String(err);
  return /No native build was found|\.node\b/.test(message) || LINUX_NATIVE_MODULES.some((m) => message.includes(m));
}

export async function createLinuxEngine(): Promise<DataplaneEngine> {
  let mod: typeof import('./linux/linux-engine.js');
  try {
    mod = await import('./linux/linux-engine.js');
  } catch (err) {
    if (isNativeModuleFailure(err)) throw new LinuxEngineUnavailableError(firstLine(err));
    throw err; // a fault of the engine's own code: not a missing install step
  }
  return new mod.LinuxEngine();
}
