// The messages between the conntrack writer pool and its threads (conntrack-writer-pool.ts and
// conntrack-writer-worker.ts); a module of its own so that importing it starts no thread code.

/** A datagram waiting in slot `slot` of the shared memory the pool gave the thread. */
export interface WriterRequest {
  id: number;
  slot: number;
  length: number;
  firstSeq: number;
  count: number;
}

/** Bytes of one slot of the shared memory (a datagram of 256 creates takes about 50 KB). */
export const SLOT_BYTES = 128 * 1024;

export type WriterReply =
  | { id: number; failures: { index: number; errno: number }[] }
  | { id: number; error: string };
