// Compact conntrack storage for one VRF in one worker: a structure of typed arrays (one slot per
// conntrack, ~70 bytes) with two open-addressing indexes (original and reply tuple) of slot ids.
// No object per conntrack: 10^6 entries cost tens of MB and no GC pressure.

export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMP = 1;

/** Entry flags (bit set in `flags`). */
export const F_ALG = 1; // related to an ALG master: never synchronised
export const F_SYNCED = 2; // created by sync (on a backup)
export const F_ESTABLISHED = 4; // has been established at least once
export const F_NO_MIRROR = 8; // virtual-service flow whose profile does not mirror (rule 10)
export const F_ACTIVITY_SYNCED = 16; // lastActivity came from the master (manual synchronisation, rule 8)
export const F_SEEN_SINCE_FAILOVER = 32; // traffic seen since this node became master
export const F_FIN_ORIG = 64; // the first FIN came from the original direction

const INITIAL_CAPACITY = 1024;

function mix(a: number, b: number, c: number, d: number, e: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ b, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ c, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ ((d << 16) | e), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Row of a protocol in ConntrackTable.byState (tcp 0, udp 1, icmp 2, anything else 3). */
export function protoRow(proto: number): number {
  return proto === PROTO_TCP ? 0 : proto === PROTO_UDP ? 1 : proto === PROTO_ICMP ? 2 : 3;
}

/** States per protocol row in ConntrackTable.byState (the TCP states; UDP/ICMP use 0 and 2). */
export const STATES_PER_PROTO = 8;

export class ConntrackTable {
  capacity = 0;
  count = 0;
  /**
   * Live count of entries per protocol row and state (protoRow(p) * STATES_PER_PROTO + state),
   * kept by insert, delete and setState: state data reads it without walking the table.
   */
  readonly byState = new Int32Array(4 * STATES_PER_PROTO);
  /** One past the highest slot ever used (iteration bound). */
  highWater = 0;

  used!: Uint8Array;
  proto!: Uint8Array;
  state!: Uint8Array;
  flags!: Uint8Array;
  oSrc!: Uint32Array;
  oDst!: Uint32Array;
  rSrc!: Uint32Array;
  rDst!: Uint32Array;
  oSport!: Uint16Array;
  oDport!: Uint16Array;
  rSport!: Uint16Array;
  rDport!: Uint16Array;
  /** Current timeout, seconds. */
  timeout!: Uint32Array;
  /** Expiry time, ms of the engine clock (Infinity: never, on a backup). */
  deadline!: Float64Array;
  establishedAt!: Float64Array;
  lastActivity!: Float64Array;
  /** Last time an activity update event was emitted (throttling). */
  lastReported!: Float64Array;
  /** Virtual service index + 1 (0: none). */
  vs!: Uint16Array;
  /** CG-NAT pool index + 1 (0: not translated) and global block number within that pool. */
  natPool!: Uint16Array;
  natBlock!: Int32Array;

  private freeSlots!: Int32Array;
  private freeCount = 0;
  private origIndex!: Int32Array;
  private replyIndex!: Int32Array;
  private mask = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.allocate(Math.max(16, initialCapacity));
  }

  /** Bytes held by the typed arrays (for the memory benchmark). */
  byteSize(): number {
    const arrays = [this.used, this.proto, this.state, this.flags, this.oSrc, this.oDst, this.rSrc, this.rDst,
      this.oSport, this.oDport, this.rSport, this.rDport, this.timeout, this.deadline, this.establishedAt,
      this.lastActivity, this.lastReported, this.vs, this.natPool, this.natBlock, this.freeSlots,
      this.origIndex, this.replyIndex];
    return arrays.reduce((n, a) => n + a.byteLength, 0);
  }

  findOrig(proto: number, src: number, dst: number, sport: number, dport: number): number {
    return this.find(this.origIndex, true, proto, src, dst, sport, dport);
  }

  findReply(proto: number, src: number, dst: number, sport: number, dport: number): number {
    return this.find(this.replyIndex, false, proto, src, dst, sport, dport);
  }

  /** A new slot with the given tuples (the caller checked neither tuple exists); other fields zeroed. */
  insert(proto: number, oSrc: number, oDst: number, oSport: number, oDport: number,
    rSrc: number, rDst: number, rSport: number, rDport: number): number {
    if (this.count + 1 > this.capacity) this.grow();
    const slot = this.freeCount > 0 ? this.freeSlots[--this.freeCount] : this.highWater++;
    this.used[slot] = 1;
    this.proto[slot] = proto;
    this.state[slot] = 0;
    this.byState[protoRow(proto) * STATES_PER_PROTO]++;
    this.flags[slot] = 0;
    this.oSrc[slot] = oSrc; this.oDst[slot] = oDst; this.oSport[slot] = oSport; this.oDport[slot] = oDport;
    this.rSrc[slot] = rSrc; this.rDst[slot] = rDst; this.rSport[slot] = rSport; this.rDport[slot] = rDport;
    this.timeout[slot] = 0;
    this.deadline[slot] = 0;
    this.establishedAt[slot] = 0;
    this.lastActivity[slot] = 0;
    this.lastReported[slot] = 0;
    this.vs[slot] = 0;
    this.natPool[slot] = 0;
    this.natBlock[slot] = -1;
    this.count++;
    this.indexInsert(this.origIndex, slot, this.origHash(slot));
    this.indexInsert(this.replyIndex, slot, this.replyHash(slot));
    return slot;
  }

  /** Change an entry's state (every state change goes through here so byState stays right). */
  setState(slot: number, state: number): void {
    const row = protoRow(this.proto[slot] as number) * STATES_PER_PROTO;
    this.byState[row + (this.state[slot] as number)]--;
    this.byState[row + state]++;
    this.state[slot] = state;
  }

  delete(slot: number): void {
    if (!this.used[slot]) throw new Error(`conntrack slot ${slot} is not in use`);
    this.byState[protoRow(this.proto[slot] as number) * STATES_PER_PROTO + (this.state[slot] as number)]--;
    this.indexDelete(this.origIndex, slot, true);
    this.indexDelete(this.replyIndex, slot, false);
    this.used[slot] = 0;
    this.freeSlots[this.freeCount++] = slot;
    this.count--;
  }

  private origHash(slot: number): number {
    return mix(this.proto[slot], this.oSrc[slot], this.oDst[slot], this.oSport[slot], this.oDport[slot]);
  }

  private replyHash(slot: number): number {
    return mix(this.proto[slot], this.rSrc[slot], this.rDst[slot], this.rSport[slot], this.rDport[slot]);
  }

  private matches(slot: number, orig: boolean, proto: number, src: number, dst: number, sport: number, dport: number): boolean {
    if (this.proto[slot] !== proto) return false;
    return orig
      ? this.oSrc[slot] === src && this.oDst[slot] === dst && this.oSport[slot] === sport && this.oDport[slot] === dport
      : this.rSrc[slot] === src && this.rDst[slot] === dst && this.rSport[slot] === sport && this.rDport[slot] === dport;
  }

  private find(index: Int32Array, orig: boolean, proto: number, src: number, dst: number, sport: number, dport: number): number {
    let i = mix(proto, src, dst, sport, dport) & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const v = index[i];
      if (v === 0) return -1;
      if (this.matches(v - 1, orig, proto, src, dst, sport, dport)) return v - 1;
      i = (i + 1) & this.mask;
    }
    return -1;
  }

  private indexInsert(index: Int32Array, slot: number, hash: number): void {
    let i = hash & this.mask;
    while (index[i] !== 0) i = (i + 1) & this.mask;
    index[i] = slot + 1;
  }

  // Linear probing with backward-shift deletion: no tombstones, lookups stay short.
  private indexDelete(index: Int32Array, slot: number, orig: boolean): void {
    const hashOf = orig ? (s: number) => this.origHash(s) : (s: number) => this.replyHash(s);
    let i = hashOf(slot) & this.mask;
    while (index[i] !== slot + 1) {
      if (index[i] === 0) throw new Error(`conntrack slot ${slot} missing from its index`);
      i = (i + 1) & this.mask;
    }
    let j = i;
    for (;;) {
      index[i] = 0;
      for (;;) {
        j = (j + 1) & this.mask;
        if (index[j] === 0) return;
        const k = hashOf(index[j] - 1) & this.mask;
        // Move the entry at j back to i unless its home k lies cyclically in (i, j].
        const stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) break;
      }
      index[i] = index[j];
      i = j;
    }
  }

  private allocate(capacity: number): void {
    this.capacity = capacity;
    this.used = new Uint8Array(capacity);
    this.proto = new Uint8Array(capacity);
    this.state = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.oSrc = new Uint32Array(capacity);
    this.oDst = new Uint32Array(capacity);
    this.rSrc = new Uint32Array(capacity);
    this.rDst = new Uint32Array(capacity);
    this.oSport = new Uint16Array(capacity);
    this.oDport = new Uint16Array(capacity);
    this.rSport = new Uint16Array(capacity);
    this.rDport = new Uint16Array(capacity);
    this.timeout = new Uint32Array(capacity);
    this.deadline = new Float64Array(capacity);
    this.establishedAt = new Float64Array(capacity);
    this.lastActivity = new Float64Array(capacity);
    this.lastReported = new Float64Array(capacity);
    this.vs = new Uint16Array(capacity);
    this.natPool = new Uint16Array(capacity);
    this.natBlock = new Int32Array(capacity);
    this.freeSlots = new Int32Array(capacity);
    let size = 1;
    while (size < capacity * 2) size <<= 1;
    this.mask = size - 1;
    this.origIndex = new Int32Array(size);
    this.replyIndex = new Int32Array(size);
  }

  private grow(): void {
    const old = { ...this } as Record<string, unknown>;
    const oldHigh = this.highWater;
    const oldFree = this.freeSlots.subarray(0, this.freeCount);
    this.allocate(this.capacity * 2);
    for (const key of ['used', 'proto', 'state', 'flags', 'oSrc', 'oDst', 'rSrc', 'rDst', 'oSport', 'oDport', 'rSport',
      'rDport', 'timeout', 'deadline', 'establishedAt', 'lastActivity', 'lastReported', 'vs', 'natPool', 'natBlock'] as const) {
      (this[key] as { set(a: ArrayLike<number>): void }).set(old[key] as ArrayLike<number>);
    }
    this.freeSlots.set(oldFree);
    for (let s = 0; s < oldHigh; s++) {
      if (!this.used[s]) continue;
      this.indexInsert(this.origIndex, s, this.origHash(s));
      this.indexInsert(this.replyIndex, s, this.replyHash(s));
    }
  }
}
