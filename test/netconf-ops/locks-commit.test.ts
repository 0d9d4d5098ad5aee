import { expect } from 'chai';
import { editCandidate, editRunning, GET_CANDIDATE, GET_RUNNING, openHarness, profile, waitFor, type Harness } from './ops-harness.js';
import type { CommitContext, CommitSubsystem, SubsystemError } from '../../core/subsystem.js';

/** A subsystem that records every call and fails prepare when told to. */
class RecordingSubsystem implements CommitSubsystem {
  readonly calls: string[] = [];
  failPrepare = false;
  notImplemented = false;
  constructor(readonly name: string, readonly owns: string[]) {}
  last: CommitContext | undefined;
  validate(ctx: CommitContext): SubsystemError[] {
    this.calls.push('validate');
    this.last = ctx;
    const np = ctx.newConfig['tandem-network-profile:network-profile'] as { name: string; type: string }[] | undefined;
    if (this.notImplemented && np?.some((p) => p.type === 'udp-fast-path')) {
      return [{ message: "not yet implemented: /tandem-network-profile:network-profile/type 'udp-fast-path'", path: '/tandem-network-profile:network-profile/type' }];
    }
    return [];
  }
  async prepare(): Promise<SubsystemError[]> {
    this.calls.push('prepare');
    return this.failPrepare ? [{ message: 'no room for this profile' }] : [];
  }
  async apply(): Promise<void> {
    this.calls.push('apply');
  }
  async abort(): Promise<void> {
    this.calls.push('abort');
  }
}

describe('netconf-ops: locks, confirmed commit and the commit transaction', function () {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it('lock-denied with the holder session-id; in-use for edits of a locked datastore; released at session end', async () => {
    h = await openHarness();
    const a = h.session(1);
    const b = h.session(2);
    expect(await h.rpc(a, '<lock><target><running/></target></lock>')).to.equal('<ok/>');
    const [denied] = await h.rpcErrors(b, '<lock><target><running/></target></lock>');
    expect(denied.tag).to.equal('lock-denied');
    expect(denied.extra.info).to.deep.include({ name: 'session-id', value: '1' });
    const [inUse] = await h.rpcErrors(b, editRunning(profile('x')));
    expect(inUse.tag).to.equal('in-use');
    const state = await h.rpc(b, '<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><datastores/></netconf-state></filter></get>');
    expect(state).to.contain('<locked-by-session>1</locked-by-session>');
    const [notHolder] = await h.rpcErrors(b, '<unlock><target><running/></target></unlock>');
    expect(notHolder.tag).to.equal('operation-failed');
    h.end(a, 'dropped');
    await waitFor(() => true, 'tick', 10);
    expect(await h.rpc(b, '<lock><target><running/></target></lock>')).to.equal('<ok/>');
  });

  it('refuses to lock a candidate with uncommitted changes, and discards a dead session\'s candidate', async () => {
    h = await openHarness();
    const a = h.session(1);
    const b = h.session(2);
    await h.rpc(a, editCandidate(profile('pending')));
    const [denied] = await h.rpcErrors(b, '<lock><target><candidate/></target></lock>');
    expect(denied.tag).to.equal('lock-denied');
    expect(denied.extra.info).to.deep.include({ name: 'session-id', value: '1' });
    h.end(a, 'dropped');
    expect(await h.rpc(b, '<lock><target><candidate/></target></lock>')).to.equal('<ok/>');
    expect(await h.rpc(b, GET_CANDIDATE)).to.not.contain('<name>pending</name>');
  });

  it('unlock keeps the candidate\'s changes; a session ending with the candidate locked discards them', async () => {
    h = await openHarness();
    const a = h.session(1);
    await h.rpc(a, '<lock><target><candidate/></target></lock>');
    await h.rpc(a, editCandidate(profile('kept')));
    await h.rpc(a, '<unlock><target><candidate/></target></unlock>');
    expect(await h.rpc(a, GET_CANDIDATE)).to.contain('<name>kept</name>');
    await h.rpc(a, '<commit/>');
    expect(await h.rpc(a, GET_RUNNING)).to.contain('<name>kept</name>');
    const b = h.session(2);
    await h.rpc(b, '<lock><target><candidate/></target></lock>');
    await h.rpc(b, editCandidate(profile('abandoned')));
    h.end(b, 'dropped');
    expect(await h.rpc(a, GET_CANDIDATE)).to.not.contain('<name>abandoned</name>');
    expect(await h.rpc(a, '<lock><target><candidate/></target></lock>')).to.equal('<ok/>');
  });

  it('running cannot be locked by another session while a confirmed commit is pending', async () => {
    h = await openHarness();
    const a = h.session(1);
    const b = h.session(2);
    await h.rpc(a, editCandidate(profile('c1')));
    await h.rpc(a, '<commit><confirmed/></commit>');
    const [e] = await h.rpcErrors(b, '<lock><target><running/></target></lock>');
    expect(e.tag).to.equal('lock-denied');
    expect(e.extra.info).to.deep.include({ name: 'session-id', value: '1' });
    expect(await h.rpc(a, '<lock><target><running/></target></lock>')).to.equal('<ok/>');
  });

  it('a confirmed commit reverts on timeout and announces start and timeout', async () => {
    h = await openHarness();
    const a = h.session(1);
    await h.rpc(a, '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>');
    await h.rpc(a, editCandidate(profile('trial')));
    await h.rpc(a, '<commit><confirmed/><confirm-timeout>1</confirm-timeout></commit>');
    expect(await h.rpc(a, GET_RUNNING)).to.contain('<name>trial</name>');
    await waitFor(() => a.notifications.some((n) => n.includes('<confirm-event>timeout</confirm-event>')), 'confirmed-commit timeout', 5000);
    expect(await h.rpc(a, GET_RUNNING)).to.not.contain('<name>trial</name>');
    expect(a.notifications.some((n) => n.includes('<confirm-event>start</confirm-event>') && n.includes('<timeout>1</timeout>'))).to.equal(true);
  });

  it('a confirming commit keeps it; its session ending reverts it unless persist; persist-id confirms from another session', async () => {
    h = await openHarness();
    const a = h.session(1);
    await h.rpc(a, editCandidate(profile('one')));
    await h.rpc(a, '<commit><confirmed/></commit>');
    await h.rpc(a, '<commit/>');
    h.end(a);
    const b = h.session(2);
    expect(await h.rpc(b, GET_RUNNING)).to.contain('<name>one</name>');

    await h.rpc(b, editCandidate(profile('two')));
    await h.rpc(b, '<commit><confirmed/></commit>');
    const c = h.session(3);
    const [other] = await h.rpcErrors(c, '<commit/>');
    expect(other.tag).to.equal('in-use');
    h.end(b, 'dropped');
    await waitFor(() => true, 'tick', 10);
    expect(await h.rpc(c, GET_RUNNING)).to.not.contain('<name>two</name>');

    await h.rpc(c, editCandidate(profile('three')));
    await h.rpc(c, '<commit><confirmed/><persist>tok</persist></commit>');
    h.end(c);
    const d = h.session(4);
    expect(await h.rpc(d, GET_RUNNING)).to.contain('<name>three</name>');
    const [wrong] = await h.rpcErrors(d, '<commit><persist-id>nope</persist-id></commit>');
    expect(wrong.tag).to.equal('invalid-value');
    await h.rpc(d, '<commit><persist-id>tok</persist-id></commit>');
    expect(await h.rpc(d, GET_RUNNING)).to.contain('<name>three</name>');
  });

  it('a confirmed commit still unconfirmed when the agent stops is reverted at the next start', async () => {
    h = await openHarness();
    const a = h.session(1);
    await h.rpc(a, editRunning(profile('base')));
    await h.rpc(a, editCandidate(profile('unconfirmed')));
    await h.rpc(a, '<commit><confirmed/><persist>p1</persist></commit>');
    expect(await h.rpc(a, GET_RUNNING)).to.contain('<name>unconfirmed</name>');
    await h.restart();
    const b = h.session(2);
    const cfg = await h.rpc(b, GET_RUNNING);
    expect(cfg).to.contain('<name>base</name>').and.not.contain('<name>unconfirmed</name>');
    await h.restart();
    expect(await h.rpc(h.session(3), GET_RUNNING)).to.contain('<name>base</name>');
  });

  it('cancel-commit reverts a pending confirmed commit', async () => {
    h = await openHarness();
    const a = h.session(1);
    await h.rpc(a, editCandidate(profile('undo')));
    await h.rpc(a, '<commit><confirmed/></commit>');
    await h.rpc(a, '<cancel-commit/>');
    expect(await h.rpc(a, GET_RUNNING)).to.not.contain('<name>undo</name>');
    const [none] = await h.rpcErrors(a, '<cancel-commit/>');
    expect(none.tag).to.equal('operation-failed');
  });

  it('runs validate, prepare, apply on the subsystems; a failed prepare aborts every one and leaves running unchanged', async () => {
    const fast = new RecordingSubsystem('fastpath', ['/tandem-network-profile:network-profile']);
    const sync = new RecordingSubsystem('sync', ['/tandem-network-profile:network-profile/tcp-fast-path']);
    const other = new RecordingSubsystem('ha', ['/tandem-ha:ha']);
    h = await openHarness({ subsystems: [fast, sync, other] });
    const a = h.session(1);
    await h.rpc(a, editRunning(profile('ok')));
    expect(fast.calls).to.deep.equal(['validate', 'prepare', 'apply']);
    const names = (c: Record<string, unknown>) => ((c['tandem-network-profile:network-profile'] ?? []) as { name: string }[]).map((p) => p.name);
    expect(names(fast.last!.oldConfig)).to.deep.equal([]);
    expect(fast.last!.changedPaths).to.include("/tandem-network-profile:network-profile[name='ok']");
    expect(names(fast.last!.newConfig)).to.deep.equal(['ok']);
    expect(fast.last!.newConfig['tandem-network-profile:network-profile']).to.deep.equal([
      { name: 'ok', type: 'tcp-fast-path', 'tcp-fast-path': { 'session-idle-timeout': 300, 'enable-syn-protection': false, 'connection-mirror': false } }]);
    expect(sync.calls).to.deep.equal(['validate', 'prepare', 'apply']);
    expect(other.calls).to.deep.equal([]);
    fast.calls.length = 0;
    sync.calls.length = 0;
    sync.failPrepare = true;
    await h.rpc(a, editCandidate(profile('refused')));
    const [e] = await h.rpcErrors(a, '<commit/>');
    expect(e.tag).to.equal('operation-failed');
    expect(e.message).to.contain('no room for this profile');
    expect(fast.calls).to.deep.equal(['validate', 'prepare', 'abort']);
    expect(sync.calls).to.deep.equal(['validate', 'prepare', 'abort']);
    expect(names(fast.last!.oldConfig)).to.deep.equal(['ok']);
    expect(names(fast.last!.newConfig)).to.deep.equal(['ok', 'refused']);
    expect(await h.rpc(a, GET_RUNNING)).to.not.contain('<name>refused</name>');
    // Running is intact and takes the next commit.
    sync.failPrepare = false;
    await h.rpc(a, '<commit/>');
    expect(await h.rpc(a, GET_RUNNING)).to.contain('<name>refused</name>');
    expect(names(fast.last!.oldConfig)).to.deep.equal(['ok']);
  });

  it('rejects what a subsystem reports as not yet implemented', async () => {
    const fast = new RecordingSubsystem('fastpath', ['/tandem-network-profile:network-profile']);
    fast.notImplemented = true;
    h = await openHarness({ subsystems: [fast] });
    const a = h.session(1);
    const [e] = await h.rpcErrors(a, editRunning(profile('u', 'udp-fast-path')));
    expect(e.message).to.contain('not yet implemented: /tandem-network-profile:network-profile/type');
    expect(fast.calls).to.deep.equal(['validate']);
  });
});
