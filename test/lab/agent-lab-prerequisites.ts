// What the tests through the real agents in the lab need; without it they are skipped with the reason.
import { existsSync } from 'node:fs';
import { ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

export function skipUnlessAgentLabCanRun(ctx: Mocha.Context): void {
  if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); ctx.skip(); }
  if (!existsSync('/usr/bin/python3') || !existsSync('/usr/sbin/keepalived')) {
    console.log('    (skipped: needs Debian python3-ncclient (NETCONF client) and keepalived (VRRP))');
    ctx.skip();
  }
}
