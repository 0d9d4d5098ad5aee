import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cli/cli.js');

describe('tandem command', () => {
  it('prints usage with help and exits 0', () => {
    const r = spawnSync(process.execPath, [cli, 'help'], { encoding: 'utf8' });
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/usage: tandem/);
  });
  it('rejects an unknown command with exit 2', () => {
    const r = spawnSync(process.execPath, [cli, 'frobnicate'], { encoding: 'utf8' });
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/unknown command 'frobnicate'/);
  });
});
