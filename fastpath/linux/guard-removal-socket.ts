// The switch to master as one nf_tables netlink batch sent from the agent's own process: delete
// the backup guard chain (backup-guard.ts; the kernel removes its rules with it). A backup opens
// the socket in the VRF's namespace ahead of time, so the switch is one sendmsg and one ack: no
// nft process to schedule, no script to parse, no ruleset cache to load (with the primed nft
// process this took 27 ms idle and 640 ms on a loaded 2-core machine during the retransmission
// storm of 50,000 flows). The chain being absent already counts as done.
import type { RawNetlinkSocket } from 'netlink';
import { guardNetlinkCallback } from './netlink-callback-guard.js';
import { openNetfilterSocket } from './conntrack-netlink.js';
import { decodeError, splitMessages } from './ctnetlink-codec.js';
import { BACKUP_GUARD_CHAIN } from './backup-guard.js';
import { NFNL_SUBSYS_NFTABLES, nfnlMessage, NFPROTO_INET, nlAttribute, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR } from './nfnetlink-message.js';

const NFNL_MSG_BATCH_BEGIN = 16;
const NFNL_MSG_BATCH_END = 17;
const NFT_MSG_DELCHAIN = 5;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const ENOENT = 2;
const RECEIVE_BUFFER = 64 << 10;
const ANSWER_TIMEOUT_MS = 5000;



/** The batch that deletes chain `chain` of table inet `table`; its DELCHAIN carries seq `seq`. */
export function encodeGuardRemoval(table: string, seq: number, chain = BACKUP_GUARD_CHAIN): Buffer {
  const attrs = Buffer.concat([nlAttribute(NFTA_CHAIN_TABLE, Buffer.from(`${table}\0`)), nlAttribute(NFTA_CHAIN_NAME, Buffer.from(`${chain}\0`))]);
  return Buffer.concat([
    nfnlMessage(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq - 1, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)),
    nfnlMessage((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELCHAIN, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET, 0, attrs),
    nfnlMessage(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)),
  ]);
}

export class GuardRemovalSocket {
  private readonly socket: RawNetlinkSocket;
  private used = false;
  /**
   * When the batch left this process (ms, performance.timeOrigin + performance.now()): nfnetlink applies a batch inside the
   * sender's sendmsg, so the kernel forwards from about then; the ack is read a loop turn later.
   * The netlink package calls sendmsg inside send() when nothing is queued on the socket (always
   * the case here: one batch on a fresh socket), so the moment send() returns is the moment
   * sendmsg returned; its completion callback runs later (a loop turn: up to 94 ms in the takeover bench at load 18), and a
   * refusal reported there clears this again.
   */
  sentAt: number | undefined;

  /** Opens the socket in `namespace` (undefined: the agent's own); throws when it cannot. */
  constructor(readonly namespace: string | undefined, readonly table: string) {
    ({ socket: this.socket } = openNetfilterSocket(namespace, RECEIVE_BUFFER));
    this.socket.on('error', guardNetlinkCallback('guard-removal', () => undefined, () => undefined)); // reported through remove()'s answer or timeout
  }

  /**
   * Deletes the guard chain in one transaction; resolves once the kernel acknowledged it (or says
   * the chain is not there), rejects with the errno otherwise. Usable once; closes the socket.
   */
  remove(): Promise<void> {
    if (this.used) return Promise.reject(new Error('guard removal socket already used'));
    this.used = true;
    const seq = 2;
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.close();
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new Error(`nf_tables: no answer to the guard removal within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS);
      // Thrown errors must not reach the addon's native callback (it would abort the process): the removal fails.
      this.socket.on('message', guardNetlinkCallback('guard-removal', (datagram: Buffer) => {
        for (const msg of splitMessages(datagram)) {
          if (msg.type !== NLMSG_ERROR) continue;
          const { errno } = decodeError(msg);
          if (errno === 0 && msg.seq === seq) return done();
          if (errno === ENOENT) return done(); // no guard chain (or no table): nothing blocks
          if (errno !== 0) return done(new Error(`nf_tables refused the guard removal: errno ${errno}`));
        }
      }, (err) => done(new Error(`nf_tables answer not understood: ${err.message}`))));
      this.socket.send(encodeGuardRemoval(this.table, seq), {}, guardNetlinkCallback('guard-removal', (err?: Error) => {
        if (err) {
          this.sentAt = undefined;
          done(new Error(`guard removal not sent: ${err.message}`));
        }
      }, (err) => done(err)));
      this.sentAt = performance.timeOrigin + performance.now(); // the clock of RealClock
    });
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}
