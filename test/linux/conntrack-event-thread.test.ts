// The conntrack event reader in a thread of its own (fastpath/linux/conntrack-event-thread.ts) on the
// real kernel: beside the event-loop reader (conntrack-events.ts) on the same namespace, it reports
// the same events (kind, conntrack, port) in the same order per conntrack, IPv4 and IPv6, for
// conntracks created, updated and deleted through ctnetlink; with a tiny receive buffer it counts
// the kernel's drops and reports the overrun; close() ends the thread and it closes its socket.
// With the engine's side held (its event loop blocked while another thread makes conntracks), the
// thread hands over at most MAX_BATCHES_IN_FLIGHT batches and the backlog stays in the socket's
// kernel buffer; when that buffer overflows, every event is either delivered or counted as dropped.
// A thread that fails (TANDEM_TEST_EVENT_THREAD_FAIL) is restarted on a new socket, the event it
// took with it is reported lost, and the events after the restart are read.
import { expect } from 'chai';
import { existsSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { ConntrackEventStream } from '../../fastpath/linux/conntrack-events.js';
import { ConntrackEventThread, MAX_BATCHES_IN_FLIGHT } from '../../fastpath/linux/conntrack-event-thread.js';
import { receiveQueueBytes } from '../../fastpath/linux/netlink-socket-options.js';
import type { ConntrackNotification, ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const TRACKING_RULESET = `table inet tandem_test {
  chain input { type filter hook input priority 0; ct state established,related accept; }
  chain postrouting { type nat hook postrouting priority 100; }
}`;

/** n conntracks: TCP and UDP over IPv4 with source NAT, every tenth TCP over IPv6 (the raw path of the batches). */
function writes(n: number, base: number): ConntrackWrite[] {
  return Array.from({ length: n }, (_, i) => {
    const six = i % 10 === 0;
    const proto = i % 3 === 0 ? 'udp' as const : 'tcp' as const;
    if (six) {
      return {
        orig: { proto: 'tcp' as const, src: '2001:db8::5', dst: '2001:db8:1::9', sport: base + i, dport: 443 },
        reply: { proto: 'tcp' as const, src: '2001:db8:1::9', dst: '2001:db8::5', sport: 443, dport: base + i },
        state: 'established' as const, timeout: 600, mark: 0,
      };
    }
    return {
      orig: { proto, src: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, dst: '192.168.50.9', sport: base + (i % 20000), dport: 443 },
      reply: { proto, src: '192.168.50.9', dst: '192.168.60.1', sport: 443, dport: 1024 + i },
      state: 'established' as const, timeout: 600, mark: 0x80000000 | 600,
    };
  });
}

const key = (n: ConntrackNotification): string => {
  const o = n.conntrack.orig;
  return `${o.proto} ${o.src} ${o.sport} ${o.dst} ${o.dport}`;
};

/** Per conntrack, its events in order. */
function byConntrack(events: ConntrackNotification[]): Map<string, ConntrackNotification[]> {
  const m = new Map<string, ConntrackNotification[]>();
  for (const e of events) {
    const list = m.get(key(e));
    if (list) list.push(e); else m.set(key(e), [e]);
  }
  return m;
}

async function until(cond: () => boolean, what: string, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts a thread that creates `count` conntracks in `ns`; `control[0]` becomes the count (or -1)
 * when it is done. The thread is ended (by its Worker handle) in `closers`.
 */
function burstWriter(ns: string, count: number, dport: number, closers: { close(): void }[]): Int32Array {
  const control = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./conntrack-burst-worker.js', import.meta.url), { workerData: { namespace: ns, count, dport, control: control.buffer } });
  closers.push({ close: () => { void worker.terminate(); } });
  return control;
}

/** Blocks this thread's event loop until the writer is done, then `settleMs` more (the reader catches up to its bound). */
function holdUntilWritten(control: Int32Array, settleMs: number): number {
  Atomics.wait(control, 0, 0, 120_000);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, settleMs);
  return Atomics.load(control, 0);
}

describe('linux: conntrack events read by a thread of their own', function () {
  this.timeout(240_000);
  const fx = new NamespaceFixture('evt');
  let ns = '';
  const closers: { close(): void }[] = [];

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ns = fx.add('a');
    fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
  });

  /** A namespace of its own: the reliable destroy events of conntracks flushed after other tests may come late. */
  const freshNamespace = (role: string): string => {
    const name = fx.add(role);
    fx.exec(name, 'nft', ['-f', '-'], TRACKING_RULESET);
    return name;
  };

  afterEach(() => {
    for (const c of closers.splice(0)) c.close();
    if (ns) fx.exec(ns, 'conntrack', ['-F']);
  });

  after(async () => {
    for (const c of closers.splice(0)) c.close();
    await fx.cleanup();
  });

  it('reports the same events as the event-loop reader, in the same order per conntrack', async () => {
    const fromLoop: ConntrackNotification[] = [];
    const fromThread: ConntrackNotification[] = [];
    const lost: number[] = [];
    const loop = ConntrackEventStream.start((n) => fromLoop.push(n), (d) => lost.push(d), { namespace: ns });
    closers.push(loop);
    const thread = ConntrackEventThread.start((n) => fromThread.push(n), (d) => lost.push(d), { namespace: ns });
    closers.push(thread);
    const nl = new ConntrackNetlink({ namespace: ns });
    closers.push(nl);
    const n = 3000;
    const ws = writes(n, 20000);
    expect((await nl.create(ws)).failures).to.deep.equal([]);
    // Updates (a TCP state change, a new mark) and deletes: every kind of event.
    const updated = ws.filter((w) => w.orig.proto === 'tcp').slice(0, 500).map((w) => ({ ...w, state: 'fin-wait' as const, mark: 7 }));
    expect((await nl.update(updated)).failures).to.deep.equal([]);
    expect((await nl.delete(ws.slice(0, 1000).map((w) => w.orig))).failures).to.deep.equal([]);
    const expected = n + updated.length + 1000;
    await until(() => fromThread.length >= expected && fromLoop.length >= expected, `${expected} events from both readers`);
    await new Promise((r) => setTimeout(r, 200)); // nothing more should come
    expect(lost, 'no events dropped').to.deep.equal([]);
    expect(fromThread).to.have.length(fromLoop.length);
    const a = byConntrack(fromLoop);
    const b = byConntrack(fromThread);
    expect(b.size).to.equal(n);
    for (const [k, list] of a) expect(b.get(k), k).to.deep.equal(list);
    expect(fromThread.filter((e) => e.kind === 'new')).to.have.length(n);
    expect(fromThread.filter((e) => e.kind === 'destroy')).to.have.length(1000);
    expect(fromThread.filter((e) => e.conntrack.orig.src.includes(':'))).to.have.length.greaterThan(0);
    expect(fromThread.every((e) => e.portId === nl.port)).to.equal(true);
    // Batched: the thread posted fewer messages than events.
    expect(thread.events).to.equal(fromThread.length);
    expect(thread.batches).to.be.within(1, thread.events);
    expect(thread.overruns).to.equal(0);
  });

  it('counts the drops of an overrun receive buffer and reports them', async () => {
    const overruns: number[] = [];
    let received = 0;
    const thread = ConntrackEventThread.start(() => { received++; }, (d) => overruns.push(d), { namespace: ns, receiveBufferBytes: 4096 });
    closers.push(thread);
    const nl = new ConntrackNetlink({ namespace: ns });
    closers.push(nl);
    // Bursts of 256 creates per datagram outrun a reader whose buffer holds a few events.
    for (let round = 0; round < 10 && overruns.length === 0; round++) {
      const ws = writes(3000, 20000).filter((w) => !w.orig.src.includes(':')).map((w) => ({ ...w, orig: { ...w.orig, dport: 1000 + round } }));
      expect((await nl.create(ws)).failures).to.deep.equal([]);
      await until(() => thread.checkDrops() > 0 || received >= ws.length * (round + 1), 'the events or their drops', 30_000);
    }
    expect(overruns.length, 'an overrun reported').to.be.greaterThan(0);
    expect(thread.overruns).to.equal(overruns.length);
    expect(thread.droppedEvents).to.equal(overruns.reduce((x, y) => x + y, 0));
  });

  it('hands over at most 32 batches while the engine is held; the backlog stays in the kernel buffer', async () => {
    const n = 100_000; // at most 2048 events a batch: at least 49 batches, more than the bound
    const ns = freshNamespace('held'); // no late (re-delivered) events of the other tests' conntracks
    let received = 0;
    let maxWaiting = 0;
    let held: { written: number; waiting: number; queued: number } | undefined;
    const overruns: number[] = [];
    let control: Int32Array | undefined; // eslint-disable-line prefer-const -- set after the listener that reads it
    let thread: ConntrackEventThread | undefined = undefined;
    thread = ConntrackEventThread.start(() => {
      received++;
      const t = thread as ConntrackEventThread;
      maxWaiting = Math.max(maxWaiting, t.batchesWaiting);
      if (!held && control) {
        // The engine's side stops taking batches while the kernel produces the rest of the burst.
        const written = holdUntilWritten(control, 500);
        held = { written, waiting: t.batchesWaiting, queued: receiveQueueBytes(t.fd) };
      }
    }, (d) => overruns.push(d), { namespace: ns });
    closers.push(thread);
    control = burstWriter(ns, n, 443, closers);
    await until(() => received >= n || (thread as ConntrackEventThread).checkDrops() > 0, `${n} events`, 120_000);
    await new Promise((r) => setTimeout(r, 300)); // nothing more should come
    expect(held, 'the engine was held').to.not.equal(undefined);
    const h = held as unknown as { written: number; waiting: number; queued: number };
    expect(h.written, 'conntracks written while held').to.equal(n);
    expect(h.waiting, 'batches waiting while held').to.equal(MAX_BATCHES_IN_FLIGHT);
    expect(h.queued, 'bytes left in the kernel socket buffer while held').to.be.greaterThan(0);
    expect(maxWaiting, 'never more batches waiting than the bound').to.be.at.most(MAX_BATCHES_IN_FLIGHT);
    expect(overruns, 'no drops: the default buffer holds the backlog').to.deep.equal([]);
    expect(received).to.equal(n);
    expect(thread.batchesWaiting).to.equal(0);
  });

  it('when the held-back backlog overflows the kernel buffer, every event is delivered or counted as dropped', async () => {
    const n = 50_000;
    const ns = freshNamespace('overflow');
    let received = 0;
    let held: { written: number; waiting: number } | undefined;
    const overruns: number[] = [];
    let control: Int32Array | undefined; // eslint-disable-line prefer-const -- set after the listener that reads it
    let thread: ConntrackEventThread | undefined = undefined;
    thread = ConntrackEventThread.start(() => {
      received++;
      const t = thread as ConntrackEventThread;
      if (!held && control) {
        const written = holdUntilWritten(control, 300);
        held = { written, waiting: t.batchesWaiting };
      }
    }, (d) => overruns.push(d), { namespace: ns, receiveBufferBytes: 1 << 20 });
    closers.push(thread);
    control = burstWriter(ns, n, 444, closers);
    const t = thread;
    await until(() => received + t.checkDrops() >= n, `${n} events delivered or dropped`, 120_000);
    await new Promise((r) => setTimeout(r, 300));
    t.checkDrops();
    expect(held, 'the engine was held').to.not.equal(undefined);
    expect((held as unknown as { written: number }).written).to.equal(n);
    expect(t.droppedEvents, 'drops counted').to.be.greaterThan(0);
    expect(overruns.length, 'overruns reported').to.be.greaterThan(0);
    expect(overruns.reduce((x, y) => x + y, 0)).to.equal(t.droppedEvents);
    expect(received + t.droppedEvents, 'delivered + dropped = produced: none lost silently').to.equal(n);
  });

  it('a failed thread is restarted on a new socket; the event it took is reported lost, later ones are read', async () => {
    const mark = join(tmpdir(), `tandem-event-thread-fail-${process.pid}`);
    const saved = process.env.TANDEM_TEST_EVENT_THREAD_FAIL;
    process.env.TANDEM_TEST_EVENT_THREAD_FAIL = mark; // the thread's environment is copied when it starts
    const received: ConntrackNotification[] = [];
    const restarts: number[] = [];
    const overruns: number[] = [];
    let thread: ConntrackEventThread;
    try {
      thread = ConntrackEventThread.start((n) => received.push(n), (d) => overruns.push(d), { namespace: ns, onReaderRestart: (lost) => restarts.push(lost) });
    } finally {
      if (saved === undefined) delete process.env.TANDEM_TEST_EVENT_THREAD_FAIL; else process.env.TANDEM_TEST_EVENT_THREAD_FAIL = saved;
    }
    closers.push(thread);
    const nl = new ConntrackNetlink({ namespace: ns });
    closers.push(nl);
    const ws = writes(200, 30000).filter((w) => !w.orig.src.includes(':'));
    try {
      expect((await nl.create(ws.slice(0, 10))).failures).to.deep.equal([]);
      await until(() => received.length === 10, '10 events before the failure');
      const firstSocket = readlinkSync(`/proc/self/fd/${thread.fd}`);
      writeFileSync(mark, '');
      // One conntrack: the thread reads its event, then fails (the hook), taking the event with it.
      expect((await nl.create(ws.slice(10, 11))).failures).to.deep.equal([]);
      await until(() => restarts.length === 1, 'the restart', 10_000);
      expect(existsSync(mark), 'the hook fired').to.equal(false);
      expect(restarts[0], 'the event the failed thread read is reported lost').to.equal(1);
      expect(thread.restarts).to.equal(1);
      expect(received, 'the failed thread\'s event was not delivered').to.have.length(10);
      expect(readlinkSync(`/proc/self/fd/${thread.fd}`), 'a new socket').to.not.equal(firstSocket);
      // Events after the restart are read by the new thread.
      expect((await nl.create(ws.slice(11))).failures).to.deep.equal([]);
      await until(() => received.length === 10 + ws.length - 11, 'the events after the restart');
      expect(overruns).to.deep.equal([]);
      thread.close();
      await thread.stopped;
    } finally {
      rmSync(mark, { force: true }); // the hook removes it when it fires
    }
  });

  it('close() ends the thread, which closes its socket', async () => {
    const thread = ConntrackEventThread.start(() => undefined, () => undefined, { namespace: ns });
    const socket = readlinkSync(`/proc/self/fd/${thread.fd}`);
    expect(socket).to.match(/^socket:/);
    thread.close();
    await thread.stopped;
    let now: string | undefined;
    try {
      now = readlinkSync(`/proc/self/fd/${thread.fd}`);
    } catch {
      now = undefined; // closed
    }
    expect(now).to.not.equal(socket);
  });
});
