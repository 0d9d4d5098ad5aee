// `npm run bench -- role-switch` (root): the switch to master's own cost, the step between VRRP's
// notification and the kernel forwarding synced flows (issue 11 item 1): deleting the backup guard
// chain (fastpath/linux/backup-guard.ts) with one nf_tables netlink batch from this process on a
// socket opened ahead (guard-removal-socket.ts, what the engine does now) against the nft process
// started ahead and blocked on its stdin (primed-nft.ts, what it did before). The two alternate
// round by round in one namespace holding a backup's guard beside a forward chain, so both meet
// the same machine load: the ratio is the figure; the load average is reported with it.
// TANDEM_BENCH_ROLE_SWITCH_ROUNDS (default 30).
import { readFileSync } from 'node:fs';
import { GuardRemovalSocket } from '../fastpath/linux/guard-removal-socket.js';
import { PrimedNft } from '../fastpath/linux/primed-nft.js';
import { backupGuardLines, renderRoleSwitch } from '../fastpath/linux/backup-guard.js';
import { NamespaceFixture, isRoot } from '../lab/namespace-fixture.js';

const TABLE = 'tandem';

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(s.length * q))] * 100) / 100;
}

export async function run(): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (a network namespace and nftables)' };
  const rounds = Number(process.env.TANDEM_BENCH_ROLE_SWITCH_ROUNDS ?? 30);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 1000) throw new Error('TANDEM_BENCH_ROLE_SWITCH_ROUNDS: 1..1000');
  const fx = new NamespaceFixture('rs');
  const netlinkMs: number[] = [];
  const nftMs: number[] = [];
  const loadBefore = loadavg();
  try {
    const ns = fx.add('r');
    fx.exec(ns, 'nft', ['-f', '-'], [
      `table inet ${TABLE} {`,
      '  counter backup_drops { }',
      '  chain forward { type filter hook forward priority 0; policy drop; ct state established,related accept; ct state invalid drop; }',
      '}',
      '',
    ].join('\n'));
    const guard = `table inet ${TABLE} {\n${backupGuardLines().join('\n')}\n}\n`;
    const present = () => fx.exec(ns, 'nft', ['list', 'table', 'inet', TABLE]).includes('chain backup_guard');
    for (let round = 0; round < rounds; round++) {
      for (const how of round % 2 === 0 ? ['netlink', 'nft'] : ['nft', 'netlink']) {
        fx.exec(ns, 'nft', ['-f', '-'], guard);
        // Both are set up while "backup", as the engine does; the nft process gets time to start.
        const socket = how === 'netlink' ? new GuardRemovalSocket(ns, TABLE) : undefined;
        const primed = how === 'nft' ? new PrimedNft(ns) : undefined;
        await new Promise((resolve) => setTimeout(resolve, 100));
        const started = process.hrtime.bigint();
        if (socket) await socket.remove();
        else await primed!.run(renderRoleSwitch(TABLE, 'master'));
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        if (present()) throw new Error(`${how}: the guard chain is still there after the switch`);
        (how === 'netlink' ? netlinkMs : nftMs).push(ms);
      }
    }
  } finally {
    await fx.cleanup();
  }
  const figures = {
    rounds,
    netlinkMs: { p50: quantile(netlinkMs, 0.5), p90: quantile(netlinkMs, 0.9), max: quantile(netlinkMs, 1) },
    primedNftMs: { p50: quantile(nftMs, 0.5), p90: quantile(nftMs, 0.9), max: quantile(nftMs, 1) },
    ratioP50: Math.round((quantile(nftMs, 0.5) / quantile(netlinkMs, 0.5)) * 10) / 10,
    loadavg: `${loadBefore} -> ${loadavg()}`,
  };
  return figures;
}
