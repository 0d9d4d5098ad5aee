// The handshake of a sync connection, in which the connecting side proves knowledge of the shared
// secret first and nothing derived from the secret reaches a peer that has not:
//   client -> HELLO      vrf, worker, workers, client nonce                  (clear)
//   server -> CHALLENGE  server nonce                                        (clear, nothing secret-derived)
//   client -> AUTH       HMAC(client proof key, transcript)                  (clear)
//   server    checks the proof in constant time; on failure: REFUSE "authentication failed", close
//   server -> WELCOME    HMAC(server proof key, transcript), node id, fingerprint   (first sealed frame)
//   client -> IDENTITY   node id, config fingerprint                         (sealed)
// Keys: a 32-byte secret key from scrypt(secret, vrf) computed once per secret (slow on purpose:
// a guess costs as much as here), then HKDF-SHA256 over both nonces per connection giving the two
// proof keys and one AES-256-GCM key per direction. The transcript (hello and challenge payloads)
// binds the VRF, the worker and both nonces; proofs use distinct keys per direction (no reflection).
import { createHash, createHmac, hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { frameCipherMode } from './frame-codec.js';
import { SyncProtocolError } from './protocol.js';

export const NONCE_BYTES = 32;
export const FINGERPRINT_BYTES = 32;
export const PROOF_BYTES = 32;

/** scrypt cost: about 0.1-0.3 s and 32 MiB per derivation, once per secret, off the event loop. */
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

export interface Hello {
  vrf: string;
  worker: number;
  workers: number;
  nonce: Buffer;
  /** Known once the client's sealed IDENTITY arrived (empty before). */
  nodeId: string;
  /** Known once the client's sealed IDENTITY arrived (empty before). */
  fingerprint: Buffer;
}

export const TABLE_EPOCH_BYTES = 8;

export interface Welcome {
  proof: Buffer;
  nodeId: string;
  fingerprint: Buffer;
  /**
   * The receiver's table epoch (protocol v4): random, drawn again whenever what the receiver holds
   * may differ from what it was sent (its start, a role switch). Equal to the one of the previous
   * connection: the receiver still holds what it acknowledged then, so a delta resync is enough.
   */
  tableEpoch: Buffer;
}

export interface Identity {
  nodeId: string;
  fingerprint: Buffer;
}

export enum RefuseCode {
  Refused = 0,
  AuthenticationFailed = 1,
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

export function encodeHello(h: Pick<Hello, 'vrf' | 'worker' | 'workers' | 'nonce'>): Buffer {
  return Buffer.concat([str(h.vrf), u16(h.worker), u16(h.workers), h.nonce]);
}

export function decodeHello(buf: Buffer): Hello {
  const r = new Reader(buf, 'hello');
  const h: Hello = { vrf: r.str(), worker: r.u16(), workers: r.u16(), nonce: r.bytes(NONCE_BYTES), nodeId: '', fingerprint: Buffer.alloc(0) };
  r.end();
  if (h.workers < 1 || h.worker >= h.workers) throw new SyncProtocolError(`bad worker ${h.worker} of ${h.workers}`);
  return h;
}

export function encodeChallenge(serverNonce: Buffer): Buffer {
  return Buffer.from(serverNonce);
}

export function decodeChallenge(buf: Buffer): Buffer {
  const r = new Reader(buf, 'challenge');
  const nonce = r.bytes(NONCE_BYTES);
  r.end();
  return nonce;
}

export function decodeAuth(buf: Buffer): Buffer {
  const r = new Reader(buf, 'auth');
  const proof = r.bytes(PROOF_BYTES);
  r.end();
  return proof;
}

export function encodeWelcome(w: Welcome): Buffer {
  if (w.tableEpoch.length !== TABLE_EPOCH_BYTES) throw new SyncProtocolError(`table epoch of ${w.tableEpoch.length} bytes`);
  return Buffer.concat([w.proof, str(w.nodeId), w.fingerprint, w.tableEpoch]);
}

export function decodeWelcome(buf: Buffer): Welcome {
  const r = new Reader(buf, 'welcome');
  const w: Welcome = { proof: r.bytes(PROOF_BYTES), nodeId: r.str(), fingerprint: r.bytes(FINGERPRINT_BYTES), tableEpoch: r.bytes(TABLE_EPOCH_BYTES) };
  r.end();
  return w;
}

export function encodeIdentity(i: Identity): Buffer {
  return Buffer.concat([str(i.nodeId), i.fingerprint]);
}

export function decodeIdentity(buf: Buffer): Identity {
  const r = new Reader(buf, 'identity');
  const i: Identity = { nodeId: r.str(), fingerprint: r.bytes(FINGERPRINT_BYTES) };
  r.end();
  return i;
}

export function encodeRefuse(code: RefuseCode, reason: string): Buffer {
  return Buffer.concat([Buffer.from([code]), Buffer.from(reason.slice(0, 200), 'utf8')]);
}

export function decodeRefuse(buf: Buffer): { code: RefuseCode; reason: string } {
  const code = buf.length > 0 && buf[0] === RefuseCode.AuthenticationFailed ? RefuseCode.AuthenticationFailed : RefuseCode.Refused;
  // Shown in logs: printable ASCII only, whatever the other side sent.
  const reason = buf.toString('latin1', 1, Math.min(buf.length, 201)).replace(/[^\x20-\x7e]/g, '?');
  return { code, reason };
}

// ---- keys ----

const secretKeys = new Map<string, Promise<Buffer>>();
const MAX_CACHED_SECRETS = 64;

/**
 * The 32-byte key of (secret, vrf): scrypt, computed once per secret and VRF per process (a new
 * secret is a new cache entry; the cache keeps a bounded number of them).
 */
export function secretKey(secret: string, vrf: string): Promise<Buffer> {
  if (secret.length === 0) return Promise.reject(new SyncProtocolError('no shared-secret configured'));
  const id = createHash('sha256').update(str(vrf)).update(secret, 'utf8').digest('hex');
  let p = secretKeys.get(id);
  if (!p) {
    p = new Promise<Buffer>((resolve, reject) => {
      scrypt(Buffer.from(secret, 'utf8'), Buffer.concat([Buffer.from('tandem-sync v2 '), str(vrf)]), 32, SCRYPT, (err, key) => (err ? reject(err) : resolve(key)));
    });
    if (secretKeys.size >= MAX_CACHED_SECRETS) secretKeys.delete(secretKeys.keys().next().value as string);
    secretKeys.set(id, p);
  }
  return p;
}

/** Everything one connection derives from the secret key and the exchange. */
export interface SessionKeys {
  clientToServer: Buffer;
  serverToClient: Buffer;
  clientProof: Buffer;
  serverProof: Buffer;
}

/** HKDF over both nonces; the info binds the transcript and the cipher mode (a mismatch fails). */
export function sessionKeys(key: Buffer, helloPayload: Buffer, challengePayload: Buffer): SessionKeys {
  const transcript = createHash('sha256').update(helloPayload).update(challengePayload).digest();
  const salt = Buffer.concat([decodeHello(helloPayload).nonce, decodeChallenge(challengePayload)]);
  const info = Buffer.concat([Buffer.from(`tandem-sync v2 ${frameCipherMode()} `), transcript]);
  const okm = Buffer.from(hkdfSync('sha256', key, salt, info, 128));
  return {
    clientToServer: okm.subarray(0, 32),
    serverToClient: okm.subarray(32, 64),
    clientProof: createHmac('sha256', okm.subarray(64, 96)).update('client proof').update(transcript).digest(),
    serverProof: createHmac('sha256', okm.subarray(96, 128)).update('server proof').update(transcript).digest(),
  };
}

/** Constant-time comparison of a received proof with the expected one. */
export function proofMatches(got: Buffer, want: Buffer): boolean {
  return got.length === want.length && timingSafeEqual(got, want);
}
