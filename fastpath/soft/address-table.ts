// Interned IP addresses: a conntrack stores 4-byte ids instead of strings, and an address shared
// by many conntracks (a server, a NAT address, a busy subscriber) is stored once. IPv4 addresses
// are keyed by their 32-bit value (no string kept, text made on demand); others by their text.
// Reference counted so addresses of expired conntracks are released.

import { isIPv6 } from 'node:net';

/** An address as a key: the 32-bit value of an IPv4 address, or the text of any other. */
export type AddressRef = number | string;

/** IPv4 dotted-quad text to its 32-bit value; -1 when the text is not a plain IPv4 address. */
export function ipv4Value(text: string): number {
  let value = 0, part = 0, digits = 0, dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

export function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function addressRef(text: string): AddressRef {
  const v = ipv4Value(text);
  return v >= 0 ? v : text;
}

/** addressRef for input from outside the engine: anything but an IPv4 or IPv6 address is refused. */
export function checkedAddressRef(text: string, what: string): AddressRef {
  const v = ipv4Value(text);
  if (v >= 0) return v;
  if (typeof text !== 'string' || !isIPv6(text)) throw new TypeError(`${what}: not an IP address: ${JSON.stringify(text)}`);
  return text;
}

export class AddressTable {
  // IPv4 keys live in an open-addressing hash of typed arrays (a Map with keys above 2^30 boxes
  // them and was the hottest spot of a bulk sync); other addresses in a Map by text.
  private v4Keys = new Uint32Array(1024);
  private v4Slots = new Int32Array(1024); // id + 1, 0 = empty
  private v4Mask = 1023;
  private v4Count = 0;
  private texts = new Map<string, number>();
  private keys: (AddressRef | undefined)[] = [];
  private refs = new Uint32Array(1024);
  private free: number[] = [];

  /** Id of the address, taking one reference. */
  acquire(text: string): number {
    return this.acquireRef(addressRef(text));
  }

  acquireRef(ref: AddressRef): number {
    let id = this.findRef(ref);
    if (id < 0) {
      id = this.free.pop() ?? this.keys.length;
      if (id >= this.refs.length) {
        const grown = new Uint32Array(this.refs.length * 2);
        grown.set(this.refs);
        this.refs = grown;
      }
      this.keys[id] = ref;
      if (typeof ref === 'number') this.v4Insert(ref, id);
      else this.texts.set(ref, id);
    }
    this.refs[id]++;
    return id;
  }

  /** Id of the address if it is interned, without taking a reference; -1 otherwise. */
  find(text: string): number {
    return this.findRef(addressRef(text));
  }

  findRef(ref: AddressRef): number {
    if (typeof ref !== 'number') return this.texts.get(ref) ?? -1;
    let i = Math.imul(ref, 0x9e3779b1) >>> 0 & this.v4Mask;
    for (;;) {
      const s = this.v4Slots[i] as number;
      if (s === 0) return -1;
      if (this.v4Keys[i] === ref) return s - 1;
      i = (i + 1) & this.v4Mask;
    }
  }

  release(id: number): void {
    if (this.refs[id] === 0) throw new Error(`address id ${id} released more often than acquired`);
    if (--this.refs[id] === 0) {
      const k = this.keys[id] as AddressRef;
      if (typeof k === 'number') this.v4Delete(k);
      else this.texts.delete(k);
      this.keys[id] = undefined;
      this.free.push(id);
    }
  }

  ref(id: number): AddressRef {
    const k = this.keys[id];
    if (k === undefined) throw new Error(`address id ${id} is not in use`);
    return k;
  }

  text(id: number): string {
    const k = this.ref(id);
    return typeof k === 'number' ? ipv4Text(k) : k;
  }

  get size(): number {
    return this.v4Count + this.texts.size;
  }

  /** Bytes of the typed arrays plus the key array (8 bytes a slot); text keys are not counted. */
  byteSize(): number {
    return this.v4Keys.byteLength + this.v4Slots.byteLength + this.refs.byteLength + this.keys.length * 8;
  }

  private v4Insert(key: number, id: number): void {
    if ((this.v4Count + 1) * 2 > this.v4Mask + 1) this.v4Grow();
    let i = Math.imul(key, 0x9e3779b1) >>> 0 & this.v4Mask;
    while (this.v4Slots[i] !== 0) i = (i + 1) & this.v4Mask;
    this.v4Keys[i] = key;
    this.v4Slots[i] = id + 1;
    this.v4Count++;
  }

  // Backward-shift deletion keeps probe chains intact without tombstones.
  private v4Delete(key: number): void {
    const m = this.v4Mask;
    let i = Math.imul(key, 0x9e3779b1) >>> 0 & m;
    while (this.v4Keys[i] !== key || this.v4Slots[i] === 0) {
      if (this.v4Slots[i] === 0) return;
      i = (i + 1) & m;
    }
    this.v4Count--;
    let j = i;
    for (;;) {
      this.v4Slots[i] = 0;
      for (;;) {
        j = (j + 1) & m;
        if (this.v4Slots[j] === 0) return;
        const home = Math.imul(this.v4Keys[j] as number, 0x9e3779b1) >>> 0 & m;
        const stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) break;
      }
      this.v4Keys[i] = this.v4Keys[j] as number;
      this.v4Slots[i] = this.v4Slots[j] as number;
      i = j;
    }
  }

  private v4Grow(): void {
    const oldKeys = this.v4Keys, oldSlots = this.v4Slots;
    this.v4Keys = new Uint32Array(oldKeys.length * 2);
    this.v4Slots = new Int32Array(oldKeys.length * 2);
    this.v4Mask = oldKeys.length * 2 - 1;
    this.v4Count = 0;
    for (let i = 0; i < oldKeys.length; i++) if (oldSlots[i] !== 0) this.v4Insert(oldKeys[i] as number, (oldSlots[i] as number) - 1);
  }
}
