// Framing as an explicit state machine over buffers: the decoder is fed whatever TCP delivers and
// yields whole frames; every malformed input (bad magic, unknown version or type, oversized
// length, a data frame before the handshake, a frame that fails authentication) throws
// SyncProtocolError so the connection is closed with that reason and nothing of the frame is applied.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import {
  encodeHeader,
  type Frame,
  FrameType,
  HANDSHAKE_FRAMES,
  HEADER_BYTES,
  isFrameType,
  MAX_PAYLOAD_BYTES,
  SYNC_MAGIC,
  SYNC_VERSION,
  SyncProtocolError,
  TAG_BYTES,
} from './protocol.js';

/** One direction of a session: seals outgoing or opens incoming frames, in sequence. */
export interface FrameCipher {
  /** Bytes the cipher adds after each payload. */
  readonly overhead: number;
  /** Encrypted payload and tag, as buffers to write after the header. */
  seal(header: Buffer, payload: Buffer): Buffer[];
  /** The plaintext of `body` (payload + tag); throws SyncProtocolError when it does not verify. */
  open(header: Buffer, body: Buffer): Buffer;
}

const ALGORITHM = 'aes-256-gcm';
const NONCE_BYTES = 12;

/**
 * AES-256-GCM with the frame's sequence number in this direction as the nonce (4 zero bytes, then
 * a 64-bit counter). The receiver's counter is implicit: a replayed, reordered or missing frame
 * is opened with the wrong nonce and fails like a tampered one. A key never seals two frames with
 * one nonce: each connection has fresh keys (HKDF over both nonces) and the counter never wraps.
 */
export class AeadFrameCipher implements FrameCipher {
  readonly overhead = TAG_BYTES;
  private seq = 0n;
  private readonly nonce = Buffer.alloc(NONCE_BYTES);

  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('AES-256-GCM needs a 32-byte key');
  }

  /** Frames sealed or opened so far. */
  get sequence(): bigint {
    return this.seq;
  }

  private nextNonce(): Buffer {
    this.nonce.writeBigUInt64BE(this.seq++, 4);
    return this.nonce;
  }

  seal(header: Buffer, payload: Buffer): Buffer[] {
    const c = createCipheriv(ALGORITHM, this.key, this.nextNonce(), { authTagLength: TAG_BYTES });
    c.setAAD(header);
    const out = payload.length === 0 ? [] : [c.update(payload)];
    c.final();
    out.push(c.getAuthTag());
    return out;
  }

  open(header: Buffer, body: Buffer): Buffer {
    const seq = this.seq;
    const d = createDecipheriv(ALGORITHM, this.key, this.nextNonce(), { authTagLength: TAG_BYTES });
    d.setAAD(header);
    d.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const ct = body.subarray(0, body.length - TAG_BYTES);
    const plain = ct.length === 0 ? Buffer.alloc(0) : d.update(ct);
    try {
      d.final();
    } catch {
      // OpenSSL compares the tag in constant time; this is all a forger learns.
      throw new SyncProtocolError(`frame failed authentication (type ${header.readUInt8(3)}, ${ct.length} bytes, sequence ${seq}): tampered, replayed, reordered or wrong key`);
    }
    return plain;
  }
}

/**
 * No protection at all. Only the sync benchmark installs it (setPlaintextFramesForBenchmark), to
 * measure what encryption costs; both sides must, or the handshake's keys differ and it fails.
 */
class PlaintextFrameCipher implements FrameCipher {
  readonly overhead = 0;
  seal(_header: Buffer, payload: Buffer): Buffer[] {
    return [payload];
  }
  open(_header: Buffer, body: Buffer): Buffer {
    return body;
  }
}

let plaintextForBenchmark = false;

/** bench/sync.ts only (never reachable from the configuration): frames unencrypted from now on. */
export function setPlaintextFramesForBenchmark(on: boolean): void {
  plaintextForBenchmark = on;
}

/** The cipher mode this process runs (bound into the session keys by the handshake). */
export function frameCipherMode(): 'aes-256-gcm' | 'plaintext-benchmark' {
  return plaintextForBenchmark ? 'plaintext-benchmark' : ALGORITHM;
}

export function newFrameCipher(key: Buffer): FrameCipher {
  return plaintextForBenchmark ? new PlaintextFrameCipher() : new AeadFrameCipher(key);
}

export class FrameEncoder {
  private cipher: FrameCipher | undefined;

  /** From now on every frame is sealed (and handshake frames are refused). */
  setCipher(cipher: FrameCipher): void {
    this.cipher = cipher;
  }

  /** Header, payload and (after the handshake) tag, as buffers to write in order. */
  encode(type: FrameType, payload: Buffer): Buffer[] {
    const header = encodeHeader(type, payload.length);
    if (!this.cipher) {
      if (!HANDSHAKE_FRAMES.has(type)) throw new SyncProtocolError(`frame type ${type} before the handshake`);
      return [header, payload];
    }
    if (HANDSHAKE_FRAMES.has(type)) throw new SyncProtocolError(`handshake frame type ${type} after the handshake`);
    return [header, ...this.cipher.seal(header, payload)];
  }
}

type DecoderState = 'header' | 'body';

export const EMPTY = Buffer.alloc(0);

export class FrameDecoder {
  private state: DecoderState = 'header';
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: Buffer | undefined;
  private type: FrameType = FrameType.Keepalive;
  private bodyLength = 0;
  /** The frame being read is sealed (cipher set, not a clear refusal). */
  private sealed = false;
  private cipher: FrameCipher | undefined;
  /** Sealed frames opened so far. */
  private opened = 0;
  private failed: SyncProtocolError | undefined;

  constructor(private readonly maxPayload = MAX_PAYLOAD_BYTES) {}

  /**
   * From now on every frame must be sealed with `cipher` and handshake frames are refused, except
   * a clear Refuse before the first sealed frame (the answer to a proof the other side rejected).
   */
  setCipher(cipher: FrameCipher): void {
    this.cipher = cipher;
  }

  /** Bytes received but not yet part of a whole frame. */
  pendingBytes(): number {
    return this.buffered;
  }

  /**
   * Feed bytes; returns the whole frames they complete. Before the cipher is set it returns at
   * most one frame: call push(EMPTY) again after handling it to go on. Throws SyncProtocolError,
   * then stays failed.
   */
  push(data: Buffer): Frame[] {
    if (this.failed) throw this.failed;
    if (data.length > 0) {
      this.chunks.push(data);
      this.buffered += data.length;
    }
    const frames: Frame[] = [];
    try {
      for (;;) {
        if (this.state === 'header') {
          if (this.buffered < HEADER_BYTES) break;
          this.parseHeader(this.take(HEADER_BYTES));
        } else {
          if (this.buffered < this.bodyLength) break;
          const frame = this.parseBody(this.take(this.bodyLength));
          frames.push(frame);
          // Stop after a handshake frame: the caller may install the session cipher before the
          // bytes that follow are parsed (a peer may pipeline data right after its handshake).
          if (!this.cipher || !this.sealed) break;
        }
      }
    } catch (err) {
      this.failed = err instanceof SyncProtocolError ? err : new SyncProtocolError(String(err));
      this.chunks = [];
      this.buffered = 0;
      throw this.failed;
    }
    return frames;
  }

  private parseHeader(h: Buffer): void {
    const magic = h.readUInt16BE(0);
    if (magic !== SYNC_MAGIC) throw new SyncProtocolError(`bad magic 0x${magic.toString(16)}`);
    const version = h.readUInt8(2);
    if (version !== SYNC_VERSION) {
      throw new SyncProtocolError(`unsupported protocol version ${version} (this node speaks version ${SYNC_VERSION}; both nodes of a pair must run the same tandem release)`);
    }
    const type = h.readUInt8(3);
    if (!isFrameType(type)) throw new SyncProtocolError(`unknown frame type ${type}`);
    const length = h.readUInt32BE(4);
    if (length > this.maxPayload) throw new SyncProtocolError(`oversized frame: ${length} bytes > ${this.maxPayload}`);
    const handshake = HANDSHAKE_FRAMES.has(type);
    if (this.cipher && handshake && !(type === FrameType.Refuse && this.opened === 0)) {
      throw new SyncProtocolError(`handshake frame type ${type} after the handshake`);
    }
    if (!this.cipher && !handshake) throw new SyncProtocolError(`frame type ${type} before authentication`);
    this.header = h;
    this.type = type;
    this.sealed = this.cipher !== undefined && !handshake;
    this.bodyLength = length + (this.sealed ? (this.cipher as FrameCipher).overhead : 0);
    this.state = 'body';
  }

  private parseBody(body: Buffer): Frame {
    this.state = 'header';
    if (!this.sealed) return { type: this.type, payload: body };
    const payload = (this.cipher as FrameCipher).open(this.header as Buffer, body);
    this.opened++;
    return { type: this.type, payload };
  }

  /** Remove and return exactly n buffered bytes (copying only when a frame spans chunks). */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0] as Buffer;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}
