// Debian's yangcli (yuma123) against `tandem start`: it reads the modules through get-schema,
// edits the candidate, commits and reads the result back.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const YANGCLI = '/usr/bin/yangcli';

describe('netconf-ops: yangcli against tandem start', function () {
  this.timeout(120000);
  let agent: TandemProcess;
  let home: string;

  before(async function () {
    if (!existsSync(YANGCLI)) this.skip();
    agent = await startTandem();
    home = await mkdtemp(path.join(os.tmpdir(), 'tandem-yangcli-'));
  });
  after(async () => {
    await agent?.stop();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it('merges a network profile, commits and reads it back; reads netconf-state', async () => {
    const script = path.join(home, 'script');
    await writeFile(script, [
      "merge /network-profile[name='yc'] -- type=tcp-fast-path",
      'commit',
      'xget-config /network-profile source=running',
      'xget /netconf-state/sessions',
      '',
    ].join('\n'));
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(YANGCLI, [`--server=${agent.host}`, `--ncport=${agent.port}`, `--user=${agent.username}`, `--password=${agent.password}`,
        '--batch-mode', `--run-script=${script}`, '--log-level=info'], { env: { ...process.env, HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => { text += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { text += d; });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`yangcli timed out\n${text}`));
      }, 90000);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('exit', () => { clearTimeout(timer); resolve(text); });
    });
    expect(out).to.match(/RPC OK Reply \d+ for session \d+/);
    expect(out).to.match(/network-profile yc \{\s+name yc\s+type tcp-fast-path/);
    expect(out).to.match(/username admin/);
    expect(out).to.not.match(/RPC Error Reply/);
  });
});
