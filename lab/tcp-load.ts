// Long-lived TCP connections for the namespace tests, run inside a namespace with `ip netns exec`:
//   node tcp-load.js server <address> <port>          echo server
//   node tcp-load.js client <address> <port> <count> [connectTimeoutMs] [source,source...]
//                                                      opens <count> connections and keeps them
// The client reads commands on stdin and answers with one JSON line each:
//   ping <timeoutMs>  every connection sends 16 bytes and waits for their echo
//                     -> {"ping":true,"firstMs":..,"medianMs":..,"lastMs":..,"ok":n,"failed":n,"reset":n,"closed":n}
//   wave <spreadMs> <timeoutMs>
//                     connection i of n sends 16 bytes at i*spreadMs/n ms (the sends, and so TCP's
//                     retransmissions, spread instead of one burst), then waits for every echo
//                     -> {"wave":true,"startedAt":epochMs,"sendMs":ms the sends took,"answers":[ms after startedAt, -1: none],"reset":n,"closed":n}
//   close             -> {"closed":n} and exit
// The server answers `stats` with {"connections":n} and `peers` with {"peers":["addr:port>localPort",...]}.
// Both print {"ready":...} once listening / connected, and exit when stdin closes.
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

function say(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function server(address: string, port: number): void {
  const sockets = new Set<Socket>();
  const srv = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (data) => socket.write(data));
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  srv.listen({ host: address, port, backlog: 65535 }, () => say({ ready: true, port }));
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      if (line.trim() === 'stats') say({ connections: sockets.size });
      if (line.trim() === 'peers') say({ peers: [...sockets].map((s) => `${s.remoteAddress}:${s.remotePort}>${s.localPort}`) });
    })
    .on('close', () => { for (const s of sockets) s.destroy(); srv.close(); process.exit(0); });
}

interface Tracked { socket: Socket; sent: number; received: number; reset: boolean; closed: boolean; answeredAt: number }

async function client(address: string, port: number, count: number, connectTimeoutMs: number, sources: string[]): Promise<void> {
  const conns: Tracked[] = [];
  let failed = 0;
  const CONCURRENCY = 256;
  for (let start = 0; start < count; start += CONCURRENCY) {
    const wave = Array.from({ length: Math.min(CONCURRENCY, count - start) }, (_, i) => new Promise<void>((resolve) => {
      // Spread over the source addresses: one address has only ~28,000 ephemeral ports.
      const localAddress = sources.length > 0 ? sources[(start + i) % sources.length] : undefined;
      const socket = connect({ host: address, port, localAddress });
      const t: Tracked = { socket, sent: 0, received: 0, reset: false, closed: false, answeredAt: 0 };
      const timer = setTimeout(() => { socket.destroy(); }, connectTimeoutMs);
      socket.once('connect', () => { clearTimeout(timer); conns.push(t); resolve(); });
      socket.on('data', (d) => {
        t.received += d.length;
        if (t.received >= t.sent && t.answeredAt === 0) t.answeredAt = Date.now();
      });
      socket.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'ECONNRESET') t.reset = true; });
      socket.on('close', () => { t.closed = true; clearTimeout(timer); if (!conns.includes(t)) { failed++; resolve(); } });
    }));
    await Promise.all(wave);
  }
  say({ ready: true, connected: conns.length, failed });

  const rl = createInterface({ input: process.stdin });
  rl.on('close', () => { for (const c of conns) c.socket.destroy(); process.exit(0); });
  for await (const line of rl) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'ping') {
      const timeoutMs = Number(arg ?? 10_000);
      const payload = Buffer.alloc(16, 0x61);
      const started = Date.now();
      for (const c of conns) {
        c.answeredAt = 0;
        if (!c.closed) { c.socket.write(payload); c.sent += payload.length; }
      }
      const deadline = Date.now() + timeoutMs;
      const answered = () => conns.every((c) => c.closed || c.received >= c.sent);
      while (!answered() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const delays = conns.filter((c) => !c.closed && c.received >= c.sent).map((c) => c.answeredAt - started).sort((a, b) => a - b);
      say({
        ping: true,
        // Milliseconds from the send to the first, the median and the last answer.
        firstMs: delays[0] ?? -1,
        medianMs: delays[Math.floor(delays.length / 2)] ?? -1,
        lastMs: delays[delays.length - 1] ?? -1,
        ok: conns.filter((c) => !c.closed && c.received >= c.sent).length,
        failed: conns.filter((c) => c.closed || c.received < c.sent).length,
        reset: conns.filter((c) => c.reset).length,
        closed: conns.filter((c) => c.closed).length,
      });
    } else if (cmd === 'wave') {
      const parts = line.trim().split(/\s+/);
      const spreadMs = Number(parts[1] ?? 100);
      const timeoutMs = Number(parts[2] ?? 10_000);
      const payload = Buffer.alloc(16, 0x62);
      const startedAt = Date.now();
      for (const c of conns) c.answeredAt = 0;
      const n = conns.length;
      for (let i = 0; i < n;) {
        const wait = startedAt + Math.floor((i * spreadMs) / n) - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        for (; i < n && startedAt + Math.floor((i * spreadMs) / n) <= Date.now(); i++) {
          const c = conns[i];
          if (!c.closed) { c.socket.write(payload); c.sent += payload.length; }
        }
      }
      // How late the last send left this process (a starved client sends late: the figures say so).
      const sendMs = Date.now() - startedAt;
      const deadline = startedAt + timeoutMs;
      const answered = () => conns.every((c) => c.closed || c.received >= c.sent);
      while (!answered() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      say({
        wave: true,
        startedAt,
        sendMs,
        answers: conns.map((c) => (!c.closed && c.received >= c.sent && c.answeredAt > 0 ? c.answeredAt - startedAt : -1)),
        reset: conns.filter((c) => c.reset).length,
        closed: conns.filter((c) => c.closed).length,
      });
    } else if (cmd === 'close') {
      for (const c of conns) c.socket.destroy();
      say({ closed: conns.length });
      process.exit(0);
    }
  }
}

const [mode, address, portText, countText, timeoutText, sourcesText] = process.argv.slice(2);
const port = Number(portText);
if (!address || !Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: tcp-load.js server|client <address> <port> [count]\n');
  process.exit(2);
}
if (mode === 'server') server(address, port);
else if (mode === 'client') void client(address, port, Number(countText ?? 1), Number(timeoutText ?? 10_000), sourcesText ? sourcesText.split(',') : []);
else { process.stderr.write(`unknown mode ${mode}\n`); process.exit(2); }
