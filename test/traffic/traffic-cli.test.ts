// `tandem traffic` as a user runs it: the real command (child process) against `tandem start`,
// over NETCONF. Exit codes, what it prints, and that the agent did what it said.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { writePcap } from '../../fastpath/traffic/pcap-writer.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, TANDEM_CLI, type TandemProcess } from '../helpers/tandem-process.js';

const run = promisify(execFile);

async function tandem(t: TandemProcess, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [TANDEM_CLI, 'traffic', ...args, '--port', String(t.port), '--user', t.username],
      { env: { ...process.env, TANDEM_PASSWORD: t.password }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('traffic: the tandem traffic command', function () {
  this.timeout(120_000);
  let t: TandemProcess | undefined;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-traffic-cli-'));
    t = await startTandem();
    const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    try {
      expect(await c.rpc(`<edit-config><target><candidate/></target><config><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name></vrf></config></edit-config>`)).to.include('<ok/>');
      expect(await c.rpc('<commit/>')).to.include('<ok/>');
    } finally {
      c.close();
    }
  });

  after(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('replays a capture, shows its status, starts and stops a generator', async () => {
    const agent = t as TandemProcess;
    const file = path.join(dir, 'one.pcap');
    await writePcap(file, [
      { timeMs: 1000, proto: 'udp', src: '10.9.0.1', dst: '198.51.100.1', sport: 1234, dport: 5000 },
      { timeMs: 1001, proto: 'udp', src: '198.51.100.1', dst: '10.9.0.1', sport: 5000, dport: 1234 },
    ]);
    let r = await tandem(agent, ['replay', file, '--vrf', 'main']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/traffic source 1 started/);
    for (let i = 0; i < 50; i++) {
      r = await tandem(agent, ['status', '1']);
      if (!r.stdout.includes('running')) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^1\tpcap-replay\tmain\tcompleted\tpcap .*one\.pcap read 2 skipped 0; packets 2 forwarded 2 /m);

    r = await tandem(agent, ['start', '--vrf', 'main', '--rate', '50', '--duration', '600', '--mix', 'udp=1', '--destination', '198.51.100.7:53']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/traffic source 2 started/);
    r = await tandem(agent, ['stop']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('stopped 1 traffic source(s)');
    r = await tandem(agent, ['status']);
    expect(r.stdout).to.match(/^2\tflow-generator\tmain\tstopped\t/m);
  });

  it('says what the agent refused and exits 1; a wrong command line exits 2', async () => {
    const agent = t as TandemProcess;
    let r = await tandem(agent, ['start', '--vrf', 'nope']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('the agent refused: start-traffic: VRF nope is not in the dataplane');
    r = await tandem(agent, ['start', '--vrf', 'main', '--mix', 'tcp:1']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('--mix wants tcp=W,udp=W,icmp=W');
  });
});
