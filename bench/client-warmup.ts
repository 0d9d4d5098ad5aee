// The benchmark client warmed up before it measures any server. The client is JavaScript too (ssh2
// and our framing): for its first thousand or so RPCs V8 is still compiling it, and that CPU is taken
// from the same two cores as the server's. Measured first against tandem and then against netconfd,
// the cold client would be counted in tandem's figures only. So before either server is measured,
// the client sends the benchmark's own RPCs a few thousand times to a stub NETCONF server in this
// process (ssh2, base:1.1 chunked framing, <ok/> to every rpc) that neither server shares code with.
import ssh2 from 'ssh2';
import { FrameDecoder, frameMessage } from '../agent/netconf/framing.js';
import { generateParsableKeyPair } from '../agent/ssh/key-pair.js';
import { NetconfTestClient } from '../test/helpers/netconf-client.js';

const BASE = 'urn:ietf:params:xml:ns:netconf:base:1.0';

/** An ssh2 server on 127.0.0.1 whose netconf subsystem says <ok/> to every rpc. */
async function startStubServer(): Promise<{ port: number; close(): Promise<void> }> {
  const hostKey = generateParsableKeyPair('ed25519', {}, 'bench stub host key');
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => ctx.accept());
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('subsystem', (acceptSub) => {
          const ch = acceptSub();
          const decoder = new FrameDecoder(64 * 1024 * 1024);
          ch.write(frameMessage(`<hello xmlns="${BASE}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability>`
            + `<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities><session-id>1</session-id></hello>`, 'eom'));
          let helloSeen = false;
          const answer = (events: ReturnType<FrameDecoder['push']>) => {
            for (const ev of events) {
              if (ev.kind !== 'message') continue;
              if (!helloSeen) {
                helloSeen = true;
                answer(decoder.setMode('chunked'));
                continue;
              }
              const id = /message-id="([^"]*)"/.exec(ev.text)?.[1] ?? '';
              ch.write(frameMessage(`<rpc-reply xmlns="${BASE}" message-id="${id}"><ok/></rpc-reply>`, 'chunked'));
            }
          };
          ch.on('data', (d: Buffer) => answer(decoder.push(d)));
        });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return { port, close: () => new Promise((r) => server.close(() => r())) };
}

/**
 * `count` RPCs, `rpc(i)` the i-th (an operation, sent in an <rpc>), from a fresh client against the
 * stub server, so that the client code every benchmark connection runs is compiled before any
 * server is measured. Returns what it did and the wall time it took (reported, not a figure).
 */
export async function warmUpClient(count: number, rpc: (i: number) => string): Promise<{ rpcs: number; ms: number }> {
  const started = Date.now();
  const stub = await startStubServer();
  try {
    const c = await NetconfTestClient.connect({ host: '127.0.0.1', port: stub.port, username: 'bench', password: 'x' });
    try {
      for (let i = 0; i < count; i++) await c.rpc(rpc(i));
    } finally {
      c.close();
    }
  } finally {
    await stub.close();
  }
  return { rpcs: count, ms: Date.now() - started };
}
