// The conntrack event reader in a thread of its own (fastpath/linux/conntrack-event-thread.ts) on the
// real kernel: beside the event-loop reader (conntrack-events.ts) on the same namespace, it reports
// the same events (kind, conntrack, port) in the same order per conntrack, IPv4 and IPv6, for
// conntracks created, updated and deleted through ctnetlink; with a tiny receive buffer it counts
// the kernel's drops and reports the overrun; close() ends the thread and it closes its socket.
import { expect } from 'chai';
import { readlinkSync } from 'node:fs';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { ConntrackEventStream } from '../../fastpath/linux/conntrack-events.js';
import { ConntrackEventThread } from '../../fastpath/linux/conntrack-event-thread.js';
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
