// A hand-driven sync client for the bad-input and security tests: it opens TCP from a chosen
// address and runs the v2 handshake step by step (or stops part-way), recording every byte the
// listener sends, so a test can see exactly what an unproven client receives.
import { connect, type Socket } from 'node:net';
import { EMPTY, FrameDecoder, FrameEncoder, newFrameCipher } from '../../sync/frame-codec.js';
import {
  decodeChallenge, decodeRefuse, decodeWelcome, encodeHello, encodeIdentity, newNonce, proofMatches, secretKey, sessionKeys,
} from '../../sync/handshake.js';
import { type Frame, FrameType } from '../../sync/protocol.js';

export class RawSyncClient {
  readonly encoder = new FrameEncoder();
  readonly decoder = new FrameDecoder();
  /** Every byte received from the listener, in order. */
  readonly received: Buffer[] = [];
  readonly frames: Frame[] = [];
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received.push(d);
      try {
        for (let fs = this.decoder.push(d); fs.length > 0; fs = this.decoder.push(EMPTY)) this.frames.push(...fs);
      } catch {
        // the test looks at the raw bytes
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(host: string, port: number, localAddress: string): Promise<RawSyncClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port, localAddress }, () => resolve(new RawSyncClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wait (bounded) until `cond` holds; false when the connection closed or time ran out first. */
  async until(cond: () => boolean, ms = 5000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (this.closed || Date.now() > end) return cond();
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }

  send(type: FrameType, payload: Buffer): void {
    for (const p of this.encoder.encode(type, payload)) this.socket.write(p);
  }

  receivedBytes(): Buffer {
    return Buffer.concat(this.received);
  }

  /** Hello, wait for the challenge; returns the payloads the keys are derived from. */
  async hello(vrf = 'main', worker = 0, workers = 1): Promise<{ hello: Buffer; challenge: Buffer }> {
    const hello = encodeHello({ vrf, worker, workers, nonce: newNonce() });
    this.send(FrameType.Hello, hello);
    if (!(await this.until(() => this.frames.length > 0))) throw new Error('no answer to hello');
    const f = this.frames.shift() as Frame;
    if (f.type === FrameType.Refuse) throw new Error(`refused: ${decodeRefuse(f.payload).reason}`);
    if (f.type !== FrameType.Challenge) throw new Error(`expected challenge, got ${f.type}`);
    decodeChallenge(f.payload);
    return { hello, challenge: f.payload };
  }

  /**
   * The whole handshake with `secret`. Resolves when the listener's welcome verified; rejects
   * with the refusal when it refuses the proof.
   */
  async authenticate(secret: string, vrf = 'main', worker = 0, workers = 1): Promise<void> {
    const { hello, challenge } = await this.hello(vrf, worker, workers);
    const keys = sessionKeys(await secretKey(secret, vrf), hello, challenge);
    this.send(FrameType.Auth, keys.clientProof);
    this.encoder.setCipher(newFrameCipher(keys.clientToServer));
    this.decoder.setCipher(newFrameCipher(keys.serverToClient));
    if (!(await this.until(() => this.frames.length > 0))) throw new Error('closed after auth without an answer');
    const f = this.frames.shift() as Frame;
    if (f.type === FrameType.Refuse) throw new Error(`refused: ${decodeRefuse(f.payload).reason}`);
    if (f.type !== FrameType.Welcome) throw new Error(`expected welcome, got ${f.type}`);
    if (!proofMatches(decodeWelcome(f.payload).proof, keys.serverProof)) throw new Error('welcome proof does not verify');
    this.send(FrameType.Identity, encodeIdentity({ nodeId: 'raw-client', fingerprint: Buffer.alloc(32) }));
  }

  /** Resolves when the listener closed the connection (bounded); throws otherwise. */
  async closedByServer(what: string, ms = 5000): Promise<void> {
    this.socket.resume();
    if (!(await this.until(() => this.closed, ms))) {
      this.socket.destroy();
      throw new Error(`server did not close the connection (${what})`);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
