// The JSON a commit hands to subsystems, derived by reprinting only the changed entry of a nested
// list (one firewall rule of a VRF), must equal a full print of what was saved: rule edits, a leaf
// removed inside a rule, a rule removed, a rule added (printed the long way), in one VRF of two.
import { expect } from 'chai';
import type { CommitContext, CommitSubsystem, ConfigJson, SubsystemError } from '../../core/subsystem.js';
import { editRunning, openHarness, type Harness, type TestSession } from './ops-harness.js';
import { foldedRunningXml } from '../helpers/folded-running.js';

const VRF = 'urn:tandem:yang:tandem-vrf';
const FW = 'urn:tandem:yang:tandem-firewall';
const NC = 'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"';

class Recording implements CommitSubsystem {
  readonly name = 'recording';
  readonly owns = ['/tandem-vrf:vrf'];
  last: ConfigJson | undefined;
  validate(): SubsystemError[] {
    return [];
  }
  async prepare(): Promise<SubsystemError[]> {
    return [];
  }
  async apply(ctx: CommitContext): Promise<void> {
    this.last = structuredClone(ctx.newConfig);
  }
  async abort(): Promise<void> {}
  async undo(): Promise<void> {}
}

function rules(vrf: string, n: number): string {
  const body = Array.from({ length: n }, (_, i) => `<rule><name>r${i}</name><action>accept</action><protocol>tcp</protocol><destination-port><start>${i + 1}</start></destination-port></rule>`).join('');
  return `<vrf xmlns="${VRF}"><name>${vrf}</name><firewall xmlns="${FW}">${body}</firewall></vrf>`;
}

describe('netconf-ops: commit JSON with nested list entries reprinted alone', function () {
  let h: Harness;
  let s: TestSession;
  const sub = new Recording();
  before(async () => {
    h = await openHarness({ subsystems: [sub] });
    s = h.session(1);
  });
  after(async () => h.close());

  async function expectMatchesSaved(): Promise<void> {
    const saved = (await foldedRunningXml(h.dir)).replace(/^\s*<config[^>]*>/, '').replace(/<\/config>\s*$/, '');
    const fresh = h.yang.parse(saved, { format: 'xml', kind: 'config', validate: true });
    try {
      const text = fresh.print({ format: 'json', withDefaults: 'report-all' });
      expect(sub.last).to.deep.equal(text.trim() ? JSON.parse(text) : {});
    } finally {
      fresh.free();
    }
  }

  it('equals a full print through nested edits', async () => {
    await h.rpc(s, editRunning(rules('main', 20) + rules('blue', 3)));
    await expectMatchesSaved();
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><rule><name>r7</name><action>drop</action></rule></firewall></vrf>`));
    await expectMatchesSaved();
    const main = (sub.last!['tandem-vrf:vrf'] as ConfigJson[]).find((v) => v['name'] === 'main')!;
    const r7 = ((main['tandem-firewall:firewall'] as ConfigJson)['rule'] as ConfigJson[]).find((r) => r['name'] === 'r7');
    expect(r7).to.include({ action: 'drop' });
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><rule><name>r8</name><destination-port ${NC} nc:operation="remove"/></rule></firewall></vrf>`));
    await expectMatchesSaved();
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><rule ${NC} nc:operation="remove"><name>r3</name></rule></firewall></vrf>`));
    await expectMatchesSaved();
    // Plain leaves in a VRF's containers: set, changed, removed back to their default.
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><default-action>drop</default-action></firewall>
      <network-stack xmlns="urn:tandem:yang:tandem-conntrack"><fast-path><conntrack><timeouts><udp>77</udp></timeouts></conntrack></fast-path></network-stack></vrf>`));
    await expectMatchesSaved();
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><default-action ${NC} nc:operation="remove"/></firewall></vrf>`));
    await expectMatchesSaved();
    // A leaf set again to the value it holds (an edit that repeats the default-action with a rule,
    // as clients do) changes nothing by itself: the JSON keeps it, the rule is reprinted.
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><default-action>drop</default-action><rule><name>r7</name><action>accept</action></rule></firewall></vrf>`));
    await expectMatchesSaved();
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><default-action>drop</default-action><rule><name>r7</name><action>drop</action></rule></firewall>
      <network-stack xmlns="urn:tandem:yang:tandem-conntrack"><fast-path><conntrack><timeouts><udp>77</udp></timeouts></conntrack></fast-path></network-stack></vrf>`));
    await expectMatchesSaved();
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>main</name><firewall xmlns="${FW}"><default-action>accept</default-action><rule><name>r7</name><action>accept</action></rule></firewall></vrf>`));
    await expectMatchesSaved();
    const fw = ((sub.last!['tandem-vrf:vrf'] as ConfigJson[]).find((v) => v['name'] === 'main')!['tandem-firewall:firewall'] as ConfigJson);
    expect(fw['default-action']).to.equal('accept');
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>blue</name><firewall xmlns="${FW}"><rule><name>new</name><action>drop</action></rule></firewall></vrf>`));
    await expectMatchesSaved();
    await h.rpc(s, editRunning(`<vrf xmlns="${VRF}"><name>blue</name><firewall xmlns="${FW}"><rule><name>r0</name><action>drop</action></rule><rule><name>r1</name><action>drop</action></rule></firewall></vrf>`));
    await expectMatchesSaved();
  });

  // Entries are found through an index kept with each JSON list and handed on while entries are
  // replaced where they were (issue 8): a mixed sequence of edits must keep matching a full print.
  it('equals a full print through a long mixed sequence of rule edits, deletes, creates and moves', async () => {
    await h.rpc(s, editRunning(rules('green', 40)));
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const YANG = 'xmlns:yang="urn:ietf:params:xml:ns:yang:1"';
    const inGreen = (body: string): string => `<vrf xmlns="${VRF}"><name>green</name><firewall xmlns="${FW}">${body}</firewall></vrf>`;
    let created = 0;
    for (let step = 0; step < 60; step++) {
      const r = `r${random(40)}`;
      const kind = random(5);
      const edit = kind === 0 ? `<rule ${NC} nc:operation="remove"><name>${r}</name></rule>`
        : kind === 1 ? `<rule><name>n${created++}</name><action>drop</action><protocol>udp</protocol></rule>`
          : kind === 2 ? `<rule ${YANG} yang:insert="first"><name>${r}</name><action>drop</action></rule>`
            : `<rule><name>${r}</name><action>${random(2) ? 'drop' : 'accept'}</action></rule>`;
      const reply = await h.rpc(s, editRunning(inGreen(edit)));
      // Removing a rule an earlier step removed is refused (data-missing); every other edit is taken.
      if (reply !== '<ok/>') expect(reply, `step ${step}`).to.contain('data-missing');
      await expectMatchesSaved();
    }
  });
});
