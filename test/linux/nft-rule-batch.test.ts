// The in-place rule edit's netlink batch (nft-rule-batch.ts, nft-rule-expressions.ts) on a real
// kernel (root): rules sent on the engine's own nf_tables socket list exactly as nft lists the
// same rules loaded from their nft text (every kind of match: IPv4/IPv6 prefixes aligned or not,
// /0 and host prefixes, ports and port ranges, ICMP of both families, protocol only, no match); a
// check answers without changing anything; a refused step refuses the whole batch. The engine's
// kept socket (NftRuleEditSocket) serves many edits on one socket, keeps it after a refusal,
// opens a new one after a failure of its own, and refuses edits once closed.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { FirewallRule, SoftVrfConfig } from '../../fastpath/config/vrf-config.js';
import { parseVrfConfig } from '../../fastpath/config/vrf-config.js';
import { renderRuleset } from '../../fastpath/linux/nft-ruleset.js';
import { parseRuleHandles, type RuleEditOp } from '../../fastpath/linux/nft-rule-edit.js';
import { NftRuleEditSocket, sendRuleEdit } from '../../fastpath/linux/nft-rule-batch.js';
import { injectNetlinkCallbackThrow } from '../../fastpath/linux/netlink-callback-guard.js';
import { ROOT_SKIP_REASON, isRoot, run } from '../../lab/namespace-fixture.js';

const RULES: Record<string, unknown>[] = [
  { name: 'v4-aligned', action: 'drop', protocol: 'tcp', 'source-prefix': '10.1.2.0/24', 'destination-prefix': '10.9.0.0/16', 'source-port': { start: 1000, end: 2000 }, 'destination-port': { start: 80 } },
  { name: 'v4-unaligned', action: 'accept', 'source-prefix': '10.1.8.0/21' },
  { name: 'v4-host', action: 'accept', protocol: 'icmp', 'destination-prefix': '192.0.2.7/32' },
  { name: 'v4-any', action: 'drop', 'source-prefix': '0.0.0.0/0', protocol: 'udp', 'destination-port': { start: 53, end: 53 } },
  { name: 'v6-aligned', action: 'accept', protocol: 'udp', 'source-prefix': '2001:db8::/32', 'destination-port': { start: 53 } },
  { name: 'v6-unaligned', action: 'drop', 'destination-prefix': '2001:db8:0:8::/61' },
  { name: 'v6-host', action: 'accept', 'destination-prefix': '2001:db8::1/128' },
  { name: 'v6-any', action: 'drop', 'destination-prefix': '::/0' },
  { name: 'v6-icmp', action: 'accept', protocol: 'icmp', 'source-prefix': 'fe80::/10' },
  { name: 'icmp-only', action: 'drop', protocol: 'icmp' },
  { name: 'tcp-range', action: 'accept', protocol: 'tcp', 'destination-port': { start: 8000, end: 8080 } },
  { name: 'match-all', action: 'accept' },
];

function config(rules: Record<string, unknown>[], defaultAction = 'accept'): SoftVrfConfig {
  return parseVrfConfig({ name: 'main', 'tandem-firewall:firewall': { 'default-action': defaultAction, 'drop-invalid': true, rule: rules } }, new Map(), 1 << 20);
}

describe('linux: in-place rule edits over nf_tables netlink (root)', function () {
  this.timeout(60_000);
  const tag = randomBytes(3).toString('hex');
  const byNft = `tandem-nrb-${tag}-nft`;
  const byNetlink = `tandem-nrb-${tag}-nl`;

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    run('ip', ['netns', 'add', byNft]);
    run('ip', ['netns', 'add', byNetlink]);
  });
  after(() => {
    for (const ns of [byNft, byNetlink]) {
      try { run('ip', ['netns', 'del', ns]); } catch { /* not created */ }
    }
  });

  const nft = (ns: string, args: string[], input?: string) => run('ip', ['netns', 'exec', ns, 'nft', ...args], input);
  const listing = (ns: string) => nft(ns, ['list', 'chain', 'inet', 'tandem', 'forward']);
  const handles = (ns: string) => parseRuleHandles(nft(ns, ['-j', '-a', 'list', 'chain', 'inet', 'tandem', 'forward']))!;

  it('rules sent over netlink list exactly as nft loads their text; a check changes nothing', async () => {
    const full = config(RULES);
    nft(byNft, ['-f', '-'], renderRuleset(full, 'master'));
    // The same table without its rules (but with their counters), then the rules inserted over netlink.
    const empty = config([]);
    nft(byNetlink, ['-f', '-'], renderRuleset(empty, 'master'));
    const before = handles(byNetlink);
    const ops: RuleEditOp[] = [
      ...full.firewall.rules.map((r): RuleEditOp => ({ op: 'add-counter', name: `fw_rule_${r.name}` })),
      ...full.firewall.rules.map((rule: FirewallRule): RuleEditOp => ({ op: 'insert-rule', position: before.defaultRule, rule })),
    ];
    const listed = listing(byNetlink);
    expect(await sendRuleEdit(byNetlink, ops, 'check')).to.have.property('size', 0);
    expect(listing(byNetlink), 'a check applies nothing').to.equal(listed);
    const inserted = await sendRuleEdit(byNetlink, ops, 'apply');
    expect(listing(byNetlink)).to.equal(listing(byNft));
    const after = handles(byNetlink);
    expect([...inserted.entries()].sort()).to.deep.equal([...after.rules.entries()].sort());
    expect(inserted.size).to.equal(RULES.length);
  });

  it('deletes and replaces by handle; a refused step refuses the whole batch', async () => {
    const h = handles(byNetlink);
    const listed = listing(byNetlink);
    const refused: RuleEditOp[] = [
      { op: 'delete-rule', handle: h.rules.get('v4-aligned')! },
      { op: 'replace-default', handle: h.defaultRule, action: 'drop' },
      { op: 'delete-rule', handle: 0 },
    ];
    let error: Error | undefined;
    await sendRuleEdit(byNetlink, refused, 'apply').catch((err: Error) => { error = err; });
    expect(error?.message).to.match(/nf_tables refused the rule edit: ENOENT .* at delete rule handle 0/);
    expect(listing(byNetlink), 'nothing of a refused batch applied').to.equal(listed);
    await sendRuleEdit(byNetlink, refused.slice(0, 2), 'check');
    await sendRuleEdit(byNetlink, [...refused.slice(0, 2), { op: 'delete-counter', name: 'fw_rule_v4-aligned' }], 'apply');
    nft(byNft, ['-f', '-'], renderRuleset(config(RULES.slice(1), 'drop'), 'master', config(RULES)));
    expect(listing(byNetlink)).to.equal(listing(byNft));
  });

  it('a kept socket: one for many edits, kept after a refusal, replaced after a failure, closed for good', async () => {
    const socket = new NftRuleEditSocket(byNetlink);
    try {
      const check: RuleEditOp[] = [{ op: 'add-counter', name: 'kept-socket-probe' }];
      for (let i = 0; i < 5; i++) expect(await socket.send(check, 'check')).to.have.property('size', 0);
      expect(socket.opened, 'five checks, one socket').to.equal(1);
      let error: Error | undefined;
      await socket.send([{ op: 'delete-counter', name: 'no-such-counter' }], 'check').catch((err: Error) => { error = err; });
      expect(error?.message).to.match(/nf_tables refused the rule edit \(check\): ENOENT/);
      await socket.send(check, 'check');
      expect(socket.opened, 'a refusal is an answer: the socket stays').to.equal(1);
      injectNetlinkCallbackThrow('nft-rule-edit');
      const failed = await socket.send(check, 'check').then(() => undefined, (err: Error) => err);
      expect(failed?.message).to.match(/injected throw/);
      await socket.send(check, 'check');
      expect(socket.opened, 'after a failure of its own, a new socket').to.equal(2);
      expect(nft(byNetlink, ['list', 'counters', 'table', 'inet', 'tandem'])).to.not.include('kept-socket-probe');
    } finally {
      injectNetlinkCallbackThrow(undefined);
      socket.close();
    }
    const closed = await socket.send([{ op: 'add-counter', name: 'x' }], 'check').then(() => undefined, (err: Error) => err);
    expect(closed?.message).to.match(/closed/);
  });

  it('a kept socket serves only its namespace: gone, the edit fails; made again, a new socket', async () => {
    const gone = `tandem-nrb-${tag}-gone`;
    const table = renderRuleset(config([]), 'master');
    run('ip', ['netns', 'add', gone]);
    const socket = new NftRuleEditSocket(gone);
    try {
      nft(gone, ['-f', '-'], table);
      const check: RuleEditOp[] = [{ op: 'add-counter', name: 'ns-probe' }];
      await socket.send(check, 'check');
      run('ip', ['netns', 'del', gone]);
      const failed = await socket.send(check, 'check').then(() => undefined, (err: Error) => err);
      expect(failed?.message, 'not applied in a namespace nobody sees').to.match(/network namespace .* is gone/);
      run('ip', ['netns', 'add', gone]);
      nft(gone, ['-f', '-'], table);
      await socket.send(check, 'check');
      expect(socket.opened, 'the namespace made again is another one: a new socket').to.equal(2);
    } finally {
      socket.close();
      try { run('ip', ['netns', 'del', gone]); } catch { /* already removed */ }
    }
  });
});
