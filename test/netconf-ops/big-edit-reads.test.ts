// Reads are not held behind a large edit or commit (issue 8 items 3 and 4), on a real `tandem
// start`: while one session's 20,000-rule edit-config (2.7 MB) and then its commit are being worked
// on (the agent's own log says the libyang worker has them), another session's get-config and get
// are answered, before the edit's or the commit's reply, with the last committed running. And the
// rpc-errors of a large edit or commit, checked in the worker, are byte for byte those of the same
// bad rule in a small one, checked on the main thread.
import { expect } from 'chai';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';
import { ruleEdit } from '../plane/pair-under-edit.js';

const RULES = 20_000;
const FW = 'urn:tandem:yang:tandem-firewall';
const VRF = 'urn:tandem:yang:tandem-vrf';

/** Rule r0 of VRF main, if running has it. */
const GET_CONFIG_R0 = `<get-config><source><running/></source><filter type="subtree"><vrf xmlns="${VRF}"><name>main</name>`
  + `<firewall xmlns="${FW}"><rule><name>r0</name></rule></firewall></vrf></filter></get-config>`;
const GET_R0 = `<get><filter type="subtree"><vrf xmlns="${VRF}"><name>main</name>`
  + `<firewall xmlns="${FW}"><rule><name>r0</name></rule></firewall></vrf></filter></get>`;

function rule(name: string, body: string): string {
  return `<rule><name>${name}</name>${body}</rule>`;
}

function firewallEdit(rules: string, operation = ''): string {
  return `<edit-config><target><candidate/></target><config><vrf xmlns="${VRF}"><name>main</name>`
    + `<firewall xmlns="${FW}"${operation}>${rules}</firewall></vrf></config></edit-config>`;
}

/** `count` good rules with `bad` in the middle. */
function largeEditWith(bad: string, count = RULES): string {
  const rules: string[] = [];
  for (let i = 0; i < count; i++) {
    if (i === count / 2) rules.push(bad);
    rules.push(rule(`g${i}`, `<action>drop</action><protocol>tcp</protocol><destination-port><start>${1 + (i % 65000)}</start></destination-port>`));
  }
  return firewallEdit(rules.join(''));
}

/** The reply without its message-id (the only part that differs between two sessions' replies). */
function body(reply: string): string {
  return reply.replace(/message-id="[^"]*"/, '');
}

async function logLine(t: TandemProcess, from: number, msg: string, ms = 300_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!t.stdout().slice(from).includes(`"msg":"${msg}"`)) {
    if (Date.now() > deadline) throw new Error(`no log line '${msg}' within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves to the reply; `done` says whether it has come. */
function tracked(p: Promise<string>): { reply: Promise<string>; done: () => boolean } {
  let settled = false;
  const reply = p.finally(() => {
    settled = true;
  });
  return { reply, done: () => settled };
}

describe('netconf-ops: reads during a large edit and commit (tandem start)', function () {
  this.timeout(900_000);
  let t: TandemProcess;
  let writer: NetconfTestClient;
  let reader: NetconfTestClient;

  before(async () => {
    t = await startTandem({ env: { TANDEM_LOG_LEVEL: 'info', TANDEM_LOG_FORMAT: 'json' } });
    const connect = () => NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password, timeoutMs: 600_000 });
    writer = await connect();
    reader = await connect();
  });

  after(async () => {
    writer?.close();
    reader?.close();
    await t?.stop();
  });

  it('answers get-config and get with the committed running before the edit\'s and the commit\'s reply', async () => {
    let from = t.stdout().length;
    const edit = tracked(writer.rpc(ruleEdit(RULES)));
    await logLine(t, from, 'large edit: values checked in the libyang worker');
    const duringEdit = [await reader.rpc(GET_CONFIG_R0), await reader.rpc(GET_R0)];
    expect(edit.done(), 'the reads were answered before the edit-config').to.equal(false);
    for (const r of duringEdit) expect(r).to.include('<data').and.not.include('<name>r0</name>');
    expect(await edit.reply).to.include('<ok/>');

    from = t.stdout().length;
    const commit = tracked(writer.rpc('<commit/>'));
    await logLine(t, from, 'large configuration: validated in the libyang worker');
    const duringCommit = [await reader.rpc(GET_CONFIG_R0), await reader.rpc(GET_R0)];
    expect(commit.done(), 'the reads were answered before the commit').to.equal(false);
    // The last committed running: the rules are not in it until the commit is answered.
    for (const r of duringCommit) expect(r).to.include('<data').and.not.include('<name>r0</name>');
    expect(await commit.reply).to.include('<ok/>');

    const after = await reader.rpc(GET_CONFIG_R0);
    expect(after).to.include('<name>r0</name>');
    expect(await reader.rpc(`<get-config><source><running/></source><filter type="subtree"><vrf xmlns="${VRF}"><name>main</name>`
      + `<firewall xmlns="${FW}"><rule><name>r${RULES - 1}</name></rule></firewall></vrf></filter></get-config>`)).to.include(`<name>r${RULES - 1}</name>`);
    // The whole running, read back, is what was committed: every rule, in order.
    const whole = await reader.rpc('<get-config><source><running/></source></get-config>');
    const names = [...whole.matchAll(/<rule><name>(r\d+)<\/name>/g)].map((m) => m[1]);
    expect(names.length).to.equal(RULES);
    expect(names.every((n, i) => n === `r${i}`)).to.equal(true);
  });

  it('refuses a bad value in a large edit with the rpc-error of the same value in a small one', async () => {
    const bad = rule('bad', '<action>drop</action><protocol>tcp</protocol><destination-port><start>70000</start></destination-port>');
    const small = await writer.rpc(firewallEdit(bad));
    expect(small).to.include('<rpc-error>');
    const from = t.stdout().length;
    const large = await writer.rpc(largeEditWith(bad));
    expect(t.stdout().slice(from), 'the large edit was checked in the worker').to.include('"msg":"large edit: values checked in the libyang worker"');
    expect(body(large)).to.equal(body(small));
    expect(await writer.rpc('<discard-changes/>')).to.include('<ok/>');
  });

  it('refuses an invalid large commit with the rpc-error of the same rule in a small commit, running unchanged', async () => {
    // Valid values, invalid together: the port range is inverted (a must of the model).
    const bad = rule('inverted', '<action>drop</action><protocol>tcp</protocol><destination-port><start>90</start><end>80</end></destination-port>');
    const before = await reader.rpc('<get-config><source><running/></source></get-config>');
    expect(await writer.rpc(firewallEdit(bad))).to.include('<ok/>');
    const small = await writer.rpc('<commit/>');
    expect(small).to.include('<rpc-error>').and.include('port-range-inverted');
    expect(await writer.rpc('<discard-changes/>')).to.include('<ok/>');
    // The same bad rule among 20,000 others: the new running is 5 MB, validated in the worker.
    expect(await writer.rpc(largeEditWith(bad))).to.include('<ok/>');
    const from = t.stdout().length;
    const large = await writer.rpc('<commit/>');
    expect(t.stdout().slice(from), 'the large commit was validated in the worker').to.include('"msg":"large configuration: validated in the libyang worker"');
    expect(body(large)).to.equal(body(small));
    expect(await writer.rpc('<discard-changes/>')).to.include('<ok/>');
    expect(body(await reader.rpc('<get-config><source><running/></source></get-config>'))).to.equal(body(before));
  });
});
