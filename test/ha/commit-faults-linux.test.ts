// All or nothing on the linux engine (root): a `nft -f` that fails at apply after `nft -c` passed
// at prepare (a real nft behind a wrapper on PATH, in a real `tandem start --engine linux`), and
// a VRF namespace removed between prepare and apply (the transaction's test-only hook). The client
// gets operation-failed naming the subsystem and VRF, running is unchanged, and in the first case
// the kernel ruleset is the old one again. The first case also has an in-place firewall rule edit
// (netlink, nft-rule-batch.ts) that the kernel refuses at apply (the engine's test hook).
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT_SKIP_REASON, isRoot, run } from '../../lab/namespace-fixture.js';
import { LinuxEngine } from '../../fastpath/linux/linux-engine.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { editAndCommit, startTestAgentOn, stopTestAgent, type TestAgent } from './netconf-agent.js';

const RUNNING = '<get-config><source><running/></source></get-config>';

/** `leaves`: more firewall leaves (drop-invalid changes the rules before the firewall rules: the table is loaded whole). */
function vrfWithRules(vrf: string, ports: number[], leaves = ''): string {
  const rules = ports.map((p) => `<rule><name>drop-${p}</name><action>drop</action><protocol>tcp</protocol><destination-port><start>${p}</start></destination-port></rule>`).join('');
  return `<config><system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system>
    <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>${vrf}</name>
    <firewall xmlns="urn:tandem:yang:tandem-firewall"><default-action>accept</default-action>${leaves}${rules}</firewall></vrf></config>`;
}

function data(reply: string): string {
  return reply.replace(/message-id="[^"]*"/, '');
}

function nftWhich(): string {
  return run('sh', ['-c', 'command -v nft']).trim();
}

describe('commit faults on the linux engine (root): failing nft at apply, namespace gone before apply', function () {
  this.timeout(90000);
  const ns = `nbf-${randomBytes(3).toString('hex')}`;
  let dir: string | undefined;

  before(function () {
    if (!isRoot()) this.skip();
    try {
      nftWhich();
    } catch {
      this.skip();
    }
  });
  beforeEach(() => {
    run('ip', ['netns', 'add', ns]);
  });
  afterEach(async () => {
    try {
      run('ip', ['netns', 'del', ns]);
    } catch {
      // removed by the test
    }
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  if (!isRoot()) it.skip(`skipped: ${ROOT_SKIP_REASON}`);

  it('a nft -f that fails at apply is undone, refused, and the kernel keeps the old ruleset', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-nft-fault-'));
    const mark = path.join(dir, 'fail-next-apply');
    // A commit that changes firewall rules only is an in-place edit on netlink (nft-rule-batch.ts),
    // not an nft process: its kernel refusal comes from the engine's test hook.
    const refuseEdit = path.join(dir, 'refuse-next-rule-edit');
    // nft -c passes through; the next nft -f after the mark appears fails once (the undo's succeeds).
    await writeFile(path.join(dir, 'nft'), `#!/bin/sh
for a in "$@"; do [ "$a" = "-c" ] && exec ${nftWhich()} "$@"; done
if [ -e '${mark}' ]; then rm -f '${mark}'; echo "nft: injected failure at apply" >&2; exit 1; fi
exec ${nftWhich()} "$@"
`);
    await chmod(path.join(dir, 'nft'), 0o755);
    let t: TandemProcess | undefined;
    let c: NetconfTestClient | undefined;
    try {
      t = await startTandem({ args: ['--engine', 'linux'], env: { PATH: `${dir}:${process.env.PATH ?? ''}`, TANDEM_LOG_LEVEL: 'warn', TANDEM_TEST_REFUSE_RULE_EDIT: refuseEdit } });
      c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
      const edit = async (xml: string): Promise<string> => {
        expect(await c!.rpc(`<edit-config><target><candidate/></target>${xml}</edit-config>`)).to.include('<ok/>');
        return c!.rpc('<commit/>');
      };
      expect(await edit(vrfWithRules(ns, [22]))).to.include('<ok/>');
      const kernelBefore = run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset']);
      expect(kernelBefore).to.include('dport 22');
      const runningBefore = await c.rpc(RUNNING);

      await writeFile(mark, '');
      // drop-invalid changes too: the table is loaded whole, with nft -f (the wrapper).
      const reply = await edit(vrfWithRules(ns, [22, 23], '<drop-invalid>false</drop-invalid>'));
      expect(existsSync(mark), 'the wrapper was used').to.equal(false);
      expect(reply).to.include('<error-tag>operation-failed</error-tag>');
      expect(reply).to.include(`fastpath: apply failed at /tandem-vrf:vrf[name='${ns}']`).and.include('injected failure at apply');
      expect(reply).to.include('the previous configuration is back in place');
      expect(data(await c.rpc(RUNNING))).to.equal(data(runningBefore));
      const kernelAfter = run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset']);
      expect(kernelAfter).to.include('dport 22').and.not.include('dport 23');
      await c.rpc('<discard-changes/>');
      // Without the fault the same commit applies.
      expect(await edit(vrfWithRules(ns, [22, 23], '<drop-invalid>false</drop-invalid>'))).to.include('<ok/>');
      expect(run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset'])).to.include('dport 23');

      // A rule added alone: an in-place edit the kernel refuses at apply (after its check passed).
      const runningBeforeEdit = await c.rpc(RUNNING);
      const kernelBeforeEdit = run('ip', ['netns', 'exec', ns, 'nft', '-a', 'list', 'ruleset']);
      await writeFile(refuseEdit, '');
      const refused = await edit(vrfWithRules(ns, [22, 23, 24], '<drop-invalid>false</drop-invalid>'));
      expect(existsSync(refuseEdit), 'the hook fired').to.equal(false);
      expect(refused).to.include('<error-tag>operation-failed</error-tag>');
      expect(refused).to.include(`fastpath: apply failed at /tandem-vrf:vrf[name='${ns}']`).and.include('nf_tables refused the rule edit');
      expect(data(await c.rpc(RUNNING))).to.equal(data(runningBeforeEdit));
      expect(run('ip', ['netns', 'exec', ns, 'nft', '-a', 'list', 'ruleset'])).to.equal(kernelBeforeEdit);
      await c.rpc('<discard-changes/>');
      expect(await edit(vrfWithRules(ns, [22, 23, 24], '<drop-invalid>false</drop-invalid>'))).to.include('<ok/>');
      expect(run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset'])).to.include('dport 24');
    } finally {
      c?.close();
      await t?.stop();
    }
  });

  it('a namespace removed between prepare and apply refuses the commit; running is unchanged', async () => {
    let removeNamespace = false;
    let a: TestAgent<LinuxEngine> | undefined;
    try {
      a = await startTestAgentOn('linux-faults', new LinuxEngine(), {
        afterPrepare: () => {
          if (removeNamespace) run('ip', ['netns', 'del', ns]);
        },
      });
      expect(await editAndCommit(a, vrfWithRules(ns, [22]))).to.include('<ok/>');
      const runningBefore = await a.client.rpc(RUNNING);
      removeNamespace = true;
      const reply = await editAndCommit(a, vrfWithRules(ns, [22, 23]));
      removeNamespace = false;
      expect(reply).to.include('<error-tag>operation-failed</error-tag>');
      expect(reply).to.include(`fastpath: apply failed at /tandem-vrf:vrf[name='${ns}']`);
      // Its old configuration cannot be put back into a namespace that is gone, and the reply says so.
      expect(reply).to.include('undoing it failed too');
      expect(data(await a.client.rpc(RUNNING))).to.equal(data(runningBefore));
    } finally {
      await stopTestAgent(a);
    }
  });
});
