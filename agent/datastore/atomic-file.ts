// Crash-safe replacement of a file: write a temp file, fsync it, rename it over the target, fsync
// the directory. After a crash the target holds either the old or the new content, never a mix.
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

let counter = 0;

export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${counter++}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(content, 'utf8');
    // fdatasync: the data and the size, which is all a reader after a crash needs.
    await fh.datasync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
