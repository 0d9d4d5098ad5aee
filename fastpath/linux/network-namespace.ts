// Running a synchronous piece of code inside a named network namespace (`ip netns` names, i.e.
// /run/netns/<name>). A socket belongs to the namespace it was created in for its whole life, so
// the engine enters the VRF's namespace only to create its netlink sockets, then returns: setns()
// switches the calling thread only, and nothing else runs on the main thread meanwhile.
import { closeSync, existsSync, openSync } from 'node:fs';
import sys from 'syscall-napi';

const CLONE_NEWNET = 0x40000000n;
const NETNS_DIR = '/run/netns';

export function namespacePath(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === '.' || name === '..') {
    throw new Error(`invalid network namespace name ${JSON.stringify(name)}`);
  }
  return `${NETNS_DIR}/${name}`;
}

export function namespaceExists(name: string): boolean {
  return existsSync(namespacePath(name));
}

function setns(fd: number): void {
  sys.syscall.sync(sys.__NR_setns, BigInt(fd), CLONE_NEWNET);
}

/** Runs `fn` with the calling thread inside namespace `name` (undefined: the current one). */
export function inNamespace<T>(name: string | undefined, fn: () => T): T {
  if (name === undefined) return fn();
  const path = namespacePath(name);
  if (!existsSync(path)) throw new Error(`network namespace ${name} does not exist (no ${path})`);
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = openSync(path, 'r');
    try {
      setns(target);
    } finally {
      closeSync(target);
    }
    try {
      return fn();
    } finally {
      setns(home);
    }
  } finally {
    closeSync(home);
  }
}
