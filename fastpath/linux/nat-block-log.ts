// CG-NAT port block logs on the linux engine. nftables gives each subscriber a fixed port block
// (nft-ruleset.ts), so "allocation" is the subscriber's first live translated conntrack on this
// node and "destroy" its last one ending. Counted on the master only (the backup translates
// nothing); on a switch to master the blocks of the synchronised conntracks it inherited are
// logged as allocated (`inherited: true`), and released with a log when their conntracks end.
import type { SoftVrfConfig } from '../config/vrf-config.js';
import type { NatBlockLog } from '../soft/cg-nat-allocator.js';
import { assignPortBlocks, type PortBlock } from './nft-ruleset.js';
import type { KernelConntrack } from './ctnetlink-codec.js';
import { U32Map } from '../u32-map.js';

export type LinuxNatBlockLog = NatBlockLog & { inherited?: true };

interface Block extends PortBlock {
  pool: string;
  /** Live translated conntracks in the block. */
  live: number;
}

export class NatBlockLogger {
  /** Subscriber -> its blocks (one per rule that covers it). */
  private readonly blocks = new Map<string, Block[]>();
  private readonly logAllocation: boolean;
  private readonly logDestroy: boolean;
  /**
   * Kernel ids of the conntracks counted (an event and the switch's dump may both see one), in a
   * packed table (no object or boxed number per conntrack); the value is unused.
   */
  private readonly counted = new U32Map();

  constructor(private readonly vrf: string, cfg: SoftVrfConfig, private readonly log: (l: LinuxNatBlockLog) => void) {
    this.logAllocation = cfg.cgNat.logAllocation;
    this.logDestroy = cfg.cgNat.logDestroy;
    if (!this.logAllocation && !this.logDestroy) return;
    const byRule = assignPortBlocks(cfg);
    for (const rule of cfg.cgNat.rules) {
      for (const b of byRule.get(rule.name) ?? []) {
        const list = this.blocks.get(b.subscriber) ?? [];
        list.push({ ...b, pool: rule.pool, live: 0 });
        this.blocks.set(b.subscriber, list);
      }
    }
  }

  private blockOf(ct: KernelConntrack): Block | undefined {
    if (this.blocks.size === 0) return undefined;
    const port = ct.reply.dport;
    return this.blocks.get(ct.orig.src)?.find((b) => b.address === ct.reply.dst && port >= b.portStart && port <= b.portEnd);
  }

  /**
   * A translated conntrack on the master: `new` from an event, `inherited` from the synchronised
   * table at a switch to master, `existing` when the engine starts on a live table (no log).
   */
  add(ct: KernelConntrack, how: 'new' | 'inherited' | 'existing', now: number): void {
    const b = this.blockOf(ct);
    if (!b || this.counted.has(ct.id)) return;
    this.counted.set(ct.id, 1);
    if (b.live++ === 0 && how !== 'existing' && this.logAllocation) this.emit('allocation', b, now, how === 'inherited');
  }

  /** A conntrack ended; the block's last one releases it. */
  remove(ct: KernelConntrack, now: number): void {
    if (!this.counted.delete(ct.id)) return; // not counted (e.g. ended before the switch to master)
    const b = this.blockOf(ct);
    if (!b || b.live === 0) return;
    if (--b.live === 0 && this.logDestroy) this.emit('destroy', b, now, false);
  }

  /** The node leaves master: nothing is counted any more. */
  clear(): void {
    this.counted.clear();
    for (const list of this.blocks.values()) for (const b of list) b.live = 0;
  }

  private emit(event: 'allocation' | 'destroy', b: Block, now: number, inherited: boolean): void {
    this.log({
      event, vrf: this.vrf, pool: b.pool, subscriber: b.subscriber, address: b.address, portStart: b.portStart, portEnd: b.portEnd, time: now,
      ...(inherited ? { inherited: true as const } : {}),
    });
  }
}
