// A sync link that a test can cut and bring back without touching either node: a TCP relay on
// loopback that listens on one address and connects to the target from a given source address
// (so the target sees the peer address it was configured with). cut() closes the listener and
// every relayed connection (new connects are refused, as with a link that is down and a peer
// that answers RST); restore() listens again. Both nodes keep running with all their state.
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpLinkProxy {
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  /** Connections relayed since the start (tests check the link was used). */
  relayed = 0;

  constructor(
    private readonly listenHost: string,
    private readonly port: number,
    private readonly targetHost: string,
    private readonly targetPort: number,
    private readonly sourceHost: string,
  ) {}

  async restore(): Promise<void> {
    if (this.server) return;
    const server = createServer((inbound) => {
      this.relayed++;
      const outbound = connect({ host: this.targetHost, port: this.targetPort, localAddress: this.sourceHost });
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.setNoDelay(true);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.listenHost, () => resolve());
    });
  }

  /** The link goes down: no new connection, and every relayed one is reset. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
