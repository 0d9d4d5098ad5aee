// Callbacks handed to the `netlink` addon (fastpath/linux/netlink-callback-guard.ts) on the real
// kernel: a throw in one would abort the process inside the addon's poll handler. With a throw
// injected into each socket's callbacks (ctnetlink commands, the nf_tables counter read, the
// in-place rule edit, the guard removal, the event-loop conntrack event reader), the process goes
// on, the request the callback belonged to fails with an error (never a silent success), the
// throw is counted, and the socket serves the next request. A dump whose caller cannot take a
// conntrack fails instead of looking whole.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { ConntrackEventStream } from '../../fastpath/linux/conntrack-events.js';
import type { ConntrackWrite } from '../../fastpath/linux/ctnetlink-codec.js';
import { GuardRemovalSocket } from '../../fastpath/linux/guard-removal-socket.js';
import { injectNetlinkCallbackThrow, netlinkCallbackThrows } from '../../fastpath/linux/netlink-callback-guard.js';
import { NftCounterSocket } from '../../fastpath/linux/nft-counter-socket.js';
import { sendRuleEdit } from '../../fastpath/linux/nft-rule-batch.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const TRACKING_RULESET = `table inet tandem_test {
  chain input { type filter hook input priority 0; ct state established,related accept; }
}`;

function writes(n: number, dport: number): ConntrackWrite[] {
  return Array.from({ length: n }, (_, i) => ({
    orig: { proto: 'tcp' as const, src: `10.7.${i >> 8}.${i & 255}`, dst: '192.168.50.9', sport: 30000 + i, dport },
    reply: { proto: 'tcp' as const, src: '192.168.50.9', dst: `10.7.${i >> 8}.${i & 255}`, sport: dport, dport: 30000 + i },
    state: 'established' as const, timeout: 600, mark: 0,
  }));
}

describe('linux: callbacks handed to the netlink addon cannot throw into it', function () {
  this.timeout(60_000);
  const fx = new NamespaceFixture('nlcb');
  let ns = '';
  const closers: { close(): void }[] = [];

  before(function () {
    if (!isRoot()) { console.log(`    (skipped: ${ROOT_SKIP_REASON})`); this.skip(); }
    ns = fx.add('a');
    fx.exec(ns, 'nft', ['-f', '-'], TRACKING_RULESET);
  });

  afterEach(() => {
    injectNetlinkCallbackThrow(undefined);
    for (const c of closers.splice(0)) c.close();
    if (ns) fx.exec(ns, 'conntrack', ['-F']);
  });

  after(async () => {
    for (const c of closers.splice(0)) c.close();
    await fx.cleanup();
  });

  it('a process survives a throw in a guarded callback; a bare one aborts it (why the guard exists)', () => {
    const child = fileURLToPath(new URL('./netlink-throw-child.js', import.meta.url));
    const dirs: string[] = [];
    const run = (mode: string) => spawnSync(process.execPath, [child, mode, ns], {
      // In a temporary directory: an abort may leave a core file where it runs.
      encoding: 'utf8', timeout: 30_000, cwd: (dirs[dirs.push(mkdtempSync(join(tmpdir(), 'tandem-nlcb-'))) - 1] as string), env: { ...process.env, TANDEM_LOG_LEVEL: 'silent' },
    });
    const guarded = run('guarded');
    expect(guarded.status, guarded.stderr).to.equal(0);
    expect(guarded.stdout).to.match(/request: failed: .*injected throw in a ctnetlink netlink callback/);
    expect(guarded.stdout).to.include('survived');
    const bare = run('bare');
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    expect(bare.signal, 'the addon aborts on a bare throw').to.equal('SIGABRT');
    expect(bare.stderr).to.include('Napi::Error');
    expect(bare.stdout).to.not.include('survived');
  });

  it('ctnetlink: the request whose answer could not be handled fails; the next one succeeds', async () => {
    const nl = new ConntrackNetlink({ namespace: ns });
    closers.push(nl);
    const before = netlinkCallbackThrows();
    injectNetlinkCallbackThrow('ctnetlink');
    let error: unknown;
    await nl.create(writes(10, 443)).catch((err: unknown) => { error = err; });
    expect(String(error)).to.match(/injected throw in a ctnetlink netlink callback/);
    expect(netlinkCallbackThrows()).to.equal(before + 1);
    expect((await nl.create(writes(10, 444))).failures).to.deep.equal([]);
    let n = 0;
    await nl.dump((cts) => { n += cts.length; });
    expect(n, 'the socket still serves dumps').to.be.at.least(10);
  });

  it('ctnetlink: a dump whose caller throws on a conntrack fails (once the kernel ended it), the next dump is whole', async () => {
    const nl = new ConntrackNetlink({ namespace: ns });
    closers.push(nl);
    expect((await nl.create(writes(300, 445))).failures).to.deep.equal([]);
    let seen = 0;
    let error: unknown;
    await nl.dumpRaw(() => {
      if (++seen === 7) throw new Error('a caller that cannot take this conntrack');
    }).catch((err: unknown) => { error = err; });
    expect(String(error)).to.match(/1 conntracks not handled .*a caller that cannot take this conntrack/);
    expect(seen, 'the dump was read to its end').to.equal(300);
    let again = 0;
    await nl.dumpRaw(() => { again++; });
    expect(again).to.equal(300);
  });

  it('nf_tables counter read: fails with the error, the next read succeeds', async () => {
    const counters = new NftCounterSocket(ns);
    closers.push(counters);
    injectNetlinkCallbackThrow('nft-counters');
    let error: unknown;
    await counters.read().catch((err: unknown) => { error = err; });
    expect(String(error)).to.match(/injected throw in a nft-counters netlink callback/);
    expect(await counters.read(), 'no tandem table here: no counters').to.deep.equal({});
  });

  it('in-place rule edit: the check fails with the error', async () => {
    injectNetlinkCallbackThrow('nft-rule-edit');
    let error: unknown;
    await sendRuleEdit(ns, [{ op: 'delete-counter', name: 'nothing' }], 'check').catch((err: unknown) => { error = err; });
    expect(String(error)).to.match(/injected throw in a nft-rule-edit netlink callback/);
    // Without the injection the same check gets the kernel's own answer (no such table).
    error = undefined;
    await sendRuleEdit(ns, [{ op: 'delete-counter', name: 'nothing' }], 'check').catch((err: unknown) => { error = err; });
    expect(String(error)).to.match(/nf_tables refused the rule edit \(check\): ENOENT/);
  });

  it('guard removal: fails with the error', async () => {
    const guard = new GuardRemovalSocket(ns, 'tandem');
    closers.push(guard);
    injectNetlinkCallbackThrow('guard-removal');
    let error: unknown;
    await guard.remove().catch((err: unknown) => { error = err; });
    expect(String(error)).to.match(/injected throw in a guard-removal netlink callback/);
  });

  it('conntrack events on the loop: a datagram not handled is reported as a lost event', async () => {
    const lost: number[] = [];
    let received = 0;
    const events = ConntrackEventStream.start(() => { received++; }, (d) => lost.push(d), { namespace: ns });
    closers.push(events);
    const nl = new ConntrackNetlink({ namespace: ns });
    closers.push(nl);
    injectNetlinkCallbackThrow('conntrack-events');
    expect((await nl.create(writes(20, 446))).failures).to.deep.equal([]);
    const deadline = Date.now() + 10_000;
    while (received + lost.reduce((a, b) => a + b, 0) < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(lost, 'the event of the datagram that threw').to.deep.equal([1]);
    expect(received).to.equal(19);
  });
});
