// Where the repository lives, wherever this file runs from (yang/libyang/ under ts-node, dist/yang/libyang/
// after tsc): the nearest ancestor holding package.json. The wasm and YANG modules are found relative to it.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function projectRoot(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  // Bounded walk: a path has at most a few dozen components.
  for (let i = 0; i < 64; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'yang'))) {
      cached = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`tandem project root (directory with package.json and yang/) not found above ${fileURLToPath(import.meta.url)}`);
}
