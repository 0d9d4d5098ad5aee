// Kill `tandem start` with SIGKILL in the middle of a burst of commits, many times: every commit
// that was acknowledged must be there after the restart (running.xml and its journal replayed), and
// running.xml must always parse.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { parseXml } from '../../agent/netconf/xml-parser.js';
import { foldedRunningXml, journalRecords } from '../helpers/folded-running.js';

const NP = 'urn:tandem:yang:tandem-network-profile';
const ROUNDS = 5;
const MAX_COMMITS_PER_ROUND = 60;

function edit(name: string): string {
  return `<edit-config><target><running/></target><config><network-profile xmlns="${NP}"><name>${name}</name><type>tcp-fast-path</type></network-profile></config></edit-config>`;
}

describe('netconf-ops: durability of running under SIGKILL', function () {
  this.timeout(240000);
  let dir: string;
  let agent: TandemProcess | undefined;
  let client: NetconfTestClient | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-durable-'));
  });
  afterEach(async () => {
    client?.close();
    await agent?.stop();
    agent = undefined;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`never loses an acknowledged commit nor leaves a corrupt file (${ROUNDS} kills)`, async () => {
    const acked: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      agent = await startTandem({ stateDir: dir });
      client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
      // Kill after a different number of acknowledged commits each round, with one rpc in flight.
      const killAfter = 3 + ((round * 7) % 11);
      let sent = 0;
      for (; sent < MAX_COMMITS_PER_ROUND; sent++) {
        const name = `r${round}-c${sent}`;
        if (sent === killAfter) {
          client.sendMessage(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="k">${edit(name)}</rpc>`);
          agent.kill('SIGKILL');
          break;
        }
        const reply = await client.rpc(edit(name));
        expect(reply, name).to.contain('<ok/>');
        acked.push(name);
      }
      const ex = await agent.exited;
      expect(ex.signal).to.equal('SIGKILL');
      client.close();
      client = undefined;
      agent = undefined;
      // running.xml always parses; the commits since it was last folded are in running.journal
      // (a small datastore's saves are journal records): the restarted agent must serve them all.
      parseXml(readFileSync(path.join(dir, 'running.xml'), 'utf8'));
      agent = await startTandem({ stateDir: dir });
      client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
      const cfg = await client.rpc('<get-config><source><running/></source></get-config>');
      for (const a of acked) expect(cfg, `acknowledged ${a} lost in round ${round}`).to.contain(`<name>${a}</name>`);
      client.close();
      client = undefined;
      await agent.stop();
      agent = undefined;
    }
    // A clean restart serves every acknowledged commit and has removed stale temp files.
    agent = await startTandem({ stateDir: dir });
    client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
    const cfg = await client.rpc('<get-config><source><running/></source></get-config>');
    for (const a of acked) expect(cfg).to.contain(`<name>${a}</name>`);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).to.deep.equal([]);
  });

  it('has a small commit that was answered <ok/> after a SIGKILL sent the moment the <ok/> arrived (candidate edit + commit, 4 kills)', async () => {
    const own = await mkdtemp(path.join(os.tmpdir(), 'tandem-durable-commit-'));
    try {
      const committed: string[] = [];
      for (let round = 0; round < 4; round++) {
        agent = await startTandem({ stateDir: own });
        client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
        const cfg = await client.rpc('<get-config><source><running/></source></get-config>');
        for (const c of committed) expect(cfg, `committed ${c} lost after the kill`).to.contain(`<name>${c}</name>`);
        // A small datastore (a few profiles): the save taken is the small one. Even rounds merge a
        // profile, odd rounds also remove the one before (a commit that deletes must be kept too).
        const name = `k${round}`;
        const remove = round % 2 === 1 ? `<network-profile xmlns="${NP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"><name>${committed.pop()!}</name></network-profile>` : '';
        const edited = await client.rpc(`<edit-config><target><candidate/></target><config><network-profile xmlns="${NP}"><name>${name}</name><type>tcp-fast-path</type></network-profile>${remove}</config></edit-config>`);
        expect(edited).to.contain('<ok/>');
        // SIGKILL as soon as the reply is read: whatever the agent does after its <ok/> (a save
        // finished later, off the reply path) must not be needed for the commit to be kept.
        const reply = await client.rpc('<commit/>');
        // Round 1 waits for the fold first: the next start finds a journal that holds only its
        // header, and its commit's record must not be preceded by a second header.
        if (round === 1) {
          expect(await foldedRunningXml(own)).to.contain(`<name>${name}</name>`);
          expect(journalRecords(own)).to.equal(0);
        }
        agent.kill('SIGKILL');
        expect(reply).to.contain('<ok/>');
        committed.push(name);
        const ex = await agent.exited;
        expect(ex.signal).to.equal('SIGKILL');
        client.close();
        client = undefined;
        agent = undefined;
      }
      agent = await startTandem({ stateDir: own });
      client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
      const cfg = await client.rpc('<get-config><source><running/></source></get-config>');
      for (const c of committed) expect(cfg, `committed ${c} lost after the last kill`).to.contain(`<name>${c}</name>`);
      for (const gone of ['k0', 'k2'].filter((n) => !committed.includes(n))) expect(cfg, `removed ${gone} is back`).not.to.contain(`<name>${gone}</name>`);
    } finally {
      client?.close();
      client = undefined;
      await agent?.stop();
      agent = undefined;
      await rm(own, { recursive: true, force: true });
    }
  });

  it('starts from --startup FILE when the state directory has no configuration, then from running.xml', async () => {
    const own = await mkdtemp(path.join(os.tmpdir(), 'tandem-startup-'));
    try {
      const file = path.join(own, 'initial.xml');
      await writeFile(file, `<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><network-profile xmlns="${NP}"><name>from-file</name><type>tcp-proxy</type></network-profile></config>`);
      const stateDir = path.join(own, 'state');
      await mkdir(stateDir);
      agent = await startTandem({ stateDir, args: ['--startup', file] });
      client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
      expect(await client.rpc('<get-config><source><running/></source></get-config>')).to.contain('<name>from-file</name>');
      expect(await client.rpc(edit('added'))).to.contain('<ok/>');
      client.close();
      client = undefined;
      await agent.stop();
      agent = await startTandem({ stateDir, args: ['--startup', file] });
      client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
      const cfg = await client.rpc('<get-config><source><running/></source></get-config>');
      expect(cfg).to.contain('<name>from-file</name>').and.contain('<name>added</name>');
    } finally {
      client?.close();
      client = undefined;
      await agent?.stop();
      agent = undefined;
      await rm(own, { recursive: true, force: true });
    }
  });
});
