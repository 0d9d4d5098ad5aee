// A map from 32-bit unsigned keys (the kernel's conntrack ids) to numbers, for a value per
// conntrack on tables of 10^6: open addressing over typed arrays (linear probing, backward-shift
// deletion), 12 bytes a slot and no object, boxed number or garbage per entry. A JS Map of the same
// costs 60-100 bytes an entry once its values are heap numbers (timestamps).
const MIN_CAPACITY = 1024;
/** Grows beyond this share of slots used (linear probing stays short well below 0.9). */
const MAX_LOAD = 0.8;

/** Fibonacci hashing of a 32-bit key onto 2^bits slots (kernel ids may be sequential). */
function slotOf(key: number, shift: number): number {
  return Math.imul(key, 0x9e3779b1) >>> shift;
}

export class U32Map {
  private keys = new Uint32Array(MIN_CAPACITY);
  private values = new Float64Array(MIN_CAPACITY);
  /** 1 where a slot is used (a key of 0 is a valid conntrack id). */
  private used = new Uint8Array(MIN_CAPACITY);
  private capacity = MIN_CAPACITY;
  private shift = 32 - Math.log2(MIN_CAPACITY);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Bytes of the typed arrays (what the map costs, whatever it holds). */
  get bytes(): number {
    return this.capacity * 13;
  }

  clear(): void {
    this.allocate(MIN_CAPACITY);
    this.count = 0;
  }

  get(key: number): number | undefined {
    const i = this.find(key >>> 0);
    return i < 0 ? undefined : this.values[i];
  }

  has(key: number): boolean {
    return this.find(key >>> 0) >= 0;
  }

  set(key: number, value: number): void {
    const k = key >>> 0;
    const mask = this.capacity - 1;
    let i = slotOf(k, this.shift);
    while (this.used[i] === 1) {
      if (this.keys[i] === k) {
        this.values[i] = value;
        return;
      }
      i = (i + 1) & mask;
    }
    this.keys[i] = k;
    this.values[i] = value;
    this.used[i] = 1;
    this.count++;
    if (this.count > this.capacity * MAX_LOAD) this.resize(this.capacity * 2);
  }

  delete(key: number): boolean {
    const found = this.find(key >>> 0);
    if (found < 0) return false;
    // Backward-shift deletion: later members of the probe run move into the hole.
    const mask = this.capacity - 1;
    let hole = found;
    let j = found;
    for (;;) {
      j = (j + 1) & mask;
      if (this.used[j] === 0) break;
      const home = slotOf(this.keys[j] as number, this.shift);
      // j may fill the hole unless its home lies cyclically in (hole, j].
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (between) continue;
      this.keys[hole] = this.keys[j] as number;
      this.values[hole] = this.values[j] as number;
      hole = j;
    }
    this.used[hole] = 0;
    this.count--;
    if (this.capacity > MIN_CAPACITY && this.count * 8 < this.capacity) this.resize(this.capacity / 2);
    return true;
  }

  /** Every entry (order unspecified); the map must not change during the walk. */
  forEach(fn: (value: number, key: number) => void): void {
    for (let i = 0; i < this.capacity; i++) if (this.used[i] === 1) fn(this.values[i] as number, this.keys[i] as number);
  }

  private find(k: number): number {
    const mask = this.capacity - 1;
    let i = slotOf(k, this.shift);
    while (this.used[i] === 1) {
      if (this.keys[i] === k) return i;
      i = (i + 1) & mask;
    }
    return -1;
  }

  private allocate(capacity: number): void {
    this.keys = new Uint32Array(capacity);
    this.values = new Float64Array(capacity);
    this.used = new Uint8Array(capacity);
    this.capacity = capacity;
    this.shift = 32 - Math.log2(capacity);
  }

  private resize(capacity: number): void {
    const { keys, values, used } = this;
    this.allocate(capacity);
    const mask = capacity - 1;
    for (let k = 0; k < used.length; k++) {
      if (used[k] === 0) continue;
      const key = keys[k] as number;
      let i = slotOf(key, this.shift);
      while (this.used[i] === 1) i = (i + 1) & mask;
      this.keys[i] = key;
      this.values[i] = values[k] as number;
      this.used[i] = 1;
    }
  }
}
