// Reads of running do not wait behind a commit (issue 8 item 4): while a commit that parsed a new
// tree is still in its subsystems' apply, another session's get-config of running answers at once
// with the last committed configuration. While a small commit has edited running's tree in place,
// get-config waits its turn instead of showing uncommitted edits.
import { expect } from 'chai';
import type { CommitContext, CommitSubsystem, SubsystemError } from '../../core/subsystem.js';
import { editCandidate, GET_RUNNING, openHarness, profile, type Harness } from './ops-harness.js';

/** A subsystem whose apply waits until the test opens the gate. */
class GatedSubsystem implements CommitSubsystem {
  readonly name = 'gated';
  readonly owns = ['/tandem-network-profile:network-profile'];
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  applying = false;

  close(): void {
    this.gate = new Promise((r) => {
      this.open = r;
    });
  }

  release(): void {
    this.open?.();
    this.gate = undefined;
  }

  validate(): SubsystemError[] {
    return [];
  }

  async prepare(): Promise<SubsystemError[]> {
    return [];
  }

  async apply(_ctx: CommitContext): Promise<void> {
    this.applying = true;
    await this.gate;
    this.applying = false;
  }

  async abort(): Promise<void> {}

  async undo(): Promise<void> {}
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('netconf-ops: get-config of running during a commit', function () {
  let h: Harness;
  const gated = new GatedSubsystem();
  before(async () => {
    h = await openHarness({ subsystems: [gated] });
  });
  after(async () => {
    gated.release();
    await h.close();
  });

  it('answers with the committed running while a large commit applies', async () => {
    const writer = h.session(1), reader = h.session(2);
    await h.rpc(writer, editCandidate(profile('before')));
    await h.rpc(writer, '<commit/>');
    // 300 new entries: more path operations than an in-place replay takes, so a new tree is parsed.
    await h.rpc(writer, editCandidate(Array.from({ length: 300 }, (_, i) => profile(`p${i}`)).join('')));
    gated.close();
    const commit = h.rpc(writer, '<commit/>');
    await until(() => gated.applying, 'the commit reaches apply');
    const during = await h.rpc(reader, GET_RUNNING);
    expect(gated.applying, 'answered while the commit is still applying').to.equal(true);
    expect(during).to.include('<name>before</name>').and.not.include('<name>p0</name>');
    gated.release();
    expect(await commit).to.include('<ok/>');
    expect(await h.rpc(reader, GET_RUNNING)).to.include('<name>p299</name>');
  });

  it('waits while a small commit has edited running in place, then shows it committed', async () => {
    const writer = h.session(3), reader = h.session(4);
    await h.rpc(writer, editCandidate(profile('small')));
    gated.close();
    const commit = h.rpc(writer, '<commit/>');
    await until(() => gated.applying, 'the commit reaches apply');
    let answered = false;
    const read = h.rpc(reader, GET_RUNNING).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(answered, 'no answer while running holds uncommitted edits').to.equal(false);
    gated.release();
    expect(await commit).to.include('<ok/>');
    expect(await read).to.include('<name>small</name>');
  });
});
