// At start, the restored configuration does not refuse a sync listener that cannot bind yet (its
// source address may come up later): the agent starts, the listener retries, and binds once the
// port is free. A commit, by contrast, is refused at prepare (test/ha/commit-faults.test.ts).
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { freePort } from '../sync/two-nodes.js';
import { haConfig } from './netconf-agent.js';

describe('agent start with a sync port taken: starts, and the listener binds once the port is free', function () {
  this.timeout(90000);
  let dir: string | undefined;
  let t: TandemProcess | undefined;
  let squatter: Server | undefined;
  after(async () => {
    await t?.stop();
    await new Promise<void>((r) => (squatter ? squatter.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('retries in the background instead of refusing to start', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-startup-listener-'));
    const port = await freePort();
    t = await startTandem({ stateDir: dir, env: { TANDEM_LOG_LEVEL: 'info' } });
    const c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    expect(await c.rpc(`<edit-config><target><candidate/></target>${haConfig('master', '127.0.0.1', '127.0.0.2', port)}</edit-config>`)).to.include('<ok/>');
    expect(await c.rpc('<commit/>')).to.include('<ok/>');
    c.close();
    await t.stop();
    squatter = createServer();
    await new Promise<void>((r) => squatter!.listen(port, '127.0.0.1', r));
    t = await startTandem({ stateDir: dir, users: [], env: { TANDEM_LOG_LEVEL: 'info' } });
    const deadline = Date.now() + 20000;
    while (!t.stdout().includes('sync listener cannot listen') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(t.stdout()).to.include('sync listener cannot listen');
    await new Promise<void>((r) => squatter!.close(() => r()));
    squatter = undefined;
    while (!t.stdout().includes('sync listener up') && Date.now() < deadline + 10000) await new Promise((r) => setTimeout(r, 50));
    expect(t.stdout()).to.include('sync listener up');
  });
});
