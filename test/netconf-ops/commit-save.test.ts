// Issue 8 (commit latency): the durable save of running runs while the subsystems apply, and a
// commit is answered <ok/> only when both succeeded. Both small and large datastores are saved by a
// journal record (a small one's folded into running.xml when commits pause); running.xml is written
// whole when the journal cannot take the change. If an apply fails after the save, the save is
// undone (the record taken back, or running.xml written back); if the save fails, the applies are
// undone. Either way the client gets operation-failed, and running, in memory and on disk, is the
// previous one.
import { expect } from 'chai';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ConfigStore } from '../../agent/datastore/config-store.js';
import type { CommitContext, CommitSubsystem, SubsystemError } from '../../core/subsystem.js';
import { JOURNAL_MIN_BYTES } from '../../agent/datastore/running-journal.js';
import { CommitSave } from '../../agent/transaction/commit-save.js';
import { editCandidate, editRunning, GET_RUNNING, openHarness, profile, type Harness, type TestSession } from './ops-harness.js';
import { foldedRunningXml, journalRecords } from '../helpers/folded-running.js';

/** A subsystem that records its calls; its apply can be held open or made to fail. */
class ProfileSubsystem implements CommitSubsystem {
  readonly name = 'profiles';
  readonly owns = ['/tandem-network-profile:network-profile'];
  readonly calls: string[] = [];
  failApply = false;
  failPrepare = false;
  /** validate refuses a configuration that holds a profile of this name (as at start, too). */
  refuseProfile: string | undefined;
  /** While set, prepare waits for it. */
  holdPrepare: Promise<void> | undefined;
  onPrepare: (() => void) | undefined;
  /** While set, apply waits for it (the test looks at the disk meanwhile). */
  hold: Promise<void> | undefined;
  onApply: (() => void) | undefined;
  validate(ctx: CommitContext): SubsystemError[] {
    this.calls.push('validate');
    const profiles = ctx.newConfig['tandem-network-profile:network-profile'];
    const refused = this.refuseProfile !== undefined && Array.isArray(profiles) && profiles.some((p) => (p as { name?: string }).name === this.refuseProfile);
    return refused ? [{ message: `profile ${this.refuseProfile} refused` }] : [];
  }
  async prepare(): Promise<SubsystemError[]> {
    this.calls.push('prepare');
    this.onPrepare?.();
    if (this.holdPrepare) await this.holdPrepare;
    return this.failPrepare ? [{ message: 'injected prepare failure' }] : [];
  }
  async apply(_ctx: CommitContext): Promise<void> {
    this.calls.push('apply');
    this.onApply?.();
    if (this.hold) await this.hold;
    if (this.failApply) throw new Error('injected apply failure');
  }
  async abort(): Promise<void> {
    this.calls.push('abort');
  }
  async undo(): Promise<void> {
    this.calls.push('undo');
  }
}

function store(h: Harness): ConfigStore {
  return (h.ops as unknown as { svc: { store: ConfigStore } }).svc.store;
}

/** What is on disk for running: running.xml and the journal (empty when absent). */
function onDisk(dir: string): string {
  const read = (f: string): string => (existsSync(path.join(dir, f)) ? readFileSync(path.join(dir, f), 'utf8') : '');
  return `${read('running.xml')}\n--journal--\n${read('running.journal')}`;
}

/** 600 firewall rules: running.xml above JOURNAL_MIN_BYTES, so commits are journaled. */
function largeVrf(): string {
  const rules = Array.from({ length: 600 }, (_, i) => `<rule><name>rule-number-${i}</name><action>accept</action><protocol>tcp</protocol><destination-port><start>${1 + i}</start></destination-port></rule>`).join('');
  return `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="urn:tandem:yang:tandem-firewall">${rules}</firewall></vrf>`;
}

/** A copy of the state directory as it is now (as a crash would leave it), in a new temp directory. */
function snapshot(dir: string): string {
  const copy = mkdtempSync(path.join(os.tmpdir(), 'tandem-crash-'));
  for (const f of readdirSync(dir)) if (statSync(path.join(dir, f)).isFile()) copyFileSync(path.join(dir, f), path.join(copy, f));
  return copy;
}

/** Polls `cond` every 2 ms until it holds (at most 5 s), then calls `done` with whether it did. */
function pollThen(cond: () => boolean, done: (held: boolean) => void): void {
  const started = Date.now();
  const poll = (): void => {
    const held = cond();
    if (held || Date.now() - started > 5000) done(held);
    else setTimeout(poll, 2);
  };
  poll();
}

/**
 * Hold `sub`'s next prepare until the journal holds `records` records (at most 5 s), then run
 * `then` (the test copies the disk there) and let prepare go on; says whether the record came.
 */
function holdPrepareUntilRecords(sub: ProfileSubsystem, dir: string, records: number, then: () => void = () => {}): { seen: () => boolean } {
  let seen = false;
  let release!: () => void;
  sub.holdPrepare = new Promise<void>((r) => (release = r));
  sub.onPrepare = () => pollThen(() => journalRecords(dir) === records, (held) => {
    seen = held;
    if (held) then();
    sub.holdPrepare = undefined;
    sub.onPrepare = undefined;
    release();
  });
  return { seen: () => seen };
}

/** Hold `sub`'s next apply until what is on disk differs from `before` (at most 5 s); says whether it did. */
function holdApplyUntilSaved(sub: ProfileSubsystem, dir: string, before: string): { saved: () => boolean } {
  let saved = false;
  let release!: () => void;
  sub.hold = new Promise<void>((r) => (release = r));
  sub.onApply = () => pollThen(() => onDisk(dir) !== before, (held) => {
    saved = held;
    sub.hold = undefined;
    sub.onApply = undefined;
    release();
  });
  return { saved: () => saved };
}

for (const size of ['small', 'large'] as const) {
  describe(`netconf-ops: the save of running alongside the applies (${size} datastore: journal record${size === 'small' ? ', folded into running.xml when commits pause' : ''})`, function () {
    this.timeout(60000);
    let h: Harness;
    let s: TestSession;
    let sub: ProfileSubsystem;
    // Both sizes: one journal record per commit (issue 8: one disk flush before <ok/>).
    const kind = 'journal';

    beforeEach(async () => {
      sub = new ProfileSubsystem();
      h = await openHarness({ subsystems: [sub] });
      s = h.session(1);
      if (size === 'large') {
        expect(await h.rpc(s, editRunning(largeVrf()))).to.equal('<ok/>');
        expect(readFileSync(path.join(h.dir, 'running.xml')).length).to.be.greaterThan(JOURNAL_MIN_BYTES);
      }
      expect(await h.rpc(s, editCandidate(profile('base')))).to.equal('<ok/>');
      expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
      // No fold pending (a small datastore's): what is on disk changes only by what a test does.
      if (size === 'small') await foldedRunningXml(h.dir);
    });
    afterEach(async () => {
      await h.close();
    });

    it('is on disk while the subsystems still apply; <ok/> after both; a restart gives the same running', async () => {
      const st = store(h);
      const saves = { ...st.saves };
      const held = holdApplyUntilSaved(sub, h.dir, onDisk(h.dir));
      expect(await h.rpc(s, editCandidate(profile('second')))).to.equal('<ok/>');
      expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
      expect(held.saved(), 'the save was done while apply was still running').to.equal(true);
      expect(st.saves).to.deep.equal({ ...saves, [kind]: saves[kind] + 1 });
      const expected = await h.rpc(s, GET_RUNNING);
      expect(expected).to.contain('<name>second</name>');
      await h.restart();
      s = h.session(2);
      expect(await h.rpc(s, GET_RUNNING)).to.equal(expected);
    });

    it('an apply that fails after the save undoes the save: operation-failed, running unchanged in memory and on disk', async () => {
      const before = await h.rpc(s, GET_RUNNING);
      const disk = onDisk(h.dir);
      sub.failApply = true;
      // The apply fails only once the refused configuration is on disk, so that undoing the save is what is tested.
      const held = holdApplyUntilSaved(sub, h.dir, disk);
      sub.calls.length = 0;
      expect(await h.rpc(s, editCandidate(profile('refused')))).to.equal('<ok/>');
      const [e] = await h.rpcErrors(s, '<commit/>');
      expect(e.tag).to.equal('operation-failed');
      expect(e.message).to.contain('profiles: apply failed').and.contain('injected apply failure')
        .and.contain('the previous configuration is back in place');
      expect(sub.calls).to.deep.equal(['validate', 'prepare', 'apply', 'undo']);
      expect(held.saved(), 'the refused configuration had been saved').to.equal(true);
      expect(onDisk(h.dir), 'the save is undone: running.xml written back, or the record taken back').to.equal(disk);
      expect(await h.rpc(s, GET_RUNNING)).to.equal(before);
      sub.failApply = false;
      await h.restart();
      s = h.session(2);
      expect(await h.rpc(s, GET_RUNNING), 'nothing of the refused commit on disk').to.equal(before);
      // And saving goes on from there.
      expect(await h.rpc(s, editCandidate(profile('after')))).to.equal('<ok/>');
      expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
      const after = await h.rpc(s, GET_RUNNING);
      await h.restart();
      s = h.session(3);
      expect(await h.rpc(s, GET_RUNNING)).to.equal(after);
      expect(after).to.contain('<name>after</name>').and.not.contain('<name>refused</name>');
    });

    it('a save that fails undoes the applies: operation-failed, running unchanged; the next commit saves whole', async () => {
      const before = await h.rpc(s, GET_RUNNING);
      // Restarted, the journal is closed; then neither it nor running.xml can be written (a
      // directory stands at each path, with an entry so that nothing can be renamed over it).
      await h.restart();
      s = h.session(2);
      const journal = path.join(h.dir, 'running.journal');
      const runningXml = path.join(h.dir, 'running.xml');
      const moved = path.join(h.dir, 'moved');
      mkdirSync(moved);
      if (existsSync(journal)) renameSync(journal, path.join(moved, 'running.journal'));
      renameSync(runningXml, path.join(moved, 'running.xml'));
      mkdirSync(journal);
      mkdirSync(runningXml);
      writeFileSync(path.join(runningXml, 'entry'), 'x');
      try {
        sub.calls.length = 0;
        expect(await h.rpc(s, editCandidate(profile('unsaved')))).to.equal('<ok/>');
        const [e] = await h.rpcErrors(s, '<commit/>');
        expect(e.tag).to.equal('operation-failed');
        expect(e.message).to.contain('running could not be saved').and.contain('the previous configuration is back in place');
        expect(sub.calls).to.deep.equal(['validate', 'prepare', 'apply', 'undo']);
        expect(await h.rpc(s, GET_RUNNING)).to.equal(before);
      } finally {
        rmSync(journal, { recursive: true, force: true });
        rmSync(runningXml, { recursive: true, force: true });
      }
      // The disk is writable again: the candidate still holds the edit, and this commit writes running.xml whole.
      const whole = store(h).saves.whole;
      expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
      expect(store(h).saves.whole).to.equal(whole + 1);
      const after = await h.rpc(s, GET_RUNNING);
      expect(after).to.contain('<name>unsaved</name>');
      await h.restart();
      s = h.session(3);
      expect(await h.rpc(s, GET_RUNNING)).to.equal(after);
    });

    it('writes the journal record as the commit starts (on disk while the subsystems prepare); a commit refused at prepare, at validate or by libyang takes it back before its rpc-error', async () => {
      const disk = onDisk(h.dir);
      const records = journalRecords(h.dir);
      const held = holdPrepareUntilRecords(sub, h.dir, records + 1);
      sub.failPrepare = true;
      sub.calls.length = 0;
      expect(await h.rpc(s, editCandidate(profile('refused')))).to.equal('<ok/>');
      const [e] = await h.rpcErrors(s, '<commit/>');
      expect(e.tag).to.equal('operation-failed');
      expect(e.message).to.contain('injected prepare failure');
      expect(held.seen(), 'the record was on disk while prepare ran').to.equal(true);
      expect(sub.calls).to.deep.equal(['validate', 'prepare', 'abort']);
      expect(onDisk(h.dir), 'the record is taken back').to.equal(disk);
      // Refused at validate: the same.
      sub.failPrepare = false;
      sub.refuseProfile = 'refused';
      const [v] = await h.rpcErrors(s, '<commit/>');
      expect(v.message).to.contain('profile refused refused');
      expect(onDisk(h.dir)).to.equal(disk);
      // Refused by libyang (a must): the record written before the validation is taken back too.
      sub.refuseProfile = undefined;
      const [y] = await h.rpcErrors(s, editRunning(profile('p', 'tcp-proxy', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>')));
      expect(y.extra.appTag).to.equal('connection-mirror-requires-tcp-fast-path');
      expect(onDisk(h.dir)).to.equal(disk);
      // And the journal goes on from there.
      expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
      expect(journalRecords(h.dir)).to.equal(records + 1);
      const expected = await h.rpc(s, GET_RUNNING);
      expect(expected).to.contain('<name>refused</name>');
      await h.restart();
      s = h.session(2);
      expect(await h.rpc(s, GET_RUNNING)).to.equal(expected);
    });

    it('a record whose commit was never answered (the agent stopped before taking it back): dropped at start if the subsystems refuse it, kept aside; replayed if they take it', async () => {
      const before = await h.rpc(s, GET_RUNNING);
      const records = journalRecords(h.dir);
      let crashed = '';
      // The disk as a crash would leave it: the record written, the commit not answered.
      holdPrepareUntilRecords(sub, h.dir, records + 1, () => {
        crashed = snapshot(h.dir);
      });
      sub.failPrepare = true;
      expect(await h.rpc(s, editCandidate(profile('unanswered')))).to.equal('<ok/>');
      expect((await h.rpcErrors(s, '<commit/>'))[0]!.message).to.contain('injected prepare failure');
      expect(crashed, 'the record was on disk while prepare ran').not.to.equal('');
      const again = snapshot(crashed);
      const dirs = [crashed, again];
      try {
        // Started on it, with a subsystem that refuses it: running is what every answered commit made.
        const refusing = new ProfileSubsystem();
        refusing.refuseProfile = 'unanswered';
        const h2 = await openHarness({ dir: crashed, subsystems: [refusing] });
        try {
          expect(await h2.rpc(h2.session(1), GET_RUNNING)).to.equal(before);
          expect(readFileSync(path.join(crashed, 'running.journal.refused'), 'utf8')).to.contain('unanswered');
          expect(journalRecords(crashed), 'the record is cut off the journal').to.equal(records);
        } finally {
          await h2.close();
        }
        // A subsystem that takes it: the commit is in running (its client never had an answer).
        const h3 = await openHarness({ dir: again, subsystems: [new ProfileSubsystem()] });
        try {
          expect(await h3.rpc(h3.session(1), GET_RUNNING)).to.contain('<name>unanswered</name>');
          expect(existsSync(path.join(again, 'running.journal.refused'))).to.equal(false);
        } finally {
          await h3.close();
        }
      } finally {
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      }
    });

    it('a save that a refused commit left on disk is taken back when the commit is over (the safety net behind the transaction\'s own undo)', async () => {
      const st = store(h);
      const disk = onDisk(h.dir);
      expect(await h.rpc(s, editCandidate(profile('left-behind')))).to.equal('<ok/>');
      const save = new CommitSave(st, st.running.root, st.candidate);
      save.begin();
      await save.run(); // saved, as by a transaction that then failed in a way it did not undo
      expect(onDisk(h.dir)).not.to.equal(disk);
      await save.discard(); // never answered
      expect(onDisk(h.dir), 'the save is taken back').to.equal(disk);
    });

    it('a record answered <ok/> is never dropped: a start whose subsystems refuse it does not start', async () => {
      expect(await h.rpc(s, editCandidate(profile('answered')))).to.equal('<ok/>');
      expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
      const crashed = snapshot(h.dir);
      try {
        expect(readFileSync(path.join(crashed, 'running.journal'), 'utf8')).to.contain('"answered":true');
        const refusing = new ProfileSubsystem();
        refusing.refuseProfile = 'answered';
        let caught: unknown;
        try {
          await (await openHarness({ dir: crashed, subsystems: [refusing] })).close();
        } catch (err) {
          caught = err;
        }
        expect(String(caught)).to.contain('was refused at start').and.contain('profile answered refused');
        expect(existsSync(path.join(crashed, 'running.journal.refused'))).to.equal(false);
      } finally {
        rmSync(crashed, { recursive: true, force: true });
      }
    });

    if (size === 'small') {
      it('the journal is folded into running.xml once commits pause, in place: the next commit is one record again; a restart gives the same running', async () => {
        const runningXml = path.join(h.dir, 'running.xml');
        expect(await h.rpc(s, editCandidate(profile('folded')))).to.equal('<ok/>');
        expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
        expect(journalRecords(h.dir), 'saved as a record first').to.be.greaterThan(0);
        expect(readFileSync(runningXml, 'utf8')).not.to.contain('<name>folded</name>');
        expect(await foldedRunningXml(h.dir)).to.contain('<name>folded</name>').and.contain('<name>base</name>');
        expect(existsSync(path.join(h.dir, 'running.journal')), 'the journal file is kept (header only)').to.equal(true);
        const saves = { ...store(h).saves };
        expect(await h.rpc(s, editCandidate(profile('after-fold')))).to.equal('<ok/>');
        expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
        expect(store(h).saves).to.deep.equal({ ...saves, journal: saves.journal + 1 });
        expect(journalRecords(h.dir)).to.equal(1);
        const expected = await h.rpc(s, GET_RUNNING);
        await h.restart();
        s = h.session(2);
        expect(await h.rpc(s, GET_RUNNING)).to.equal(expected);
        // A clean stop folded it: running.xml alone is current.
        expect(readFileSync(runningXml, 'utf8')).to.contain('<name>after-fold</name>');
      });

      it('a commit that writes running.xml whole (the journal cannot take it) stages the new text while it prepares; a refused one leaves running.xml as it was and no temp file', async () => {
        const runningXml = path.join(h.dir, 'running.xml');
        await foldedRunningXml(h.dir);
        // As after a failed journal write: no record until running.xml is written whole.
        store(h).journal.invalidate();
        const temps = (): string[] => readdirSync(h.dir).filter((f) => /^\.running\.xml\..*\.tmp$/.test(f));
        const before = readFileSync(runningXml, 'utf8');
        let stagedDuringPrepare: string[] = [];
        sub.onPrepare = () => {
          stagedDuringPrepare = temps().map((f) => readFileSync(path.join(h.dir, f), 'utf8'));
        };
        sub.failPrepare = true;
        expect(await h.rpc(s, editCandidate(profile('refused-at-prepare')))).to.equal('<ok/>');
        const [e] = await h.rpcErrors(s, '<commit/>');
        expect(e.tag).to.equal('operation-failed');
        expect(e.message).to.contain('injected prepare failure');
        expect(stagedDuringPrepare, 'the new running.xml was staged before prepare').to.have.length(1);
        expect(stagedDuringPrepare[0]).to.contain('<name>refused-at-prepare</name>');
        expect(readFileSync(runningXml, 'utf8')).to.equal(before);
        expect(temps(), 'the temp file is removed').to.deep.equal([]);
        // The next commit installs its own staged text.
        store(h).journal.invalidate();
        sub.failPrepare = false;
        sub.onPrepare = undefined;
        expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
        expect(readFileSync(runningXml, 'utf8')).to.contain('<name>refused-at-prepare</name>');
        expect(temps()).to.deep.equal([]);
      });
    }

    if (size === 'large') {
      it('after a record cut short by a crash, the next record starts on a line of its own', async () => {
        const journal = path.join(h.dir, 'running.journal');
        const expected = await h.rpc(s, GET_RUNNING);
        // As a crash during a write would leave it.
        appendFileSync(journal, '[[0,1],{"n":{"m":"tandem-netw');
        await h.restart();
        s = h.session(2);
        expect(await h.rpc(s, GET_RUNNING)).to.equal(expected);
        expect(readFileSync(journal, 'utf8').endsWith('\n'), 'the torn record is cut off').to.equal(true);
        expect(await h.rpc(s, editCandidate(profile('next')))).to.equal('<ok/>');
        expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
        const expected2 = await h.rpc(s, GET_RUNNING);
        await h.restart();
        s = h.session(3);
        expect(await h.rpc(s, GET_RUNNING)).to.equal(expected2);
      });
    }
  });
}
