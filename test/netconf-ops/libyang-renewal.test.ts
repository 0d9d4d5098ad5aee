// A fresh libyang instance after a large configuration is removed (agent/datastore/libyang-renewal.ts):
// the wasm memory goes back to its initial size, and running, candidate, startup, NACM and locks read
// exactly as before; commits and access control keep working on the new instance.
import { expect } from 'chai';
import { oversized, INITIAL_WASM_MEMORY_BYTES, renewalPays, renewLibyangIfOversized, shrankFromLarge } from '../../agent/datastore/libyang-renewal.js';
import type { UserDirectory } from '../../agent/nacm/nacm.js';
import type { YangContext } from '../../yang/libyang/api.js';
import { editCandidate, editRunning, GET_CANDIDATE, GET_RUNNING, NP, openHarness, profile, type Harness } from './ops-harness.js';

const VRF = 'urn:tandem:yang:tandem-vrf';
const FW = 'urn:tandem:yang:tandem-firewall';
const NACM = 'urn:ietf:params:xml:ns:yang:ietf-netconf-acm';
const RULES = 30000; // large enough to grow the wasm memory although the tree is built in slices (sliced-tree.ts)

// olga is in no directory group; the NACM configuration below lets her group write network profiles only.
const USERS: UserDirectory = { identity: (u) => Promise.resolve(u === 'olga' ? { groups: [], recovery: false } : { groups: ['admin'], recovery: false }) };
const NACM_CONFIG = `<nacm xmlns="${NACM}"><groups><group><name>ops</name><user-name>olga</user-name></group></groups>`
  + '<rule-list><name>ops</name><group>ops</group><rule><name>profiles</name><module-name>tandem-network-profile</module-name>'
  + '<access-operations>*</access-operations><action>permit</action></rule></rule-list></nacm>';

function rules(n: number): string {
  const list = Array.from({ length: n }, (_, i) => `<rule><name>r${i}</name><action>accept</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port></rule>`);
  return `<vrf xmlns="${VRF}"><name>big</name><firewall xmlns="${FW}"><default-action>accept</default-action>${list.join('')}</firewall></vrf>`;
}

describe('netconf-ops: a fresh libyang instance after a large removal', function () {
  this.timeout(180000);
  let h: Harness;
  before(async () => {
    h = await openHarness({ users: USERS });
    // The suite's context (shared with other suites) first moves to an instance of its own, so that
    // the large configuration below grows no memory that other contexts of this process still use.
    await h.yang.renew!();
  });
  after(async () => {
    await h.close();
  });

  it('decides on the memory against what libyang holds, never below the initial size', () => {
    expect(oversized(INITIAL_WASM_MEMORY_BYTES, 400_000)).to.equal(false);
    expect(oversized(INITIAL_WASM_MEMORY_BYTES + 2 * 1024 * 1024, 400_000)).to.equal(false);
    expect(oversized(24 * 1024 * 1024, 400_000)).to.equal(true);
    expect(oversized(60 * 1024 * 1024, 15 * 1024 * 1024)).to.equal(false); // the data needs it
  });

  it('counts the pages a large peak touched although the memory did not grow (large edits parse in the libyang worker)', () => {
    const MB = 1024 * 1024;
    // 10,000 rules in running: libyang held 6.7 MB of its 16 MB; after their removal 0.44 MB.
    expect(shrankFromLarge(0.44 * MB, 6.7 * MB)).to.equal(true);
    expect(renewalPays(INITIAL_WASM_MEMORY_BYTES, 0.44 * MB, 6.7 * MB)).to.equal(true);
    // A small configuration removed: nothing to give back.
    expect(shrankFromLarge(0.44 * MB, 1.5 * MB)).to.equal(false);
    // Shrunk, but what a fresh instance would save is small: no renewal (the GC and page release still happen).
    expect(shrankFromLarge(0.44 * MB, 3 * MB)).to.equal(true);
    expect(renewalPays(INITIAL_WASM_MEMORY_BYTES, 0.44 * MB, 3 * MB)).to.equal(false);
    // Still holding most of it: not a removal.
    expect(shrankFromLarge(5 * MB, 6.7 * MB)).to.equal(false);
  });

  it('after a removal from a large peak in unchanged memory: renews once, and not again at the next commits', async () => {
    const MB = 1024 * 1024;
    let used = 6.7 * MB;
    let renewals = 0;
    const fake = {
      heapUsed: () => used,
      wasmMemoryBytes: () => INITIAL_WASM_MEMORY_BYTES,
      renew: () => {
        renewals += 1;
        return Promise.resolve({ trees: 1, memoryBytesBefore: INITIAL_WASM_MEMORY_BYTES, memoryBytesAfter: INITIAL_WASM_MEMORY_BYTES, heapUsedBefore: used, heapUsedAfter: used, ms: 1 });
      },
    } as unknown as YangContext;
    expect(await renewLibyangIfOversized(fake)).to.equal(undefined); // loaded
    used = 0.44 * MB;
    const done = await renewLibyangIfOversized(fake);
    expect(done?.renewal).to.include({ trees: 1 });
    for (let i = 0; i < 3; i++) expect(await renewLibyangIfOversized(fake)).to.equal(undefined);
    expect(renewals).to.equal(1);
  });

  it('renews only after the data shrank, not on every commit of a steady configuration', async () => {
    const MB = 1024 * 1024;
    let used = 3.5 * MB;
    let renewals = 0;
    const fake = {
      heapUsed: () => used,
      wasmMemoryBytes: () => 24 * MB,
      renew: () => {
        renewals += 1;
        return Promise.resolve({ trees: 1, memoryBytesBefore: 24 * MB, memoryBytesAfter: 16 * MB, heapUsedBefore: used, heapUsedAfter: used, ms: 1 });
      },
    } as unknown as YangContext;
    // Oversized for what it holds, but it holds what it held: a steady configuration.
    for (let i = 0; i < 3; i++) expect(await renewLibyangIfOversized(fake)).to.equal(undefined);
    used = 0.5 * MB; // most of it removed
    expect((await renewLibyangIfOversized(fake))?.renewal).to.include({ trees: 1 });
    expect(await renewLibyangIfOversized(fake)).to.equal(undefined); // the peak starts again from the renewal
    expect(renewals).to.equal(1);
  });

  it('walks libyang\'s heap after a commit that removes or edits much, not after a few values set in place', async () => {
    const admin = h.session(1);
    const heapUsed = h.yang.heapUsed.bind(h.yang);
    let walks = 0;
    h.yang.heapUsed = () => {
      walks += 1;
      return heapUsed();
    };
    // Each commit's check is queued behind it: a read after it runs after the check.
    const committed = async (edit: string) => {
      expect(await h.rpc(admin, editRunning(edit))).to.equal('<ok/>');
      await h.rpc(admin, GET_RUNNING);
      return walks;
    };
    try {
      expect(await committed(profile('walked')), 'after an entry created in place').to.equal(0);
      expect(await committed(profile('walked', 'tcp-proxy')), 'after a value set in place').to.equal(0);
      expect(await committed(`<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>walked</name></network-profile>`),
        'after a delete').to.equal(1);
      expect(await committed(rules(300)), 'after an edit too large to replay in place').to.equal(2);
      expect(await committed(`<vrf xmlns="${VRF}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>big</name></vrf>`)).to.equal(3);
    } finally {
      h.yang.heapUsed = heapUsed;
    }
  });

  it('keeps running, candidate, startup, NACM and locks exactly, and commits work after it', async () => {
    const admin = h.session(1);
    const other = h.session(2);
    const olga = h.session(3, 'olga');
    // Running with NACM and a profile; startup a copy of it; a dirty candidate; startup locked by session 2.
    await h.rpc(admin, editCandidate(NACM_CONFIG + profile('kept')));
    await h.rpc(admin, '<commit/>');
    await h.rpc(admin, '<copy-config><target><startup/></target><source><running/></source></copy-config>');
    await h.rpc(admin, editCandidate(profile('candidate-only', 'tcp-proxy')));
    await h.rpc(other, '<lock><target><startup/></target></lock>');
    const snapshot = async () => Promise.all([
      h.rpc(admin, GET_RUNNING),
      h.rpc(admin, '<get-config><source><running/></source><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all</with-defaults></get-config>'),
      h.rpc(admin, GET_CANDIDATE),
      h.rpc(admin, '<get-config><source><startup/></source></get-config>'),
      h.rpc(admin, `<get><filter type="subtree"><nacm xmlns="${NACM}"/></filter></get>`),
      h.rpc(olga, GET_RUNNING),
      h.rpc(admin, '<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><datastores/></netconf-state></filter></get>'),
    ]);
    const before = await snapshot();
    expect(before[6]).to.match(/<name>startup<\/name><locks><global-lock><locked-by-session>2<\/locked-by-session>/);

    // A large configuration in running, then removed again (edits of running: the candidate stays dirty).
    await h.rpc(admin, editRunning(rules(RULES)));
    const grown = h.yang.wasmMemoryBytes!();
    expect(grown, 'the large configuration grows the wasm memory').to.be.greaterThan(INITIAL_WASM_MEMORY_BYTES + 4 * 1024 * 1024);
    await h.rpc(admin, editRunning(`<vrf xmlns="${VRF}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>big</name></vrf>`));
    // The renewal was queued behind that commit: any later operation runs after it.
    const after = await snapshot();
    expect(h.yang.wasmMemoryBytes!(), 'renewed: the memory is back to its initial size').to.equal(INITIAL_WASM_MEMORY_BYTES);
    expect(after).to.deep.equal(before);
    // Nothing left to renew.
    expect(await renewLibyangIfOversized(h.yang)).to.equal(undefined);

    // Access control, locks and commits on the new instance.
    const denied = await h.rpcErrors(olga, editRunning(`<vrf xmlns="${VRF}"><name>olga</name></vrf>`));
    expect(denied[0]?.tag).to.equal('access-denied');
    expect(await h.rpc(olga, editRunning(profile('by-olga')))).to.equal('<ok/>');
    const locked = await h.rpcErrors(admin, '<lock><target><startup/></target></lock>');
    expect(locked[0]?.tag).to.equal('lock-denied');
    expect(await h.rpc(admin, GET_RUNNING)).to.include('<name>by-olga</name>');
    // The candidate (edited before the renewal) becomes running: by-olga, written to running since, goes.
    await h.rpc(admin, '<commit/>');
    const running = await h.rpc(admin, GET_RUNNING);
    for (const name of ['kept', 'candidate-only']) expect(running).to.include(`<name>${name}</name>`);
    expect(running).not.to.include('<name>by-olga</name>');
    expect(running).to.include(`xmlns="${NP}"`).and.to.include(`<nacm xmlns="${NACM}"`);
    expect(await h.rpc(admin, '<validate><source><running/></source></validate>')).to.equal('<ok/>');
    const bad = await h.rpcErrors(admin, editRunning(profile('bad', 'tcp-proxy', '<tcp-fast-path><connection-mirror>true</connection-mirror></tcp-fast-path>')));
    expect(bad[0]?.tag).to.be.a('string');
    expect(await h.rpc(admin, GET_RUNNING)).to.equal(running);
    h.end(olga);
    h.end(other);
    h.end(admin);
  });
});
