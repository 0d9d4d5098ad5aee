// The messages between the conntrack writer pool and its threads (conntrack-writer-pool.ts and
// conntrack-writer-worker.ts); a module of its own so that importing it starts no thread code.

/**
 * A chunk of datagrams waiting in slot `slot` of the shared memory the pool gave the thread:
 * `datagrams` holds, per datagram, [offset in the slot, length, first seq, message count]
 * (one message to the thread for several datagrams: a message between threads costs more than
 * encoding a few hundred conntracks).
 */
export interface WriterRequest {
  id: number;
  slot: number;
  datagrams: number[];
}

/** Numbers per datagram in WriterRequest.datagrams. */
export const DATAGRAM_FIELDS = 4;

/** Bytes of one slot of the shared memory (a chunk of 1,024 IPv4 creates takes about 225 KB). */
export const SLOT_BYTES = 512 * 1024;

/** Refusals carry the index of the message in the chunk (all its datagrams, from 0). */
export type WriterReply =
  | { id: number; failures: { index: number; errno: number }[] }
  | { id: number; error: string };
