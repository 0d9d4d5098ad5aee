// The sync wire protocol, version 1: every frame is an 8-byte header (magic "TS", version, type,
// payload length, big-endian) followed by the payload and, once the handshake has agreed on a
// session key, a 16-byte truncated HMAC-SHA256 over a per-direction sequence number, the header
// and the payload. Conntrack records are batched, many per frame, to keep the per-entry cost low.

export const SYNC_MAGIC = 0x5453; // "TS"
export const SYNC_VERSION = 1;
export const HEADER_BYTES = 8;
export const MAC_BYTES = 16;
/** Largest payload accepted; a bigger length field closes the connection. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Records per CT frame, chosen so a frame of IPv6 records stays far below MAX_PAYLOAD_BYTES. */
export const MAX_RECORDS_PER_FRAME = 2048;

export enum FrameType {
  /** client -> server: node id, vrf, worker, workers, config fingerprint, nonce. */
  Hello = 1,
  /** server -> client: node id, config fingerprint, nonce, proof of the shared secret. */
  HelloAck = 2,
  /** client -> server: proof of the shared secret. */
  Auth = 3,
  Keepalive = 4,
  /** A full resynchronisation (or a manual synchronisation) starts / ends. */
  BulkStart = 5,
  BulkEnd = 6,
  CtNew = 7,
  CtUpdate = 8,
  CtDelete = 9,
  /** Either side, handshake only: why the connection is refused (text). */
  Refuse = 10,
  /** client -> server, after the handshake: the sender's configuration fingerprint changed (32 bytes). */
  ConfigFingerprint = 11,
}

/** Frames that may be sent before the session key exists (they carry no MAC). */
export const HANDSHAKE_FRAMES: ReadonlySet<FrameType> = new Set([
  FrameType.Hello,
  FrameType.HelloAck,
  FrameType.Auth,
  FrameType.Refuse,
]);

export function isFrameType(n: number): n is FrameType {
  return Number.isInteger(n) && n >= FrameType.Hello && n <= FrameType.ConfigFingerprint;
}

export enum BulkKind {
  FullResync = 0,
  Manual = 1,
}

/** Every decode problem: the connection is closed with `message` as the logged reason. */
export class SyncProtocolError extends Error {
  override name = 'SyncProtocolError';
}

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

export function encodeHeader(type: FrameType, payloadLength: number): Buffer {
  if (payloadLength > MAX_PAYLOAD_BYTES) {
    throw new SyncProtocolError(`frame payload of ${payloadLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  }
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h.writeUInt16BE(SYNC_MAGIC, 0);
  h.writeUInt8(SYNC_VERSION, 2);
  h.writeUInt8(type, 3);
  h.writeUInt32BE(payloadLength, 4);
  return h;
}
