// A commit hands subsystems the configuration as RFC 7951 JSON. It is derived from the previous
// commit's JSON (only the changed top-level subtrees are printed again), so it must always equal
// a full print of what was saved, whatever path the commit took (in place, full parse, refused).
import { expect } from 'chai';
import type { CommitContext, CommitSubsystem, ConfigJson, SubsystemError } from '../../core/subsystem.js';
import { editCandidate, editRunning, NP, openHarness, type Harness, type TestSession } from './ops-harness.js';
import { foldedRunningXml } from '../helpers/folded-running.js';

const VRF = 'urn:tandem:yang:tandem-vrf';
const FW = 'urn:tandem:yang:tandem-firewall';
const SYS = 'urn:tandem:yang:tandem-system';
const NC = 'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"';

/** Keeps the JSON of every applied commit; refuses a profile named 'refused'. */
class RecordingSubsystem implements CommitSubsystem {
  readonly name = 'recording';
  readonly owns = ['/tandem-network-profile:network-profile', '/tandem-vrf:vrf', '/tandem-system:system'];
  applied: { oldConfig: ConfigJson; newConfig: ConfigJson }[] = [];

  validate(ctx: CommitContext): SubsystemError[] {
    const profiles = ctx.newConfig['tandem-network-profile:network-profile'];
    return Array.isArray(profiles) && profiles.some((p) => (p as { name?: string }).name === 'refused')
      ? [{ message: 'profile refused by the test' }] : [];
  }

  async prepare(ctx: CommitContext): Promise<SubsystemError[]> {
    return this.validate(ctx);
  }

  async apply(ctx: CommitContext): Promise<void> {
    // A deep copy: what is checked is what the subsystem was given at the time.
    this.applied.push({ oldConfig: structuredClone(ctx.oldConfig), newConfig: structuredClone(ctx.newConfig) });
  }

  async abort(): Promise<void> {}
}

function profile(name: string, extra = ''): string {
  return `<network-profile xmlns="${NP}" ${NC}><name>${name}</name><type>tcp-fast-path</type>${extra}</network-profile>`;
}

describe('netconf-ops: the JSON a commit hands to subsystems', function () {
  let h: Harness;
  let s: TestSession;
  const sub = new RecordingSubsystem();
  before(async () => {
    h = await openHarness({ subsystems: [sub] });
    s = h.session(1);
  });
  after(async () => {
    await h.close();
  });

  /** The last applied JSON equals a full print of the saved running, and its old side the one before. */
  async function expectLastMatchesSaved(): Promise<ConfigJson> {
    const saved = (await foldedRunningXml(h.dir)).replace(/^\s*<config[^>]*>/, '').replace(/<\/config>\s*$/, '');
    const fresh = h.yang.parse(saved, { format: 'xml', kind: 'config', validate: true });
    let full: ConfigJson;
    try {
      const text = fresh.print({ format: 'json', withDefaults: 'report-all' });
      full = text.trim() ? JSON.parse(text) as ConfigJson : {};
    } finally {
      fresh.free();
    }
    const n = sub.applied.length;
    expect(n, 'commits applied').to.be.greaterThan(1);
    expect(sub.applied[n - 1]!.newConfig).to.deep.equal(full);
    expect(sub.applied[n - 1]!.oldConfig).to.deep.equal(sub.applied[n - 2]!.newConfig);
    return full;
  }

  it('equals a full print through small edits, a refused commit, a large edit and removals', async () => {
    await h.rpc(s, editRunning(profile('a')));
    await h.rpc(s, editRunning(profile('b', '<tcp-fast-path><session-idle-timeout>30</session-idle-timeout></tcp-fast-path>')));
    let json = await expectLastMatchesSaved();
    expect(json['tandem-network-profile:network-profile']).to.have.length(2);

    await h.rpc(s, editCandidate(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><rule><name>r1</name><action>accept</action></rule></firewall></vrf>`));
    await h.rpc(s, '<commit/>');
    json = await expectLastMatchesSaved();
    expect(json).to.have.property('tandem-vrf:vrf');

    const refusedAt = sub.applied.length;
    const errors = await h.rpcErrors(s, editRunning(profile('refused')));
    expect(errors[0]!.message).to.contain('refused by the test');
    expect(sub.applied.length).to.equal(refusedAt);
    await h.rpc(s, editRunning(`<system xmlns="${SYS}"><fast-path><limits><conntrack><max>4096</max></conntrack></limits></fast-path></system>`));
    json = await expectLastMatchesSaved();
    expect(JSON.stringify(json)).to.not.contain('refused');

    // Entries of a short top-level list are reprinted one by one: changed in place, removed, added.
    await h.rpc(s, editRunning(profile('c')));
    await h.rpc(s, editRunning(profile('a', '<tcp-fast-path><session-idle-timeout>45</session-idle-timeout></tcp-fast-path>')));
    json = await expectLastMatchesSaved();
    expect(JSON.stringify(json['tandem-network-profile:network-profile'])).to.contain('45');
    await h.rpc(s, editRunning(`<network-profile xmlns="${NP}" ${NC} nc:operation="remove"><name>b</name></network-profile>`));
    json = await expectLastMatchesSaved();
    expect(json['tandem-network-profile:network-profile']).to.have.length(2);
    await h.rpc(s, editRunning(profile('b') + `<network-profile xmlns="${NP}" ${NC} nc:operation="remove"><name>c</name></network-profile>`));
    json = await expectLastMatchesSaved();
    expect((json['tandem-network-profile:network-profile'] as { name: string }[]).map((p) => p.name)).to.deep.equal(['a', 'b']);

    // More path operations than a commit replays in place: the new configuration is parsed whole.
    let many = '';
    for (let i = 0; i < 300; i++) many += profile(`bulk-${i}`);
    await h.rpc(s, editCandidate(many));
    await h.rpc(s, '<commit/>');
    json = await expectLastMatchesSaved();
    expect(json['tandem-network-profile:network-profile']).to.have.length(302);

    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}" ${NC} nc:operation="remove"><name>main</name></vrf>`));
    json = await expectLastMatchesSaved();
    expect(json).to.not.have.property('tandem-vrf:vrf');

    let removeAll = '';
    for (const name of ['a', 'b', ...Array.from({ length: 300 }, (_, i) => `bulk-${i}`)]) {
      removeAll += `<network-profile xmlns="${NP}" ${NC} nc:operation="remove"><name>${name}</name></network-profile>`;
    }
    await h.rpc(s, editRunning(removeAll));
    json = await expectLastMatchesSaved();
    expect(json).to.not.have.property('tandem-network-profile:network-profile');
  });
});
