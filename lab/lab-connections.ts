// Long-lived TCP connections client -> server across the lab (lab/tcp-load.js processes:
// one echo server and one client per 15,000 connections, as a process may hold only so many
// descriptors here), and the "ping" that checks every connection still carries data both ways.
// The processes are started through the topology's fixture, which kills them (by PID) at teardown.
// `native: true` runs the C twin of the tool (lab/tcp-load.c) instead: one epoll loop per process,
// for measurements at tens of thousands of flows where node.js clients would be the bottleneck.
import type { ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { JsonLines } from './namespace-fixture.js';
import { LAB, type LabTopology } from './lab-topology.js';
import { tcpLoadBinary } from './tcp-load-binary.js';

const TCP_LOAD = fileURLToPath(new URL('./tcp-load.js', import.meta.url));
const PER_PROCESS = 15_000;

export interface PingResult {
  /** When the ping was sent (ms since the epoch). */
  sentAt: number;
  ok: number;
  reset: number;
  /** From sentAt to the first / last answer (-1: none answered). */
  firstMs: number;
  lastMs: number;
}

export interface WaveResult {
  /** When the wave was asked for (ms since the epoch). */
  sentAt: number;
  /** Per connection, when its echo arrived (ms since the epoch), -1 when it did not. */
  answers: number[];
  reset: number;
  /** From sentAt to the last send leaving its client process. */
  lastSendMs: number;
  /** C clients only, per connection in the order of `answers`: when its send left the process (ms since the epoch, -1: not sent). */
  sendTimes?: number[];
  /** C clients only, per connection: segments TCP retransmitted on it during the wave. */
  retrans?: number[];
  /** C clients only, per client process: CPU time and involuntary context switches while issuing the sends. */
  clientSendCpuMs?: number[];
  clientSendInvoluntarySwitches?: number[];
  /**
   * C clients only, per client process: median and max of how long an echo waited in its socket
   * before the process read it. `answers` are the kernel's arrival times (SO_TIMESTAMPNS), so a
   * starved client does not make a flow look late; this says how starved it was.
   */
  clientReadLagMedianMs?: number[];
  clientReadLagMaxMs?: number[];
}

export class LabConnections {
  private readonly clients: ChildProcess[] = [];
  private readonly lines: JsonLines[] = [];
  private readonly servers: ChildProcess[] = [];
  private readonly serverLines: JsonLines[] = [];

  private constructor(readonly count: number, readonly sources: string[], private readonly native: boolean) {}

  /**
   * Opens `count` connections from the client (several source addresses) to the server; throws
   * unless all open. A second batch on the same topology passes the first one's `sources` (they
   * exist already) and another `firstPort` (each shard has a server of its own on firstPort + i).
   * `connectTo` (one shard only): the clients connect there (a virtual service) instead of the server.
   * `nice`: the client and server processes run at this nice value (they stand for other hosts,
   * which in a real network have CPUs of their own; see docs/linux-engine.md § Takeover, fourth pass).
   */
  static async open(lab: LabTopology, count: number, opts: { firstPort?: number; sources?: string[]; connectTo?: { address: string; port: number }; native?: boolean; nice?: number } = {}): Promise<LabConnections> {
    const sources = opts.sources ?? lab.clientSources(Math.ceil(count / 6000));
    const conns = new LabConnections(count, sources, opts.native === true);
    const shards = Math.ceil(count / PER_PROCESS);
    if (opts.connectTo && shards > 1) throw new Error(`connectTo supports at most ${PER_PROCESS} connections`);
    const connectTimeoutMs = count > 5000 ? 30_000 : 5000;
    const [cmd, pre] = opts.native ? [tcpLoadBinary(), []] : [process.execPath, [TCP_LOAD]];
    const opened = await Promise.all(Array.from({ length: shards }, async (_, i) => {
      const port = String((opts.firstPort ?? 7000) + i);
      const n = Math.min(PER_PROCESS, count - i * PER_PROCESS);
      // `ip netns exec` execs the tool in its own process: the PID is the tool's.
      const reniced = (child: ChildProcess) => { if (opts.nice !== undefined && child.pid !== undefined) setPriority(child.pid, opts.nice); };
      const server = lab.fx.spawn(lab.ns.server, cmd, [...pre, 'server', '0.0.0.0', port]);
      reniced(server);
      const serverOut = new JsonLines(server);
      await serverOut.next((l) => l.ready === true);
      conns.servers.push(server);
      conns.serverLines.push(serverOut);
      const client = lab.fx.spawn(lab.ns.client, cmd,
        [...pre, 'client', opts.connectTo?.address ?? LAB.server, String(opts.connectTo?.port ?? port), String(n), String(connectTimeoutMs), sources.join(',')]);
      reniced(client);
      conns.clients.push(client);
      const out = new JsonLines(client);
      conns.lines.push(out);
      return (await out.next((l) => l.ready === true, 60_000 + n * 5)).connected as number;
    }));
    const connected = opened.reduce((sum, n) => sum + n, 0);
    if (connected !== count) throw new Error(`only ${connected} of ${count} connections opened`);
    return conns;
  }

  /** Every connection sends 16 bytes and waits (at most timeoutMs) for their echo; the sums over all clients. */
  async ping(timeoutMs: number): Promise<PingResult> {
    const sentAt = Date.now();
    this.clients.forEach((c) => c.stdin?.write(`ping ${timeoutMs}\n`));
    const replies = await Promise.all(this.lines.map((l) => l.next((r) => r.ping === true, timeoutMs + 20_000)));
    const sum = (k: string) => replies.reduce((s, r) => s + (r[k] as number), 0);
    const answered = replies.filter((r) => (r.firstMs as number) >= 0);
    return {
      sentAt,
      ok: sum('ok'),
      reset: sum('reset'),
      firstMs: answered.length ? Math.min(...answered.map((r) => r.firstMs as number)) : -1,
      lastMs: answered.length ? Math.max(...answered.map((r) => r.lastMs as number)) : -1,
    };
  }

  /**
   * Every connection sends once, the sends spread evenly over `spreadMs` (so are TCP's
   * retransmissions: one burst of every connection at once would overflow the lab's veth queues,
   * a limit of the test clients, not of the routers), and waits at most `timeoutMs` for its echo.
   * `answers`: per connection, when its echo arrived (ms since the epoch), -1 when it did not.
   */
  async wave(spreadMs: number, timeoutMs: number): Promise<WaveResult> {
    const sentAt = Date.now();
    this.clients.forEach((c) => c.stdin?.write(`wave ${spreadMs} ${timeoutMs}\n`));
    const replies = await Promise.all(this.lines.map((l) => l.next((r) => r.wave === true, timeoutMs + spreadMs + 20_000)));
    const answers: number[] = [];
    let reset = 0;
    let lastSendMs = 0;
    // Only the C clients say when each send left and what TCP retransmitted (node.js has no TCP_INFO).
    const detailed = replies.every((r) => Array.isArray(r.sendAt) && Array.isArray(r.retrans));
    const sendTimes: number[] = [];
    const retrans: number[] = [];
    const clientSendCpuMs: number[] = [];
    const clientSendInvoluntarySwitches: number[] = [];
    const clientReadLagMedianMs: number[] = [];
    const clientReadLagMaxMs: number[] = [];
    for (const r of replies) {
      lastSendMs = Math.max(lastSendMs, (r.startedAt as number) + (r.sendMs as number) - sentAt);
      const startedAt = r.startedAt as number;
      for (const a of r.answers as number[]) answers.push(a < 0 ? -1 : startedAt + a);
      if (detailed) {
        for (const t of r.sendAt as number[]) sendTimes.push(t < 0 ? -1 : startedAt + t);
        retrans.push(...(r.retrans as number[]));
        clientSendCpuMs.push(r.sendCpuMs as number);
        clientSendInvoluntarySwitches.push(r.sendInvoluntarySwitches as number);
        clientReadLagMedianMs.push(r.readLagMedianMs as number);
        clientReadLagMaxMs.push(r.readLagMaxMs as number);
      }
      reset += r.reset as number;
    }
    return { sentAt, answers, reset, lastSendMs, ...(detailed ? { sendTimes, retrans, clientSendCpuMs, clientSendInvoluntarySwitches, clientReadLagMedianMs, clientReadLagMaxMs } : {}) };
  }

  /** Segments the echo servers' sockets retransmitted so far (C servers only; undefined for node.js ones). */
  async serverRetransmissions(): Promise<number | undefined> {
    if (!this.native) return undefined;
    this.servers.forEach((s) => s.stdin?.write('retrans\n'));
    const replies = await Promise.all(this.serverLines.map((l) => l.next((r) => typeof r.retrans === 'number', 20_000)));
    return replies.reduce((sum, r) => sum + (r.retrans as number), 0);
  }

  /** Every client closes all its connections (and exits); the number closed. */
  async closeConnections(): Promise<number> {
    this.clients.forEach((c) => c.stdin?.write('close\n'));
    const replies = await Promise.all(this.lines.map((l) => l.next((r) => typeof r.closed === 'number' && r.ping === undefined, 20_000)));
    return replies.reduce((s, r) => s + (r.closed as number), 0);
  }

  /** Closes the clients' stdin (they exit); the fixture kills whatever is left at teardown. */
  close(): void {
    for (const client of this.clients) client.stdin?.end();
  }
}
