// CG-NAT port blocks of one pool, seen from one worker. Blocks are claimed in a table shared by
// all workers (SharedArrayBuffer + Atomics), so two workers never hand out the same block; a
// subscriber's flows all live in one worker (see tuple-hash.ts), so the ports inside its blocks
// need no locking.
import type { NatPoolConfig } from '../config/vrf-config.js';

export interface NatBinding {
  address: string;
  port: number;
  block: number;
}

/** A block allocation or release, logged as a JSON line when the pool's logging asks for it. */
export interface NatBlockLog {
  event: 'allocation' | 'destroy';
  vrf: string;
  pool: string;
  subscriber: string;
  address: string;
  portStart: number;
  portEnd: number;
  time: number;
}

interface SubscriberBlock {
  block: number;
  used: Uint8Array;
  inUse: number;
  cursor: number;
}

function ipv4ToInt(text: string): number {
  const p = text.split('.').map(Number);
  return (((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3]) >>> 0;
}

function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export class CgNatPoolAllocator {
  readonly blocksPerAddress: number;
  readonly totalBlocks: number;
  private readonly base: number;
  private readonly addresses: number;
  private readonly subscribers = new Map<string, SubscriberBlock[]>();
  private scanFrom: number;
  /** Blocks this worker's subscribers hold now (a live gauge for state data). */
  blocksHeld = 0;

  /** `claims` is an Int32Array over a SharedArrayBuffer of totalBlocks entries, shared by all workers. */
  constructor(readonly vrf: string, readonly config: NatPoolConfig, public logging: { allocation: boolean; destroy: boolean },
    private readonly claims: Int32Array,
    private readonly log: (l: NatBlockLog) => void, workerIndex: number) {
    const [addr, len] = config.prefix.split('/') as [string, string];
    const bits = Number(len);
    this.addresses = 2 ** (32 - bits);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    this.base = (ipv4ToInt(addr) & mask) >>> 0;
    this.blocksPerAddress = Math.floor((config.portEnd - config.portStart + 1) / config.blockSize);
    this.totalBlocks = this.addresses * this.blocksPerAddress;
    if (claims.length < this.totalBlocks) throw new Error(`claim table of pool ${config.name} too small`);
    // Workers start scanning at different places so they rarely race for the same block.
    this.scanFrom = Math.floor((workerIndex * 0x9e3779b1) % Math.max(1, this.totalBlocks));
  }

  static blockCount(config: NatPoolConfig): number {
    const bits = Number(config.prefix.split('/')[1]);
    return 2 ** (32 - bits) * Math.floor((config.portEnd - config.portStart + 1) / config.blockSize);
  }

  blockAddress(block: number): string {
    return intToIpv4(this.base + Math.floor(block / this.blocksPerAddress));
  }

  blockFirstPort(block: number): number {
    return this.config.portStart + (block % this.blocksPerAddress) * this.config.blockSize;
  }

  /** The block holding (address, port) if it belongs to this pool, else -1. */
  blockOf(address: string, port: number): number {
    if (!address.includes('.') || port < this.config.portStart) return -1;
    const offset = ipv4ToInt(address) - this.base;
    if (offset < 0 || offset >= this.addresses) return -1;
    const inAddr = Math.floor((port - this.config.portStart) / this.config.blockSize);
    if (inAddr >= this.blocksPerAddress) return -1;
    return offset * this.blocksPerAddress + inAddr;
  }

  /** A free port for a new connection of `subscriber`; undefined when the pool is exhausted. */
  allocate(subscriber: string, now: number): NatBinding | undefined {
    let blocks = this.subscribers.get(subscriber);
    for (const b of blocks ?? []) {
      const port = this.takePort(b);
      if (port >= 0) return { address: this.blockAddress(b.block), port, block: b.block };
    }
    const block = this.claimBlock();
    if (block < 0) return undefined;
    if (!blocks) this.subscribers.set(subscriber, (blocks = []));
    const sb: SubscriberBlock = { block, used: new Uint8Array(this.config.blockSize), inUse: 0, cursor: 0 };
    blocks.push(sb);
    this.blocksHeld++;
    this.logBlock('allocation', subscriber, block, now);
    const port = this.takePort(sb);
    return { address: this.blockAddress(block), port, block };
  }

  /**
   * Record that `subscriber` uses (block, port), for a conntrack written by sync or moved from
   * another worker. `claim` claims the block in the shared table (false when it already is ours).
   */
  adopt(subscriber: string, block: number, port: number, claim: boolean, now: number): void {
    let blocks = this.subscribers.get(subscriber);
    if (!blocks) this.subscribers.set(subscriber, (blocks = []));
    let sb = blocks.find((b) => b.block === block);
    if (!sb) {
      if (claim && Atomics.compareExchange(this.claims, block, 0, 1) === 0) this.logBlock('allocation', subscriber, block, now);
      sb = { block, used: new Uint8Array(this.config.blockSize), inUse: 0, cursor: 0 };
      blocks.push(sb);
      this.blocksHeld++;
    }
    const k = port - this.blockFirstPort(block);
    if (k >= 0 && k < sb.used.length && !sb.used[k]) {
      sb.used[k] = 1;
      sb.inUse++;
    }
  }

  /** Give back a port; a block with no port left in use is released (and logged). */
  release(subscriber: string, block: number, port: number, now: number): void {
    const blocks = this.subscribers.get(subscriber);
    const i = blocks ? blocks.findIndex((b) => b.block === block) : -1;
    if (!blocks || i < 0) return;
    const sb = blocks[i] as SubscriberBlock;
    const k = port - this.blockFirstPort(block);
    if (k >= 0 && k < sb.used.length && sb.used[k]) {
      sb.used[k] = 0;
      sb.inUse--;
    }
    if (sb.inUse === 0) {
      blocks.splice(i, 1);
      this.blocksHeld--;
      if (blocks.length === 0) this.subscribers.delete(subscriber);
      Atomics.store(this.claims, block, 0);
      this.logBlock('destroy', subscriber, block, now);
    }
  }

  /** Forget every block of this worker without releasing them (their conntracks move elsewhere). */
  detachAll(): void {
    this.subscribers.clear();
    this.blocksHeld = 0;
  }

  blocksOf(subscriber: string): number[] {
    return (this.subscribers.get(subscriber) ?? []).map((b) => b.block);
  }

  private takePort(b: SubscriberBlock): number {
    const size = b.used.length;
    if (b.inUse >= size) return -1;
    for (let n = 0; n < size; n++) {
      const k = (b.cursor + n) % size;
      if (!b.used[k]) {
        b.used[k] = 1;
        b.inUse++;
        b.cursor = (k + 1) % size;
        return this.blockFirstPort(b.block) + k;
      }
    }
    return -1;
  }

  private claimBlock(): number {
    for (let n = 0; n < this.totalBlocks; n++) {
      const b = (this.scanFrom + n) % this.totalBlocks;
      if (Atomics.compareExchange(this.claims, b, 0, 1) === 0) {
        this.scanFrom = (b + 1) % this.totalBlocks;
        return b;
      }
    }
    return -1;
  }

  private logBlock(event: 'allocation' | 'destroy', subscriber: string, block: number, now: number): void {
    if (event === 'allocation' ? !this.logging.allocation : !this.logging.destroy) return;
    const portStart = this.blockFirstPort(block);
    this.log({ event, vrf: this.vrf, pool: this.config.name, subscriber, address: this.blockAddress(block),
      portStart, portEnd: portStart + this.config.blockSize - 1, time: now });
  }
}
