// Source ports of one SNAT IP (virtual services in SNAT IP mode), claimed in a bitmap shared by all
// workers (a SharedArrayBuffer of 65536 bits): each server-side connection holds a port of its own,
// whichever worker owns it, so no two connections have the same reply tuple. The client's port is
// kept when free; otherwise the next free one above 1023.

export const SNAT_PORTS_BYTES = 65536 / 8;
const FIRST = 1024;

export class SnatPorts {
  constructor(private readonly bits: Int32Array) {
    if (bits.length * 32 < 65536) throw new RangeError('SNAT port bitmap needs 65536 bits');
  }

  /** Claims `port` if free; true when it is now ours. */
  private take(port: number): boolean {
    const mask = 1 << (port & 31);
    return (Atomics.or(this.bits, port >>> 5, mask) & mask) === 0;
  }

  /** A free port, the preferred one when possible; -1 when all 64,512 are in use. */
  claim(preferred: number): number {
    const span = 65536 - FIRST;
    const start = preferred >= FIRST && preferred < 65536 ? preferred - FIRST : 0;
    for (let n = 0; n < span; n++) {
      const port = FIRST + ((start + n) % span);
      if (this.take(port)) return port;
    }
    return -1;
  }

  /** Marks a port in use for a connection written from outside (sync, re-adoption). */
  adopt(port: number): void {
    this.take(port);
  }

  release(port: number): void {
    Atomics.and(this.bits, port >>> 5, ~(1 << (port & 31)));
  }

  inUse(port: number): boolean {
    return (Atomics.load(this.bits, port >>> 5) & (1 << (port & 31))) !== 0;
  }
}
