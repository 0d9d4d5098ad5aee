// The NACM decision rules (RFC 8341 3.4.4-3.4.6) on compiled configurations: rule order, groups,
// module/rpc/notification/path rules, access operations, defaults and the default-deny marks —
// including the marks read from tandem's own modules by libyang.
import { expect } from 'chai';
import { compileNacm } from '../../agent/nacm/nacm-rules.js';
import { DefaultDenyIndex } from '../../agent/nacm/default-deny.js';
import { UserAccess, type NacmIdentity } from '../../agent/nacm/user-access.js';
import { parseRulePath, ruleCovers } from '../../agent/nacm/rule-path.js';
import { pathText, type DataPath } from '../../agent/nacm/data-path.js';
import { splitTopLevel } from '../../agent/nacm/top-level-split.js';
import { loadTandemContext } from '../../yang/libyang/index.js';

const SECRET: DataPath = [
  { module: 'tandem-vrf', name: 'vrf', keys: [['name', 'main']] },
  { module: 'tandem-ha-fp-conntrack', name: 'ha-fp-conntrack' },
  { module: 'tandem-ha-fp-conntrack', name: 'shared-secret' },
];
const PROFILE: DataPath = [{ module: 'tandem-network-profile', name: 'network-profile', keys: [['name', 'web']] }, { module: 'tandem-network-profile', name: 'type' }];
const DENY = new DefaultDenyIndex([
  ['ietf-netconf:kill-session', 'all'],
  ['tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/tandem-ha-fp-conntrack:shared-secret', 'all'],
  ['tandem-network-profile:network-profile/tandem-network-profile:type', 'write'],
]);

function user(groups: string[], name = 'u', recovery = false): NacmIdentity {
  return { username: name, groups, recovery };
}

function access(nacm: Record<string, unknown>, who: NacmIdentity): UserAccess {
  return new UserAccess(who, compileNacm({ 'ietf-netconf-acm:nacm': nacm }), DENY);
}

describe('unit: NACM rules', () => {
  it('applies the RFC defaults without rules, and the default-deny marks', () => {
    const a = access({}, user([]));
    expect(a.data(PROFILE.slice(0, 1), 'read')).to.equal(true);
    expect(a.data(SECRET, 'read')).to.equal(false);
    expect(a.data(PROFILE.slice(0, 1), 'create')).to.equal(false);
    expect(a.exec('ietf-netconf', 'get')).to.equal(true);
    expect(a.exec('ietf-netconf', 'kill-session')).to.equal(false);
    expect(a.exec('ietf-netconf', 'close-session')).to.equal(true);
    // write-default permit still leaves default-deny-write nodes to explicit rules
    const w = access({ 'write-default': 'permit' }, user([]));
    expect(w.data(PROFILE.slice(0, 1), 'create')).to.equal(true);
    expect(w.data(PROFILE, 'update')).to.equal(false);
    expect(w.data(PROFILE, 'read')).to.equal(true);
  });

  it('takes the first matching rule of the rule-lists of the user\'s groups, in order', () => {
    const nacm = {
      'rule-list': [
        { name: 'ops', group: ['operator'], rule: [
          { name: 'no-secret', 'module-name': '*', path: "/tandem-vrf:vrf/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret", 'access-operations': '*', action: 'deny' },
          { name: 'vrf-main', path: "/tandem-vrf:vrf[name='main']", 'access-operations': 'create update delete', action: 'permit' },
          { name: 'no-kill', 'module-name': 'ietf-netconf', 'rpc-name': 'kill-session', 'access-operations': 'exec', action: 'permit' },
        ] },
        { name: 'all', group: ['*'], rule: [{ name: 'deny-sync', 'module-name': 'tandem-ha-fp-conntrack', 'access-operations': 'exec', action: 'deny' }] },
      ],
    };
    const op = access(nacm, user(['operator']));
    const vrfMain: DataPath = [{ module: 'tandem-vrf', name: 'vrf', keys: [['name', 'main']] }, { module: 'tandem-firewall', name: 'firewall' }];
    const vrfOther: DataPath = [{ module: 'tandem-vrf', name: 'vrf', keys: [['name', 'other']] }, { module: 'tandem-firewall', name: 'firewall' }];
    expect(op.data(vrfMain, 'create')).to.equal(true);
    expect(op.data(vrfOther, 'create')).to.equal(false);
    expect(op.data(SECRET, 'update')).to.equal(false);
    expect(op.data(SECRET, 'read')).to.equal(false);
    expect(op.exec('ietf-netconf', 'kill-session')).to.equal(true); // an explicit permit beats default-deny-all
    expect(op.exec('tandem-ha-fp-conntrack', 'ha-fp-conntrack-synchronization')).to.equal(false); // group '*'
    expect(op.permitsAllData('read')).to.equal(false);
    const other = access(nacm, user(['viewer']));
    expect(other.data(vrfMain, 'create')).to.equal(false);
    expect(other.exec('ietf-netconf', 'kill-session')).to.equal(false);
  });

  it('adds the groups of /nacm/groups, ignores the transport\'s when enable-external-groups is false', () => {
    const nacm = {
      groups: { group: [{ name: 'admin', 'user-name': ['andy'] }] },
      'rule-list': [{ name: 'a', group: ['admin'], rule: [{ name: 'all', 'module-name': '*', 'access-operations': '*', action: 'permit' }] }],
    };
    expect(access(nacm, user([], 'andy')).permitsAllData('create')).to.equal(true);
    expect(access(nacm, user(['admin'], 'bob')).data(SECRET, 'read')).to.equal(true);
    expect(access({ ...nacm, 'enable-external-groups': false }, user(['admin'], 'bob')).data(SECRET, 'read')).to.equal(false);
  });

  it('lets the recovery user and everyone with enable-nacm false through', () => {
    const denyAll = { 'read-default': 'deny', 'write-default': 'deny', 'exec-default': 'deny' };
    expect(access(denyAll, user([], 'r', true)).data(SECRET, 'delete')).to.equal(true);
    expect(access({ ...denyAll, 'enable-nacm': false }, user([])).exec('ietf-netconf', 'kill-session')).to.equal(true);
    const plain = access(denyAll, user([]));
    expect(plain.exec('ietf-netconf', 'get')).to.equal(false);
    expect(plain.exec('ietf-netconf', 'close-session')).to.equal(true);
  });

  it('matches notifications by name and module; end markers always pass', () => {
    const a = access({ 'rule-list': [{ name: 'n', group: ['*'], rule: [
      { name: 'no-cc', 'module-name': 'ietf-netconf-notifications', 'notification-name': 'netconf-config-change', 'access-operations': 'read', action: 'deny' },
    ] }] }, user([]));
    expect(a.notification('ietf-netconf-notifications', 'netconf-config-change')).to.equal(false);
    expect(a.notification('ietf-netconf-notifications', 'netconf-session-start')).to.equal(true);
    expect(access({ 'read-default': 'deny' }, user([])).notification('nc-notifications', 'replayComplete')).to.equal(true);
  });

  it('parses rule paths and matches descendants and key predicates only', () => {
    const rule = parseRulePath("/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack")!;
    expect(ruleCovers(rule, SECRET)).to.equal(true);
    expect(ruleCovers(rule, SECRET.slice(0, 1))).to.equal(false);
    expect(ruleCovers(parseRulePath('/tandem-vrf:vrf')!, SECRET)).to.equal(true);
    expect(ruleCovers(parseRulePath("/tandem-vrf:vrf[name='x']")!, SECRET)).to.equal(false);
    expect(parseRulePath('count(/a:b)')).to.equal(undefined);
    expect(parseRulePath('/noprefix')).to.equal(undefined);
    expect(pathText(SECRET)).to.equal("/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret");
  });

  it('says which top-level subtrees may hold an unreadable node (the others are not parsed)', () => {
    const plain = access({}, user([]));
    expect(plain.mayDenyReadUnder('tandem-vrf', 'vrf')).to.equal(true); // shared-secret is below
    expect(plain.mayDenyReadUnder('tandem-network-profile', 'network-profile')).to.equal(false);
    const pathDeny = access({ 'rule-list': [{ name: 'x', group: ['*'], rule: [
      { name: 'r', path: '/tandem-network-profile:network-profile', 'access-operations': 'read', action: 'deny' }] }] }, user([]));
    expect(pathDeny.mayDenyReadUnder('tandem-network-profile', 'network-profile')).to.equal(true);
    expect(pathDeny.mayDenyReadUnder('tandem-ha', 'ha')).to.equal(false);
    expect(access({ 'read-default': 'deny' }, user([])).mayDenyReadUnder('tandem-ha', 'ha')).to.equal(true);
    expect(access({ 'read-default': 'deny' }, user([], 'r', true)).mayDenyReadUnder('tandem-ha', 'ha')).to.equal(false);
  });

  it('splits printed data into top-level elements without parsing, or says it cannot', () => {
    const text = '<a xmlns="urn:a"><b x="1>2">t</b><c/></a>\n<d xmlns=\'urn:d\' /><p:e xmlns:p="urn:e"><f/></p:e>';
    const chunks = splitTopLevel(text)!;
    expect(chunks.map((c) => [c.name, c.ns])).to.deep.equal([['a', 'urn:a'], ['d', 'urn:d'], [undefined, undefined]]);
    expect(chunks.map((c) => c.text)).to.deep.equal(['<a xmlns="urn:a"><b x="1>2">t</b><c/></a>', "<d xmlns='urn:d' />", '<p:e xmlns:p="urn:e"><f/></p:e>']);
    expect(splitTopLevel('<a><!-- x --></a>')).to.equal(undefined);
    expect(splitTopLevel('<a>')).to.equal(undefined);
    expect(splitTopLevel('text<a/>')).to.equal(undefined);
    expect(splitTopLevel('')).to.deep.equal([]);
  });

  it('reads nacm:default-deny-all from the modules (shared-secret, /nacm) through augments', async function () {
    this.timeout(30000);
    const yang = await loadTandemContext();
    try {
      const index = DefaultDenyIndex.fromContext(yang);
      expect(index.of(SECRET)).to.equal('all');
      expect(index.of([{ module: 'ietf-netconf-acm', name: 'nacm' }, { module: 'ietf-netconf-acm', name: 'rule-list' }])).to.equal('all');
      expect(index.of(SECRET.slice(0, 2))).to.equal(undefined);
      expect(index.ofOperation('ietf-netconf', 'delete-config')).to.equal('all');
    } finally {
      yang.free();
    }
  });
});
