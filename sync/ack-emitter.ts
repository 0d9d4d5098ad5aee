// The receiver's side of the Ack frame for one connection: frames are applied pipelined and may
// finish out of order, so each gets its sequence number when handed over and the acknowledgement
// only ever covers the unbroken run of finished frames. It goes out every `everyFrames` frames or
// `delayMs` after the first unacknowledged one finished, whichever first, and at once after the
// end of a bulk (full resync, manual synchronisation), so the sender learns it was applied.
import type { TimerHandle } from '../fastpath/clock.js';
import { encodeAck } from './ack-frame.js';
import type { ReceiverLink } from './inbound-connection.js';
import { FrameType } from './protocol.js';

export const ACK_EVERY_FRAMES = 32;
export const ACK_DELAY_MS = 25;

interface Finished {
  refused: number;
  now: boolean;
}

export class AckEmitter {
  private started = 0;
  /** Frames finished without a gap before them, and the records the engine refused among them. */
  private done = 0;
  private refused = 0;
  private acked = 0;
  private readonly finished = new Map<number, Finished>();
  private link: ReceiverLink | undefined;
  private timer: TimerHandle | undefined;

  constructor(private readonly everyFrames = ACK_EVERY_FRAMES, private readonly delayMs = ACK_DELAY_MS) {}

  attach(link: ReceiverLink): void {
    this.link = link;
  }

  /** A frame is handed to the engine: its sequence number. */
  begin(): number {
    return ++this.started;
  }

  /** Frame `seq` finished; `refused` of its records were refused; `now`: acknowledge without waiting. */
  end(seq: number, refused: number, now: boolean): void {
    this.finished.set(seq, { refused, now });
    let urgent = false;
    for (let f = this.finished.get(this.done + 1); f; f = this.finished.get(this.done + 1)) {
      this.finished.delete(++this.done);
      this.refused += f.refused;
      urgent ||= f.now;
    }
    if (this.done === this.acked) return;
    if (urgent || this.done - this.acked >= this.everyFrames) {
      this.send();
      return;
    }
    this.timer ??= this.link?.netClock.setTimer(this.delayMs, () => {
      this.timer = undefined;
      if (this.done !== this.acked) this.send();
    });
  }

  /** Ask the sender for its table (an ack of what is done so far, with the flag); false when not connected. */
  requestTable(): boolean {
    if (!this.link) return false;
    this.send(true);
    return true;
  }

  close(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.link = undefined;
  }

  private send(wantTable = false): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (!this.link) return;
    this.acked = this.done;
    this.link.reply(FrameType.Ack, encodeAck({ frames: this.done, refused: this.refused, wantTable }));
  }
}
