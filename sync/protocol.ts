// The sync wire protocol, version 3: every frame is an 8-byte header (magic "TS", version, type,
// payload length, big-endian) followed by the payload. Until the handshake has derived the session
// keys only the handshake frames exist, in clear, and none of them carries anything derived from
// the shared secret except the client's proof (the connecting side proves first). From then on
// every frame is sealed with AES-256-GCM: the payload is encrypted, the header is authenticated as
// associated data, a 16-byte tag follows, and the nonce is the frame's sequence number in its
// direction (per-direction keys), so a replayed, reordered, dropped or altered frame fails.
// Conntrack records are batched, many per frame, to keep the per-entry cost low.
// Version 3 is version 2 plus the receiver's Ack (14) and anti-entropy (15-18): a version-2 peer
// would close the connection on either, so it is refused at the first frame with the reason.
// Version 4 is version 3 plus the receiver's table epoch in the welcome and the delta resync
// (BulkKind.Delta): a version-3 peer would read neither, so it is refused at the first frame with
// the reason, as version 2 is. Version 1 (HMAC-only, secret-derived proof from the listener first)
// is refused.

export const SYNC_MAGIC = 0x5453; // "TS"
export const SYNC_VERSION = 4;
export const HEADER_BYTES = 8;
/** AEAD tag after every sealed payload. */
export const TAG_BYTES = 16;
/** Largest payload accepted; a bigger length field closes the connection. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Records per CT frame, chosen so a frame of IPv6 records stays far below MAX_PAYLOAD_BYTES. */
export const MAX_RECORDS_PER_FRAME = 2048;

export enum FrameType {
  /** client -> server, clear: vrf, worker, workers, client nonce. */
  Hello = 1,
  /** server -> client, clear: server nonce (nothing derived from the secret). */
  Challenge = 2,
  /** client -> server, clear: the client's proof of the shared secret over the whole exchange. */
  Auth = 3,
  Keepalive = 4,
  /** A full resynchronisation (or a manual synchronisation) starts / ends. */
  BulkStart = 5,
  BulkEnd = 6,
  CtNew = 7,
  CtUpdate = 8,
  CtDelete = 9,
  /** Either side, clear, handshake only: refusal code and reason (text). */
  Refuse = 10,
  /** server -> client, first sealed frame: the server's proof, node id, config fingerprint. */
  Welcome = 11,
  /** client -> server, sealed, after the welcome: node id, config fingerprint. */
  Identity = 12,
  /** client -> server, sealed, after the handshake: the sender's configuration fingerprint changed (32 bytes). */
  ConfigFingerprint = 13,
  /**
   * server -> client, sealed: the receiver's cumulative acknowledgement of the data frames it has
   * applied (see ack-frame.ts), and how many conntrack records among them its engine refused.
   * Both sides count every client -> server frame after the handshake but keepalives (the client
   * as it writes, the receiver as ReceiverSession.apply finishes it): a new client -> server frame
   * type must go through apply, or the counts part and acks stop covering what was sent.
   */
  Ack = 14,
  /** Anti-entropy, client -> server: the master's digest of one worker's ranges (sync/anti-entropy/digest-frames.ts). */
  DigestRequest = 15,
  /** Anti-entropy, server -> client: the ranges whose digests differ, or the outcome of their repair. */
  DigestReply = 16,
  /** Anti-entropy, client -> server: conntracks of one range being repaired (CT_NEW records after a range header). */
  RangeRepair = 17,
  /** Anti-entropy, client -> server: start / end of one range's repair (at the end the backup drops what was not sent). */
  RangeMarker = 18,
}

/** Frames that exist only before the session keys (sent in clear, no tag). */
export const HANDSHAKE_FRAMES: ReadonlySet<FrameType> = new Set([
  FrameType.Hello,
  FrameType.Challenge,
  FrameType.Auth,
  FrameType.Refuse,
]);

export function isFrameType(n: number): n is FrameType {
  return Number.isInteger(n) && typeof FrameType[n] === 'string'; // every member of the enum, whatever its number
}

export enum BulkKind {
  FullResync = 0,
  Manual = 1,
  /**
   * A delta resync (docs/ha-sync.md § Full resync): after a short outage,
   * only what changed on the master since the link went down; the backup keeps the rest (nothing
   * is purged at its end).
   */
  Delta = 2,
}

export function isBulkKind(n: number): n is BulkKind {
  return n === BulkKind.FullResync || n === BulkKind.Manual || n === BulkKind.Delta;
}

/** Every decode problem: the connection is closed with `message` as the logged reason. */
export class SyncProtocolError extends Error {
  override name = 'SyncProtocolError';
}

/**
 * The other side does not share our secret (or is not who it claims): a refused proof, a
 * welcome that does not verify, a refusal for that reason. Shown as `authentication-failed`.
 */
export class SyncAuthenticationError extends SyncProtocolError {
  override name = 'SyncAuthenticationError';
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
