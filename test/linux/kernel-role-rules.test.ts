// The routing rules the backup guard reads the kernel's role from (fastpath/linux/kernel-role-rules.ts),
// in a namespace of the test's own: the agent's BACKUP rule is put in once (no duplicate on a
// second call) and removed; keepalived's MASTER rules, left behind by a killed keepalived, are
// found and removed, and removing absent ones succeeds.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BACKUP_RULE_PREFERENCE, ensureBackupRules, masterRulePresent, MASTER_RULE_PREFERENCE, removeBackupRules, removeMasterRules } from '../../fastpath/linux/kernel-role-rules.js';
import { requireRoot } from '../vrrp/vrrp-namespaces.js';

function rules(ns: string, family: '-4' | '-6'): string[] {
  return execFileSync('ip', ['-n', ns, family, 'rule', 'show'], { encoding: 'utf8' }).trim().split('\n');
}

describe('linux: the backup guard\'s routing rules (root)', function () {
  const ns = `tkr-${randomBytes(3).toString('hex')}`;
  let created = false;

  before(function () {
    requireRoot(this);
    execFileSync('ip', ['netns', 'add', ns]);
    created = true;
  });

  after(() => {
    if (created) execFileSync('ip', ['netns', 'del', ns]);
  });

  it('puts the BACKUP rule in once per family and removes it', async () => {
    await ensureBackupRules(ns);
    await ensureBackupRules(ns);
    for (const family of ['-4', '-6'] as const) {
      expect(rules(ns, family).filter((r) => r.startsWith(`${BACKUP_RULE_PREFERENCE}:`)), family).to.deep.equal([`${BACKUP_RULE_PREFERENCE}:\tfrom all fwmark 0x20000000/0x20000000 unreachable`]);
    }
    await removeBackupRules(ns);
    for (const family of ['-4', '-6'] as const) expect(rules(ns, family).join('\n')).to.not.include(`${BACKUP_RULE_PREFERENCE}:`);
  });

  it('finds and removes MASTER rules left behind, and removing none succeeds', async () => {
    expect(await masterRulePresent(ns)).to.equal(false);
    expect(await removeMasterRules(ns)).to.equal(0);
    for (const family of ['-4', '-6']) execFileSync('ip', ['-n', ns, family, 'rule', 'add', 'pref', String(MASTER_RULE_PREFERENCE), 'fwmark', '0x20000000/0x20000000', 'table', '25200']);
    expect(await masterRulePresent(ns)).to.equal(true);
    expect(await removeMasterRules(ns)).to.equal(2);
    expect(await masterRulePresent(ns)).to.equal(false);
  });
});
