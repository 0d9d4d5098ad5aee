// Fast-path benchmark (soft engine): packet processing, event delivery, the backup side of sync
// (upsert of synced conntracks), dump (the read side of a full resync) and memory per conntrack.
// `npm run bench -- fastpath`; figures and method in BENCHMARKS.md, section "Fast path".
import { availableParallelism, loadavg } from 'node:os';
import { ManualClock } from '../fastpath/clock.js';
import type { ConntrackEntry, FlowTuple } from '../fastpath/engine.js';
import { SoftEngine } from '../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, type SoftPacket } from '../fastpath/soft/vrf-dataplane.js';

const CHUNK = 50_000;

function vrfJson(name: string): Record<string, unknown> {
  return { name, 'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true } };
}

function flowAt(i: number): FlowTuple {
  // 2^16 subscribers x many ports, as a CG-NAT box sees them.
  return { proto: 'tcp', src: `10.${(i >> 8) & 255}.${i & 255}.${(i >> 16) & 255}`, dst: `198.18.${(i >> 3) & 255}.${i & 7}`, sport: 1024 + ((i * 7) % 60000), dport: 443 };
}

function entryAt(i: number): ConntrackEntry {
  const orig = flowAt(i);
  return { vrf: 'main', orig, reply: { proto: 'tcp', src: orig.dst, dst: orig.src, sport: orig.dport, dport: orig.sport }, state: 'established', timeout: 432000, alg: false, establishedAt: 1, lastActivity: 1 };
}

async function engineWith(workers: number): Promise<SoftEngine> {
  const e = await SoftEngine.create({ clock: new ManualClock(), workers });
  await e.applyVrf('main', { name: 'main', json: vrfJson('main'), conntrackMax: 4_000_000 });
  return e;
}

function progress(msg: string): void {
  process.stderr.write(`  fastpath: ${msg}\n`);
}

/** New TCP connections (3-packet handshake) per second, events delivered to a listener. */
async function handshakeRate(n: number, workers: number): Promise<{ connectionsPerSecond: number; eventsPerSecond: number }> {
  const e = await engineWith(workers);
  let events = 0;
  e.onEvent(() => { events++; });
  const t0 = performance.now();
  for (let off = 0; off < n; off += CHUNK) {
    const fs = Array.from({ length: Math.min(CHUNK, n - off) }, (_, k) => flowAt(off + k));
    const pkts: SoftPacket[] = [];
    for (const flow of fs) pkts.push({ flow, flags: TCP_SYN }, { flow, reply: true, flags: TCP_SYN | TCP_ACK }, { flow, flags: TCP_ACK });
    await e.inject('main', pkts);
  }
  await e.flush();
  const s = (performance.now() - t0) / 1000;
  await e.close();
  return { connectionsPerSecond: Math.round(n / s), eventsPerSecond: Math.round(events / s) };
}

/** Synced conntracks written per second on a backup (the engine half of sync), dump rate, memory. */
async function upsertRate(n: number, workers: number): Promise<Record<string, number>> {
  const e = await engineWith(workers);
  await e.setRole('main', 'backup');
  const before = await e.memory();
  let spent = 0; // only the engine's time, not building the test entries
  for (let off = 0; off < n; off += CHUNK) {
    const batch = Array.from({ length: Math.min(CHUNK, n - off) }, (_, k) => entryAt(off + k));
    const t = performance.now();
    await e.upsert(batch);
    spent += performance.now() - t;
  }
  const mem = await e.memory();
  const t1 = performance.now();
  let dumped = 0;
  await e.dump('main', (b) => { dumped += b.length; });
  const dumpS = (performance.now() - t1) / 1000;
  await e.close();
  if (dumped !== n || mem.conntracks !== n) throw new Error(`expected ${n} conntracks, table has ${mem.conntracks}, dump gave ${dumped}`);
  const storage = mem.tableBytes + mem.addressBytes;
  return {
    upsertPerSecond: Math.round(n / (spent / 1000)),
    dumpPerSecond: Math.round(n / dumpS),
    tableBytesPerConntrack: Math.round(mem.tableBytes / n),
    addressBytesPerConntrack: Math.round(mem.addressBytes / n),
    heapBytesPerConntrack: Math.max(0, Math.round((mem.heapUsed - before.heapUsed) / n)),
    bytesPerConntrack: Math.round((storage + Math.max(0, mem.heapUsed - before.heapUsed)) / n),
  };
}

/** Time to resize the pool from 1 to 2 workers holding n conntracks (every one moves or is re-homed). */
async function rebalanceTime(n: number): Promise<Record<string, number>> {
  const e = await engineWith(1);
  for (let off = 0; off < n; off += CHUNK) await e.upsert(Array.from({ length: Math.min(CHUNK, n - off) }, (_, k) => entryAt(off + k)));
  const t = performance.now();
  await e.setWorkers(2);
  const ms = performance.now() - t;
  const count = e.counters('main').conntracks;
  await e.close();
  if (count !== n) throw new Error(`rebalance kept ${count} of ${n} conntracks`);
  return { ms: Math.round(ms), conntracksPerSecond: Math.round(n / (ms / 1000)) };
}

export async function run(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { cpus: availableParallelism(), loadAverage1m: Number(loadavg()[0]?.toFixed(2)) };
  for (const workers of [1, 2]) {
    progress(`handshakes, 1e5 connections, ${workers} worker(s)`);
    out[`handshake_1e5_w${workers}`] = await handshakeRate(100_000, workers);
  }
  for (const n of [100_000, 1_000_000]) {
    for (const workers of [1, 2]) {
      progress(`backup upsert + dump, ${n} conntracks, ${workers} worker(s)`);
      out[`backup_${n === 100_000 ? '1e5' : '1e6'}_w${workers}`] = await upsertRate(n, workers);
    }
  }
  progress('rebalance 1 -> 2 workers with 1e6 conntracks');
  out.rebalance_1e6_w1_to_w2 = await rebalanceTime(1_000_000);
  out.loadAverage1mAfter = Number(loadavg()[0]?.toFixed(2));
  return out;
}
