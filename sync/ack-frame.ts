// The Ack frame (type 14, receiver -> sender, sealed): a cumulative acknowledgement of one sync
// connection. `frames` counts the data frames (every frame after the handshake but keepalives)
// the receiver has finished applying, in order; `refused` counts the conntrack records (CT_NEW,
// CT_UPDATE) among them its engine refused (receive-error). Both are 32-bit counters that wrap:
// the sender takes the difference from the previous ack modulo 2^32. A flags byte follows:
// `wantTable` asks the sender for the synchronised conntracks it holds (a static master restarted
// with an empty table asks its backup peer before it pushes its own, see sync-sender.ts).
import { SyncProtocolError } from './protocol.js';

export const ACK_BYTES = 9;
const WANT_TABLE = 1;

export interface Ack {
  /** Data frames applied since the connection came up, modulo 2^32. */
  frames: number;
  /** Conntrack records refused by the engine among them, modulo 2^32. */
  refused: number;
  /** Send me the synchronised conntracks you hold (a full resync in the other direction). */
  wantTable?: boolean;
}

export function encodeAck(a: Ack): Buffer {
  const b = Buffer.allocUnsafe(ACK_BYTES);
  b.writeUInt32BE(a.frames >>> 0, 0);
  b.writeUInt32BE(a.refused >>> 0, 4);
  b.writeUInt8(a.wantTable ? WANT_TABLE : 0, 8);
  return b;
}

export function decodeAck(payload: Buffer): Ack {
  if (payload.length !== ACK_BYTES) throw new SyncProtocolError(`ack of ${payload.length} bytes (expected ${ACK_BYTES})`);
  const flags = payload.readUInt8(8);
  if ((flags & ~WANT_TABLE) !== 0) throw new SyncProtocolError(`ack with unknown flags 0x${flags.toString(16)}`);
  return { frames: payload.readUInt32BE(0), refused: payload.readUInt32BE(4), ...(flags & WANT_TABLE ? { wantTable: true } : {}) };
}

/** How far `to` is ahead of `from` on a 32-bit counter that wraps. */
export function wrapDelta(from: number, to: number): number {
  return (to - from) >>> 0;
}
