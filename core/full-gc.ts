// A full garbage collection of the calling isolate (main thread or a worker), and the process-wide
// signal that a large configuration was removed, so that each isolate that held part of it (the
// main thread, the plane worker) gives its heap back now rather than when V8's memory reducer
// next runs (only after a full GC of that isolate: possibly never). docs/memory.md says why.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** A full GC of this isolate (V8's gc(), exposed once for this purpose without a node flag). */
export function fullGc(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

const listeners = new Set<() => void>();

/** `fn` runs after each large removal (agent/datastore/libyang-renewal.ts); returns an unsubscribe. */
export function onLargeRemoval(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Tells every listener that a large configuration was removed. */
export function announceLargeRemoval(): void {
  for (const fn of listeners) fn();
}
