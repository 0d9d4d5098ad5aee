// Issue 8 item 3: a large running is saved by appending each commit's change to running.journal
// (fdatasync'ed before the reply) instead of rewriting running.xml. A restart replays it; a journal
// of an older running.xml is ignored; a record cut short by a crash is dropped; a damaged one
// stops the start with the file named. And under SIGKILL no acknowledged commit is lost.
import { expect } from 'chai';
import { appendFileSync, copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ConfigStore } from '../../agent/datastore/config-store.js';
import { JOURNAL_MIN_BYTES } from '../../agent/datastore/running-journal.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { editCandidate, editRunning, GET_RUNNING, openHarness, profile, type Harness, type TestSession } from './ops-harness.js';

const FW = 'urn:tandem:yang:tandem-firewall';
const NC = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const YANG = 'urn:ietf:params:xml:ns:yang:1';
const RULES = 600;

function rule(name: string, action: string, port: number, attrs = ''): string {
  return `<rule${attrs}><name>${name}</name><action>${action}</action><protocol>tcp</protocol><destination-port><start>${port}</start></destination-port></rule>`;
}

function vrf(body: string): string {
  return `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="${FW}" xmlns:nc="${NC}" xmlns:yang="${YANG}">${body}</firewall></vrf>`;
}

const manyRules = Array.from({ length: RULES }, (_, i) => rule(`rule-number-${i}`, 'accept', 1 + i)).join('');

function store(h: Harness): ConfigStore {
  return (h.ops as unknown as { svc: { store: ConfigStore } }).svc.store;
}

describe('netconf-ops: running journal of a large datastore', function () {
  this.timeout(180000);
  let h: Harness;
  let s: TestSession;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-journal-'));
    h = await openHarness({ dir });
    s = h.session(1);
    expect(await h.rpc(s, editRunning(vrf(manyRules)))).to.equal('<ok/>');
    expect(statSync(path.join(dir, 'running.xml')).size).to.be.greaterThan(JOURNAL_MIN_BYTES);
  });
  after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('journals single-rule commits and a restart replays them to the same running', async () => {
    const st = store(h);
    const fileBefore = readFileSync(path.join(dir, 'running.xml'), 'utf8');
    const saves = { ...st.saves };
    const edits = [
      editRunning(vrf(rule('rule-number-17', 'drop', 17))),
      // A new rule written action first, and a changed rule whose key comes last in the edit.
      editRunning(vrf('<rule><action>drop</action><protocol>udp</protocol><name>action-first</name></rule>')),
      editRunning(vrf('<rule><action>drop</action><name>rule-number-30</name></rule>')),
      editRunning(vrf(rule('new-at-end', 'drop', 9000))),
      editRunning(vrf(`<rule nc:operation="delete"><name>rule-number-5</name></rule>`)),
      editRunning(vrf('<default-action>drop</default-action>')),
      editRunning(profile('p1')),
      // Two rules in one edit, the later one first (the positions the edit replaced come unsorted).
      editRunning(vrf(rule('rule-number-500', 'drop', 500) + rule('rule-number-3', 'drop', 3))),
      // A rule replaced and another removed in one edit (the copy is reshaped: compared element by element).
      editRunning(vrf(rule('rule-number-40', 'drop', 40) + `<rule nc:operation="remove"><name>rule-number-41</name></rule>`)),
    ];
    for (const e of edits) expect(await h.rpc(s, e)).to.equal('<ok/>');
    // A leaf repeated with its value (default-action sent along with a rule edit) is kept as it was:
    // the record names the edited rule only.
    expect(await h.rpc(s, editRunning(vrf(`<default-action>drop</default-action>${rule('rule-number-19', 'drop', 19)}`)))).to.equal('<ok/>');
    const records = readFileSync(path.join(dir, 'running.journal'), 'utf8').split('\n').filter((l) => l.startsWith('['));
    expect(records.at(-1), 'the last record').to.include('rule-number-19').and.not.include('default-action');
    // Positioned insert and a move, through the candidate.
    expect(await h.rpc(s, editCandidate(vrf(rule('inserted', 'drop', 9001, ` yang:insert="before" yang:key="[name='rule-number-100']"`))))).to.equal('<ok/>');
    expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
    expect(await h.rpc(s, editCandidate(vrf(rule(`rule-number-${RULES - 1}`, 'accept', RULES, ' yang:insert="first"'))))).to.equal('<ok/>');
    expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
    // Two edits of the candidate before one commit (a copy of a copy of running's rules).
    expect(await h.rpc(s, editCandidate(vrf(rule('rule-number-200', 'drop', 200))))).to.equal('<ok/>');
    expect(await h.rpc(s, editCandidate(vrf(rule('rule-number-201', 'drop', 201))))).to.equal('<ok/>');
    expect(await h.rpc(s, '<commit/>')).to.equal('<ok/>');
    const last = readFileSync(path.join(dir, 'running.journal'), 'utf8').split('\n').filter((l) => l.startsWith('[')).at(-1);
    expect(last).to.include('rule-number-200').and.include('rule-number-201');
    expect(st.saves).to.deep.equal({ whole: saves.whole, journal: saves.journal + 13 });
    expect(readFileSync(path.join(dir, 'running.xml'), 'utf8'), 'running.xml itself is not rewritten').to.equal(fileBefore);
    const expected = await h.rpc(s, GET_RUNNING);
    await h.restart();
    s = h.session(2);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(expected);
    // The replayed tree keeps journaling from where it was.
    expect(await h.rpc(s, editRunning(vrf(rule('rule-number-18', 'drop', 18))))).to.equal('<ok/>');
    const expected2 = await h.rpc(s, GET_RUNNING);
    await h.restart();
    s = h.session(3);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(expected2);
  });

  it('ignores a journal of an older running.xml, drops a record cut short, refuses a damaged one', async () => {
    const journal = path.join(dir, 'running.journal');
    expect(await h.rpc(s, editRunning(vrf(rule('rule-number-19', 'drop', 19))))).to.equal('<ok/>');
    expect(existsSync(journal)).to.equal(true);
    copyFileSync(journal, `${journal}.old`);
    // A large edit is written whole: running.xml changes, the journal starts again.
    const st = store(h);
    const whole = st.saves.whole;
    expect(await h.rpc(s, editRunning(Array.from({ length: 600 }, (_, i) => profile(`bulk-${i}`)).join('')))).to.equal('<ok/>');
    expect(st.saves.whole).to.equal(whole + 1);
    expect(existsSync(journal)).to.equal(false);
    const expected = await h.rpc(s, GET_RUNNING);
    // As if a crash came between writing running.xml and removing the journal.
    copyFileSync(`${journal}.old`, journal);
    await h.restart();
    s = h.session(4);
    expect(await h.rpc(s, GET_RUNNING), 'a stale journal is not replayed').to.equal(expected);
    expect(existsSync(journal)).to.equal(false);
    // A record cut short (the crash came during its write: it was never acknowledged).
    expect(await h.rpc(s, editRunning(vrf(rule('rule-number-20', 'drop', 20))))).to.equal('<ok/>');
    const expected2 = await h.rpc(s, GET_RUNNING);
    appendFileSync(journal, '[[0,3],{"p":2,"c":[[0');
    await h.restart();
    s = h.session(5);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(expected2);
    // Damage in the middle is not guessed around: the agent does not start, and says which file.
    await h.close();
    const lines = readFileSync(journal, 'utf8').split('\n');
    lines.splice(1, 0, '{"damaged');
    writeFileSync(journal, lines.join('\n'));
    let caught: unknown;
    try {
      await h.restart();
    } catch (err) {
      caught = err;
    }
    expect(String(caught)).to.include('running.journal record 1 is damaged');
    // Moving it aside starts from running.xml alone.
    await rm(journal);
    await h.restart();
    s = h.session(6);
    expect(await h.rpc(s, GET_RUNNING)).to.equal(expected);
  });

  it('loses no acknowledged commit when tandem start is killed with SIGKILL mid-commit', async () => {
    const own = await mkdtemp(path.join(os.tmpdir(), 'tandem-journal-kill-'));
    let agent: TandemProcess | undefined;
    let client: NetconfTestClient | undefined;
    try {
      agent = await startTandem({ stateDir: own });
      client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
      expect(await client.rpc(`<edit-config><target><running/></target><config>${vrf(manyRules)}</config></edit-config>`)).to.include('<ok/>');
      const acked: string[] = [];
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 8 + round * 5; i++) {
          const name = `k${round}-${i}`;
          expect(await client.rpc(`<edit-config><target><running/></target><config>${vrf(rule(name, 'drop', 100 + i))}</config></edit-config>`)).to.include('<ok/>');
          acked.push(name);
        }
        client.sendMessage(`<rpc xmlns="${NC}" message-id="k"><edit-config><target><running/></target><config>${vrf(rule(`in-flight-${round}`, 'drop', 7))}</config></edit-config></rpc>`);
        agent.kill('SIGKILL');
        expect((await agent.exited).signal).to.equal('SIGKILL');
        client.close();
        expect(existsSync(path.join(own, 'running.journal')), 'the commits were journaled').to.equal(true);
        agent = await startTandem({ stateDir: own });
        client = await NetconfTestClient.connect({ host: agent.host, port: agent.port, username: agent.username, password: agent.password });
        const cfg = await client.rpc('<get-config><source><running/></source></get-config>');
        for (const a of acked) expect(cfg, `acknowledged ${a} lost in round ${round}`).to.contain(`<name>${a}</name>`);
        expect(cfg).to.contain(`<name>rule-number-${RULES - 1}</name>`);
      }
    } finally {
      client?.close();
      await agent?.stop();
      await rm(own, { recursive: true, force: true });
    }
  });
});
