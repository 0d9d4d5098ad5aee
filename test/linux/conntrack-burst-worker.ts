// Worker of test/linux/conntrack-event-thread.test.ts: creates conntracks in a namespace through
// ctnetlink on a thread of its own, so the kernel produces events while the test's own event loop
// is held (the engine's side of the event thread blocked). Sets control[0] to the conntracks
// created (or -1 on a failure) and wakes the waiter.
import { parentPort, workerData } from 'node:worker_threads';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import type { ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';

const { namespace, count, dport, control } = workerData as { namespace: string; count: number; dport: number; control: SharedArrayBuffer };
const done = new Int32Array(control);

function writes(n: number): ConntrackWrite[] {
  return Array.from({ length: n }, (_, i) => ({
    orig: { proto: 'tcp' as const, src: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: '192.168.50.9', sport: 20000 + (i % 20000), dport },
    reply: { proto: 'tcp' as const, src: '192.168.50.9', dst: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, sport: dport, dport: 20000 + (i % 20000) },
    state: 'established' as const, timeout: 600, mark: 0,
  }));
}

const nl = new ConntrackNetlink({ namespace });
nl.create(writes(count)).then((r) => {
  Atomics.store(done, 0, r.failures.length === 0 ? count : -1);
  parentPort?.postMessage({ failures: r.failures.length });
}, (err: unknown) => {
  Atomics.store(done, 0, -1);
  parentPort?.postMessage({ error: String(err) });
}).finally(() => {
  Atomics.notify(done, 0);
  nl.close();
});
