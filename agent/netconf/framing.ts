// RFC 6242 message framing: base:1.0 end-of-message (`]]>]]>`) and base:1.1 chunked framing, as a
// byte-level state machine. The hello is always end-of-message framed, except that ncclient can
// race into chunked framing for its own hello, so the first message is accepted in either framing.
// A message over the size limit is skipped (not buffered) and reported so the session can answer
// it with an rpc-error; broken framing is fatal to the session.

const EOM = Buffer.from(']]>]]>');
const MAX_CHUNK = 4294967295;
const CHUNK_END = Buffer.from('\n##\n');
/** How much of an oversized message is kept, to recover the rpc's message-id. */
const HEAD_BYTES = 4096;

export type FramingMode = 'hello' | 'eom' | 'chunked';

export type FrameEvent =
  | { kind: 'message'; text: string }
  | { kind: 'oversized'; size: number; head: string }
  /** Not valid UTF-8 (RFC 6241 requires it): never decoded with replacement characters. */
  | { kind: 'bad-encoding'; offset: number; head: string };

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Offset of the first byte that is not part of a valid UTF-8 sequence (-1: all valid). */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    let n: number;
    let min: number;
    if (c < 0x80) {
      i += 1;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) [n, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, min] = [3, 0x10000];
    else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k += 1) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

type ChunkState = 'lf' | 'hash' | 'hash2-or-size' | 'size' | 'data';

export class FrameDecoder {
  private mode: FramingMode = 'hello';
  /** After the hello, the decoder holds further bytes until the session picks the framing. */
  private waitingForMode = false;
  private helloFramingKnown = false;
  private buf: Buffer = Buffer.alloc(0);
  // End-of-message state: the message read so far, and its last bytes.
  private eomParts: Buffer[] = [];
  private eomTail: Buffer = Buffer.alloc(0);
  // Chunked state.
  private chunkFraming = false; // this message is chunk-framed (always true in 'chunked' mode)
  private cstate: ChunkState = 'lf';
  private sizeDigits = '';
  private remaining = 0;
  private parts: Buffer[] = [];
  // Size accounting for the message being read.
  private size = 0;
  private oversized = false;
  private head: Buffer[] = [];
  private headLen = 0;

  constructor(private readonly maxSize: number) {}

  get framing(): FramingMode {
    return this.mode;
  }

  /** Feed bytes from the transport; returns the complete messages they finish. Throws FramingError. */
  push(data: Buffer): FrameEvent[] {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    return this.drain();
  }

  /** Choose the framing once the hellos are exchanged; returns messages already buffered. */
  setMode(mode: 'eom' | 'chunked'): FrameEvent[] {
    this.mode = mode;
    this.waitingForMode = false;
    this.chunkFraming = mode === 'chunked';
    return this.drain();
  }

  private drain(): FrameEvent[] {
    const out: FrameEvent[] = [];
    while (!this.waitingForMode && this.buf.length > 0) {
      if (this.mode === 'hello' && !this.helloFramingKnown) {
        // Chunked framing starts with "\n#"; anything else is end-of-message framing.
        if (this.buf.length < 2 && this.buf[0] === 0x0a) break;
        this.chunkFraming = this.buf[0] === 0x0a && this.buf[1] === 0x23;
        this.helloFramingKnown = true;
      }
      const ev = this.chunkFraming ? this.readChunked() : this.readEom();
      if (!ev) break;
      out.push(ev);
      if (this.mode === 'hello') {
        this.waitingForMode = true;
        this.chunkFraming = false;
      }
    }
    return out;
  }

  private account(bytes: Buffer): void {
    this.size += bytes.length;
    if (this.headLen < HEAD_BYTES) {
      const take = bytes.subarray(0, HEAD_BYTES - this.headLen);
      this.head.push(take);
      this.headLen += take.length;
    }
    if (this.size > this.maxSize) this.oversized = true;
  }

  private finish(body: Buffer | undefined): FrameEvent {
    const head = () => Buffer.concat(this.head).toString('utf8');
    let ev: FrameEvent;
    if (this.oversized || !body) {
      ev = { kind: 'oversized', size: this.size, head: head() };
    } else {
      try {
        ev = { kind: 'message', text: strictUtf8.decode(body) };
      } catch {
        ev = { kind: 'bad-encoding', offset: firstInvalidUtf8(body), head: head() };
      }
    }
    this.size = 0;
    this.oversized = false;
    this.head = [];
    this.headLen = 0;
    this.parts = [];
    this.eomParts = [];
    this.eomTail = Buffer.alloc(0);
    return ev;
  }

  /** Append bytes to the end-of-message framed message being read (no delimiter in them). */
  private appendEom(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.account(bytes);
    if (this.oversized) this.eomParts = [];
    else this.eomParts.push(bytes);
    const keep = EOM.length - 1;
    this.eomTail = bytes.length >= keep
      ? Buffer.from(bytes.subarray(bytes.length - keep))
      : Buffer.concat([this.eomTail, bytes]).subarray(-keep);
  }

  // The message is kept as a list of pieces (no copying while it arrives); only the last few bytes
  // are joined with new data, to find a delimiter split across two reads.
  private readEom(): FrameEvent | undefined {
    const tail = this.eomTail;
    const window = tail.length > 0 ? Buffer.concat([tail, this.buf]) : this.buf;
    const at = window.indexOf(EOM);
    if (at < 0) {
      this.appendEom(this.buf);
      this.buf = Buffer.alloc(0);
      return undefined;
    }
    const endInBuf = at - tail.length; // negative: the delimiter began in bytes already taken
    let trim = 0;
    if (endInBuf >= 0) this.appendEom(this.buf.subarray(0, endInBuf));
    else trim = -endInBuf;
    this.buf = this.buf.subarray(endInBuf + EOM.length);
    this.size -= trim;
    let body: Buffer | undefined;
    if (!this.oversized) {
      const all = this.eomParts.length === 1 ? this.eomParts[0]! : Buffer.concat(this.eomParts);
      body = all.subarray(0, all.length - trim);
    }
    return this.finish(body);
  }

  private readChunked(): FrameEvent | undefined {
    let i = 0;
    const b = this.buf;
    try {
      while (i < b.length) {
        const c = b[i]!;
        switch (this.cstate) {
          case 'lf':
            if (c !== 0x0a) throw new FramingError(`chunked framing: expected LF, got byte 0x${c.toString(16)}`);
            this.cstate = 'hash';
            i += 1;
            break;
          case 'hash':
            if (c !== 0x23) throw new FramingError(`chunked framing: expected '#', got byte 0x${c.toString(16)}`);
            this.cstate = 'hash2-or-size';
            i += 1;
            break;
          case 'hash2-or-size':
            if (c === 0x23) {
              // "\n##\n": end of chunks; needs the final LF.
              if (i + 1 >= b.length) return undefined;
              if (b[i + 1] !== 0x0a) throw new FramingError('chunked framing: end-of-chunks marker not followed by LF');
              if (this.parts.length === 0 && this.size === 0) throw new FramingError('chunked framing: end-of-chunks before any chunk');
              i += 2;
              this.cstate = 'lf';
              const body = this.oversized ? undefined : Buffer.concat(this.parts);
              this.buf = b.subarray(i);
              return this.finish(body);
            }
            if (c < 0x31 || c > 0x39) throw new FramingError('chunked framing: chunk size must start with a digit 1-9');
            this.sizeDigits = String.fromCharCode(c);
            this.cstate = 'size';
            i += 1;
            break;
          case 'size':
            if (c >= 0x30 && c <= 0x39) {
              this.sizeDigits += String.fromCharCode(c);
              if (this.sizeDigits.length > 10) throw new FramingError('chunked framing: chunk size too long');
              i += 1;
            } else if (c === 0x0a) {
              const n = Number(this.sizeDigits);
              if (n > MAX_CHUNK) throw new FramingError(`chunked framing: chunk size ${n} exceeds ${MAX_CHUNK}`);
              this.remaining = n;
              this.cstate = 'data';
              i += 1;
            } else {
              throw new FramingError(`chunked framing: bad character in chunk size (byte 0x${c.toString(16)})`);
            }
            break;
          case 'data': {
            const take = Math.min(this.remaining, b.length - i);
            const piece = b.subarray(i, i + take);
            this.account(piece);
            if (!this.oversized) this.parts.push(piece);
            else this.parts = [];
            this.remaining -= take;
            i += take;
            if (this.remaining === 0) this.cstate = 'lf';
            break;
          }
        }
      }
      return undefined;
    } finally {
      // Whatever was consumed is gone; chunk data pieces reference the old buffer, which is fine.
      this.buf = this.buf === b ? b.subarray(i) : this.buf;
    }
  }
}

/** Frame one outgoing message. */
export function frameMessage(text: string, mode: FramingMode): Buffer {
  return Buffer.concat(framePieces(text, mode));
}

/**
 * Up to this size a message is framed into one buffer: each piece written to an SSH channel is an
 * SSH packet of its own (encrypted, a socket write, a wake-up of the client), and an <ok/> framed
 * in three pieces cost three of each (issue 8: about a tenth of a small commit's time).
 */
export const ONE_PIECE_MAX_BYTES = 64 * 1024;

/** Frame one outgoing message as the pieces to write in order: one for a small message, else no copy of the body. */
export function framePieces(text: string, mode: FramingMode): Buffer[] {
  if (text.length <= ONE_PIECE_MAX_BYTES / 3) {
    // At most 3 UTF-8 bytes per UTF-16 unit: the framed text is small, encoded once.
    return [Buffer.from(mode === 'chunked' ? `\n#${Buffer.byteLength(text, 'utf8')}\n${text}\n##\n` : `${text}]]>]]>`, 'utf8')];
  }
  const body = Buffer.from(text, 'utf8');
  return mode === 'chunked' ? [Buffer.from(`\n#${body.length}\n`), body, CHUNK_END] : [body, EOM];
}
