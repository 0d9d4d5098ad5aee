// Framing as an explicit state machine over buffers: the decoder is fed whatever TCP delivers and
// yields whole frames; every malformed input (bad magic, unknown version or type, oversized
// length, a data frame before the handshake, a bad MAC) throws SyncProtocolError so the
// connection is closed with that reason and nothing of the frame is applied.
import { createHmac } from 'node:crypto';
import {
  encodeHeader,
  type Frame,
  FrameType,
  HANDSHAKE_FRAMES,
  HEADER_BYTES,
  isFrameType,
  MAC_BYTES,
  MAX_PAYLOAD_BYTES,
  SYNC_MAGIC,
  SYNC_VERSION,
  SyncProtocolError,
} from './protocol.js';

/** Per-direction integrity: HMAC-SHA256(key, direction label | sequence | header | payload), truncated. */
export class FrameMac {
  private seq = 0n;
  constructor(
    private readonly key: Buffer,
    private readonly direction: string,
  ) {}

  next(header: Buffer, payload: Buffer): Buffer {
    const seq = Buffer.allocUnsafe(8);
    seq.writeBigUInt64BE(this.seq++);
    return createHmac('sha256', this.key)
      .update(this.direction)
      .update(seq)
      .update(header)
      .update(payload)
      .digest()
      .subarray(0, MAC_BYTES);
  }
}

export class FrameEncoder {
  private mac: FrameMac | undefined;

  /** From now on every frame carries a MAC. */
  setMac(mac: FrameMac): void {
    this.mac = mac;
  }

  /** Header, payload and (after the handshake) MAC, as buffers to write in order. */
  encode(type: FrameType, payload: Buffer): Buffer[] {
    const header = encodeHeader(type, payload.length);
    if (!this.mac) {
      if (!HANDSHAKE_FRAMES.has(type)) throw new SyncProtocolError(`frame type ${type} before the handshake`);
      return [header, payload];
    }
    return [header, payload, this.mac.next(header, payload)];
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
  private mac: FrameMac | undefined;
  private failed: SyncProtocolError | undefined;

  constructor(private readonly maxPayload = MAX_PAYLOAD_BYTES) {}

  /** From now on every frame must carry a valid MAC (and handshake frames are refused). */
  setMac(mac: FrameMac): void {
    this.mac = mac;
  }

  /** Bytes received but not yet part of a whole frame. */
  pendingBytes(): number {
    return this.buffered;
  }

  /**
   * Feed bytes; returns the whole frames they complete. Before the MAC is set it returns at most
   * one frame: call push(EMPTY) again after handling it to go on. Throws SyncProtocolError, then
   * stays failed.
   */
  push(data: Buffer): Frame[] {
    if (this.failed) throw this.failed;
    this.chunks.push(data);
    this.buffered += data.length;
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
          // Stop after a handshake frame: the caller may install the session MAC before the
          // bytes that follow are parsed (a peer may pipeline data right after its AUTH).
          if (!this.mac) break;
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
    if (version !== SYNC_VERSION) throw new SyncProtocolError(`unsupported protocol version ${version}`);
    const type = h.readUInt8(3);
    if (!isFrameType(type)) throw new SyncProtocolError(`unknown frame type ${type}`);
    const length = h.readUInt32BE(4);
    if (length > this.maxPayload) throw new SyncProtocolError(`oversized frame: ${length} bytes > ${this.maxPayload}`);
    if (this.mac && HANDSHAKE_FRAMES.has(type)) throw new SyncProtocolError(`handshake frame type ${type} after the handshake`);
    if (!this.mac && !HANDSHAKE_FRAMES.has(type)) throw new SyncProtocolError(`frame type ${type} before authentication`);
    this.header = h;
    this.type = type;
    this.bodyLength = length + (this.mac ? MAC_BYTES : 0);
    this.state = 'body';
  }

  private parseBody(body: Buffer): Frame {
    this.state = 'header';
    const header = this.header as Buffer;
    if (!this.mac) return { type: this.type, payload: body };
    const payload = body.subarray(0, body.length - MAC_BYTES);
    const got = body.subarray(body.length - MAC_BYTES);
    const want = this.mac.next(header, payload);
    if (!got.equals(want)) throw new SyncProtocolError(`bad frame MAC (type ${this.type}, ${payload.length} bytes)`);
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
