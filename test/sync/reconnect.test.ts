// The sync client's reconnect (sync-client.ts): a peer that cannot be reached is retried at the
// short interval, so a link that comes back after seconds is used within about backoffMinMs (not
// after a backoff that grew while it was down); and a connection from the peer (retryNow) starts
// an attempt at once. A plain TCP listener on loopback stands in for the peer: what is measured is
// when the client's next connection attempt reaches it.
import { createServer, type Server, type Socket } from 'node:net';
import { expect } from 'chai';
import { RealClock } from '../../fastpath/clock.js';
import { FAST_RETRY_WINDOW_MS, SyncClient, type SyncClientConfig, type SyncClientListener } from '../../sync/sync-client.js';

const listener: SyncClientListener = { up: () => undefined, down: () => undefined, peerFingerprint: () => undefined, caughtUp: () => undefined };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function client(port: number, backoffMinMs: number, backoffMaxMs: number): SyncClient {
  const config: SyncClientConfig = {
    vrf: 'main', peer: 'ha2', worker: 0, workers: 1, nodeId: 'ha1', secret: 'a-shared-secret-of-the-pair', fingerprint: Buffer.alloc(32),
    source: '127.0.0.1', address: '127.0.0.1', port, queueLimit: 1000, keepaliveMs: 1000, backoffMinMs, backoffMaxMs,
  };
  const clock = new RealClock();
  return new SyncClient(config, clock, clock, listener);
}

/** Listens on `port`; resolves with the time of the first connection (and keeps it open). */
function firstConnection(port: number, servers: Server[], sockets: Socket[]): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => undefined);
      resolve(Date.now());
    });
    servers.push(server);
    server.listen(port, '127.0.0.1');
  });
}

describe('sync: reconnect when the peer is reachable again', function () {
  this.timeout(20_000);
  const servers: Server[] = [];
  const clients: SyncClient[] = [];
  const sockets: Socket[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.stop();
    for (const s of sockets.splice(0)) s.destroy();
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  });

  it('retries at the short interval while the peer is unreachable, so it connects within about backoffMinMs of its return', async () => {
    expect(FAST_RETRY_WINDOW_MS).to.be.at.least(10_000);
    const port = await freePort();
    // The defaults: 100 ms to 5 s. After 2.5 s of failures a doubling backoff would wait 0.8-3.2 s.
    const c = client(port, 100, 5000);
    clients.push(c);
    c.start();
    await new Promise((r) => setTimeout(r, 2500));
    expect(c.status).to.not.equal('established');
    const back = Date.now();
    const connectedAt = await firstConnection(port, servers, sockets);
    expect(connectedAt - back).to.be.below(400);
  });

  it('starts an attempt at once when the peer reaches us (retryNow), even during a long backoff', async () => {
    const port = await freePort();
    const c = client(port, 4000, 8000); // the next attempt would come 2-4 s after the first failure
    clients.push(c);
    c.start();
    await new Promise((r) => setTimeout(r, 300)); // the first attempt failed (nothing listens)
    const connected = firstConnection(port, servers, sockets);
    await new Promise((r) => setTimeout(r, 50));
    const asked = Date.now();
    c.retryNow();
    expect((await connected) - asked).to.be.below(200);
  });
});
