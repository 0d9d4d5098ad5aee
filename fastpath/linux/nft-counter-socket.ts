// The named counters of table inet tandem read over nf_tables netlink (one NFT_MSG_GETOBJ dump,
// filtered by table and object type in the kernel) on a socket kept open in the VRF's namespace:
// no `nft` process per read (spawning one costs tens of ms on a loaded machine). What it returns
// is what `nft -j list counters table inet tandem` shows: counter name -> packets.
import type { RawNetlinkSocket } from 'netlink';
import { guardNetlinkCallback } from './netlink-callback-guard.js';
import { logger } from '../../core/log.js';
import { openNetfilterSocket } from './conntrack-netlink.js';
import { decodeError, splitMessages } from './ctnetlink-codec.js';
import { TABLE } from './nft-ruleset.js';
import { NFNL_SUBSYS_NFTABLES, nfnlMessage, NFPROTO_INET, nlAttribute, nlAttributes, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR } from './nfnetlink-message.js';

const log = logger('nft-counters');

const NFT_MSG_GETOBJ = 19;
const NFT_MSG_NEWOBJ = 18;
const NFTA_OBJ_TABLE = 1;
const NFTA_OBJ_NAME = 2;
const NFTA_OBJ_TYPE = 3;
const NFTA_OBJ_DATA = 4;
const NFT_OBJECT_COUNTER = 1;
const NFTA_COUNTER_PACKETS = 2;
const ENOENT = 2;
const RECEIVE_BUFFER = 1 << 20;
const READ_TIMEOUT_MS = 5000;



/** The dump request: every counter object of inet tandem. */
export function encodeCounterDump(seq: number): Buffer {
  const table = Buffer.from(`${TABLE}\0`);
  const type = Buffer.alloc(4);
  type.writeUInt32BE(NFT_OBJECT_COUNTER, 0);
  const attrs = Buffer.concat([nlAttribute(NFTA_OBJ_TABLE, table), nlAttribute(NFTA_OBJ_TYPE, type)]);
  return nfnlMessage((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ, NLM_F_REQUEST | NLM_F_DUMP, seq, NFPROTO_INET, 0, attrs);
}

interface Pending {
  seq: number;
  out: Record<string, number>;
  resolve: (counters: Record<string, number>) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class NftCounterSocket {
  private readonly socket: RawNetlinkSocket;
  private seq = 1;
  private pending?: Pending;
  /** Reads wait for the one in progress: one dump at a time on the socket. */
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(readonly namespace: string | undefined) {
    ({ socket: this.socket } = openNetfilterSocket(namespace, RECEIVE_BUFFER));
    // Thrown errors must not reach the addon's native callback (it would abort the process): the read fails.
    const failed = (err: Error): void => this.fail(new Error(`nf_tables answer not understood: ${err.message}`));
    this.socket.on('message', guardNetlinkCallback('nft-counters', (datagram: Buffer) => this.receive(datagram), failed));
    this.socket.on('error', guardNetlinkCallback('nft-counters', (err: Error) => this.fail(new Error(`nf_tables socket error: ${err.message}`)), failed));
  }

  private receive(datagram: Buffer): void {
    const p = this.pending;
    if (!p) return;
    for (const msg of splitMessages(datagram)) {
      if (msg.seq !== p.seq) continue;
      if (msg.type === NLMSG_DONE) return this.finish(p.out);
      if (msg.type === NLMSG_ERROR) {
        const { errno } = decodeError(msg);
        // No table (the VRF's ruleset is not applied): no counters.
        if (errno === ENOENT) return this.finish({});
        if (errno !== 0) return this.fail(new Error(`nf_tables counter dump refused: errno ${errno}`));
        continue;
      }
      if (msg.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ)) continue;
      const attrs = nlAttributes(msg.payload.subarray(4)); // after struct nfgenmsg
      const name = attrs.get(NFTA_OBJ_NAME);
      const data = attrs.get(NFTA_OBJ_DATA);
      if (!name || !data) continue;
      const packets = nlAttributes(data).get(NFTA_COUNTER_PACKETS);
      p.out[name.toString('utf8').replace(/\0+$/, '')] = packets ? Number(packets.readBigUInt64BE(0)) : 0;
    }
  }

  private finish(out: Record<string, number>): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.resolve(out);
  }

  private fail(err: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.reject(err);
  }

  /** Counter name -> packets of table inet tandem ({} when the table is absent). */
  read(): Promise<Record<string, number>> {
    const next = this.chain.then(() => this.readOne(), () => this.readOne());
    this.chain = next.catch(() => undefined);
    return next;
  }

  private readOne(): Promise<Record<string, number>> {
    if (this.closed) return Promise.reject(new Error('nf_tables counter socket closed'));
    return new Promise((resolve, reject) => {
      const seq = this.seq++;
      const timer = setTimeout(() => this.fail(new Error(`nf_tables counter dump: no answer within ${READ_TIMEOUT_MS} ms`)), READ_TIMEOUT_MS);
      this.pending = { seq, out: {}, resolve, reject, timer };
      this.socket.send(encodeCounterDump(seq), {}, guardNetlinkCallback('nft-counters', (err?: Error) => {
        if (err) this.fail(new Error(`nf_tables counter dump not sent: ${err.message}`));
      }, (err) => this.fail(err)));
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error('nf_tables counter socket closed'));
    try {
      this.socket.close();
    } catch (err) {
      log.debug({ err: String(err) }, 'closing the nf_tables counter socket');
    }
  }
}
