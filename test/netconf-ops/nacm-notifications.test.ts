// NACM on notifications (RFC 8341 3.4.6) through the operations layer: a notification-name rule, a
// data rule on a notification's content, the end markers that always pass, and the counter.
import { expect } from 'chai';
import { editRunning, openHarness, profile, waitFor, type Harness } from './ops-harness.js';
import type { UserDirectory } from '../../agent/nacm/nacm.js';

const ACM = 'urn:ietf:params:xml:ns:yang:ietf-netconf-acm';
const NCN = 'urn:ietf:params:xml:ns:yang:ietf-netconf-notifications';
const SUBSCRIBE = '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>';

const GROUPS: Record<string, string[]> = { admin: ['admin'], nocc: ['no-config-change'], noby: ['no-changed-by'] };
const USERS: UserDirectory = { identity: (name) => Promise.resolve({ groups: GROUPS[name] ?? [], recovery: false }) };

const RULES = `<nacm xmlns="${ACM}" xmlns:ncn="${NCN}">
  <rule-list><name>a</name><group>no-config-change</group>
    <rule><name>r</name><module-name>ietf-netconf-notifications</module-name><notification-name>netconf-config-change</notification-name>
      <access-operations>read</access-operations><action>deny</action></rule></rule-list>
  <rule-list><name>b</name><group>no-changed-by</group>
    <rule><name>r</name><path>/ncn:netconf-config-change/ncn:changed-by</path><access-operations>read</access-operations><action>deny</action></rule></rule-list>
</nacm>`;

describe('netconf-ops: NACM on notifications', function () {
  this.timeout(30000);
  let h: Harness;

  before(async () => {
    h = await openHarness({ users: USERS });
  });
  after(async () => {
    await h?.close();
  });

  it('drops what a rule denies by name or by content, keeps the rest, counts the drops', async () => {
    const admin = h.session(1, 'admin');
    await h.rpc(admin, editRunning(RULES));
    const nocc = h.session(2, 'nocc');
    const noby = h.session(3, 'noby');
    const plain = h.session(4, 'plain');
    for (const s of [nocc, noby, plain]) await h.rpc(s, SUBSCRIBE);
    await h.rpc(admin, editRunning(profile('n1')));
    await waitFor(() => plain.notifications.some((n) => n.includes('netconf-config-change')), 'config-change for plain');
    h.session(5, 'late'); // a session start: readable by everyone
    await waitFor(() => nocc.notifications.some((n) => n.includes('netconf-session-start')), 'session-start for nocc');
    await waitFor(() => noby.notifications.some((n) => n.includes('netconf-session-start')), 'session-start for noby');
    expect(nocc.notifications.some((n) => n.includes('netconf-config-change'))).to.equal(false);
    expect(noby.notifications.some((n) => n.includes('netconf-config-change'))).to.equal(false);
    expect(plain.notifications.some((n) => n.includes('<changed-by>'))).to.equal(true);
    const counters = await h.rpc(admin, `<get><filter type="subtree"><nacm xmlns="${ACM}"><denied-notifications/></nacm></filter></get>`);
    expect(counters).to.contain('<denied-notifications>2</denied-notifications>');
  });
});
