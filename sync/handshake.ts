// The authenticated hello. The client (an npf_eventN connection) sends HELLO with a fresh nonce;
// the server answers HELLO_ACK with its own nonce and a proof that it knows the shared secret; the
// client checks it and answers AUTH with its proof. Both then derive the session key that MACs
// every later frame, so a peer without the secret can neither insert conntracks nor hijack an
// authenticated connection. Proofs are HMAC-SHA256 over both nonces, the VRF and the worker index,
// with distinct labels per direction (no reflection).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SyncProtocolError } from './protocol.js';

export const NONCE_BYTES = 16;
export const FINGERPRINT_BYTES = 32;
const PROOF_BYTES = 32;

export interface Hello {
  nodeId: string;
  vrf: string;
  worker: number;
  workers: number;
  fingerprint: Buffer;
  nonce: Buffer;
}

export interface HelloAck {
  nodeId: string;
  fingerprint: Buffer;
  nonce: Buffer;
  proof: Buffer;
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length === 0 || b.length > 255) throw new SyncProtocolError(`string of ${b.length} bytes (1..255 allowed)`);
  return Buffer.concat([Buffer.from([b.length]), b]);
}

class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer, private readonly what: string) {}
  bytes(n: number): Buffer {
    if (this.off + n > this.buf.length) throw new SyncProtocolError(`truncated ${this.what}`);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return Buffer.from(b);
  }
  u16(): number {
    return this.bytes(2).readUInt16BE(0);
  }
  str(): string {
    const n = this.bytes(1)[0] as number;
    if (n === 0) throw new SyncProtocolError(`empty string in ${this.what}`);
    const b = this.bytes(n);
    const s = b.toString('utf8');
    if (Buffer.byteLength(s) !== n) throw new SyncProtocolError(`invalid UTF-8 in ${this.what}`);
    return s;
  }
  end(): void {
    if (this.off !== this.buf.length) throw new SyncProtocolError(`${this.buf.length - this.off} trailing bytes in ${this.what}`);
  }
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n);
  return b;
}

export function encodeHello(h: Hello): Buffer {
  return Buffer.concat([str(h.nodeId), str(h.vrf), u16(h.worker), u16(h.workers), h.fingerprint, h.nonce]);
}

export function decodeHello(buf: Buffer): Hello {
  const r = new Reader(buf, 'hello');
  const h: Hello = {
    nodeId: r.str(),
    vrf: r.str(),
    worker: r.u16(),
    workers: r.u16(),
    fingerprint: r.bytes(FINGERPRINT_BYTES),
    nonce: r.bytes(NONCE_BYTES),
  };
  r.end();
  if (h.workers < 1 || h.worker >= h.workers) throw new SyncProtocolError(`bad worker ${h.worker} of ${h.workers}`);
  return h;
}

export function encodeHelloAck(a: HelloAck): Buffer {
  return Buffer.concat([str(a.nodeId), a.fingerprint, a.nonce, a.proof]);
}

export function decodeHelloAck(buf: Buffer): HelloAck {
  const r = new Reader(buf, 'hello-ack');
  const a: HelloAck = { nodeId: r.str(), fingerprint: r.bytes(FINGERPRINT_BYTES), nonce: r.bytes(NONCE_BYTES), proof: r.bytes(PROOF_BYTES) };
  r.end();
  return a;
}

export function decodeAuth(buf: Buffer): Buffer {
  const r = new Reader(buf, 'auth');
  const proof = r.bytes(PROOF_BYTES);
  r.end();
  return proof;
}

export function encodeRefuse(reason: string): Buffer {
  return Buffer.from(reason.slice(0, 200), 'utf8');
}

export function decodeRefuse(buf: Buffer): string {
  return buf.toString('utf8', 0, Math.min(buf.length, 200));
}

/** What both proofs bind: the two nonces, the VRF and the worker index. */
export interface HandshakeBinding {
  clientNonce: Buffer;
  serverNonce: Buffer;
  vrf: string;
  worker: number;
}

function mac(secret: string, label: string, b: HandshakeBinding): Buffer {
  return createHmac('sha256', secret)
    .update(label)
    .update(b.clientNonce)
    .update(b.serverNonce)
    .update(str(b.vrf))
    .update(u16(b.worker))
    .digest();
}

export function serverProof(secret: string, b: HandshakeBinding): Buffer {
  return mac(secret, 'tandem-sync server proof', b);
}

export function clientProof(secret: string, b: HandshakeBinding): Buffer {
  return mac(secret, 'tandem-sync client proof', b);
}

export function sessionKey(secret: string, b: HandshakeBinding): Buffer {
  return mac(secret, 'tandem-sync session key', b);
}

export function proofMatches(got: Buffer, want: Buffer): boolean {
  return got.length === want.length && timingSafeEqual(got, want);
}
