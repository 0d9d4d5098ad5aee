// The C build of the lab's TCP load tool (lab/tcp-load.c), which the takeover benchmark uses:
// it speaks the protocol of the node.js one (lab/tcp-load.ts) and its figures are true — answers
// counted only when echoed, a peer's reset counted as a reset, a dead path as no answer.
import { expect } from 'chai';
import { JsonLines, NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';
import { tcpLoadBinary } from '../../lab/tcp-load-binary.js';

describe('lab: the C TCP load tool', function () {
  const fx = new NamespaceFixture('tl');
  let a = '';
  let b = '';
  let binary = '';
  before(function () {
    if (!isRoot()) {
      console.log(`    (skipped: ${ROOT_SKIP_REASON})`);
      this.skip();
    }
    binary = tcpLoadBinary();
    a = fx.add('a');
    b = fx.add('b');
    fx.link(a, 'eth0', '10.66.0.1/24', b, 'eth0', '10.66.0.2/24');
    fx.exec(a, 'ip', ['addr', 'add', '10.66.0.3/24', 'dev', 'eth0']);
  });
  after(() => fx.cleanup());

  it('opens connections from several sources, pings, waves, reports answers and closes', async () => {
    const server = fx.spawn(b, binary, ['server', '0.0.0.0', '7100']);
    const serverOut = new JsonLines(server);
    expect((await serverOut.next((l) => l.ready === true)).port).to.equal(7100);
    const client = fx.spawn(a, binary, ['client', '10.66.0.2', '7100', '300', '5000', '10.66.0.1,10.66.0.3']);
    const out = new JsonLines(client);
    expect(await out.next((l) => l.ready === true)).to.deep.equal({ ready: true, connected: 300, failed: 0 });
    server.stdin?.write('stats\n');
    expect((await serverOut.next((l) => typeof l.connections === 'number')).connections).to.equal(300);
    server.stdin?.write('peers\n');
    const peers = (await serverOut.next((l) => Array.isArray(l.peers))).peers as string[];
    expect(new Set(peers.map((p) => p.split(':')[0]))).to.deep.equal(new Set(['10.66.0.1', '10.66.0.3']));

    client.stdin?.write('ping 5000\n');
    const ping = await out.next((l) => l.ping === true);
    expect(ping).to.include({ ok: 300, failed: 0, reset: 0, closed: 0 });
    expect(ping.firstMs as number).to.be.within(0, ping.lastMs as number);

    client.stdin?.write('wave 200 5000\n');
    const wave = await out.next((l) => l.wave === true);
    const answers = wave.answers as number[];
    expect(answers).to.have.length(300);
    expect(answers.every((x) => x >= 0)).to.equal(true);
    expect(wave.sendMs as number).to.be.at.least(190); // the sends were spread, not one burst
    // Sorted by send time, the answers follow the spread: the last third answered after the first.
    expect(Math.min(...answers.slice(200))).to.be.greaterThan(Math.max(...answers.slice(0, 50)));
    // Per connection, when its send left (spread, in order) and no retransmission on a clean path.
    const sendAt = wave.sendAt as number[];
    expect(sendAt).to.have.length(300);
    expect(sendAt.every((t, i) => t >= 0 && t <= answers[i] && (i === 0 || t >= sendAt[i - 1]))).to.equal(true);
    expect(sendAt[299]).to.be.at.least(190);
    expect((wave.retrans as number[]).every((r) => r === 0)).to.equal(true);
    expect(wave.sendCpuMs as number).to.be.at.least(0);

    // Requests lost on the way for 0.7 s: every connection answers after retransmitting (TCP_INFO says so).
    fx.exec(b, 'nft', ['-f', '-'], 'table inet tlr {\n  chain input { type filter hook input priority 0; tcp dport 7100 drop; }\n}\n');
    client.stdin?.write('wave 10 15000\n');
    await new Promise((r) => setTimeout(r, 700));
    fx.exec(b, 'nft', ['delete', 'table', 'inet', 'tlr']);
    const retried = await out.next((l) => l.wave === true, 30_000);
    expect((retried.answers as number[]).every((x) => x >= 0)).to.equal(true);
    expect((retried.retrans as number[]).every((r) => r >= 1)).to.equal(true);

    // Echoes lost on the way back for 0.7 s: the server's sockets retransmit, and say so.
    server.stdin?.write('retrans\n');
    const before = (await serverOut.next((l) => typeof l.retrans === 'number')).retrans as number;
    fx.exec(a, 'nft', ['-f', '-'], 'table inet tlr {\n  chain input { type filter hook input priority 0; tcp sport 7100 drop; }\n}\n');
    client.stdin?.write('wave 10 15000\n');
    await new Promise((r) => setTimeout(r, 700));
    fx.exec(a, 'nft', ['delete', 'table', 'inet', 'tlr']);
    const echoed = await out.next((l) => l.wave === true, 30_000);
    expect((echoed.answers as number[]).every((x) => x >= 0)).to.equal(true);
    server.stdin?.write('retrans\n');
    const after = await serverOut.next((l) => typeof l.retrans === 'number');
    expect(after.connections).to.equal(300);
    expect((after.retrans as number) - before).to.be.at.least(300);

    // A dead path: no answer is reported as none (-1), not as an answer.
    fx.exec(b, 'ip', ['link', 'set', 'eth0', 'down']);
    client.stdin?.write('wave 10 500\n');
    const lost = await out.next((l) => l.wave === true);
    expect((lost.answers as number[]).every((x) => x === -1)).to.equal(true);
    fx.exec(b, 'ip', ['link', 'set', 'eth0', 'up']);

    client.stdin?.write('close\n');
    expect((await out.next((l) => typeof l.closed === 'number')).closed).to.equal(300);
    server.stdin?.end();
  });

  it('counts a reset by the peer as a reset', async () => {
    const server = fx.spawn(b, binary, ['server', '0.0.0.0', '7101']);
    await new JsonLines(server).next((l) => l.ready === true);
    const client = fx.spawn(a, binary, ['client', '10.66.0.2', '7101', '20', '5000']);
    const out = new JsonLines(client);
    await out.next((l) => l.ready === true);
    // From now on b answers every packet to the server with a reset.
    fx.exec(b, 'nft', ['-f', '-'], 'table inet tl {\n  chain input { type filter hook input priority 0; tcp dport 7101 reject with tcp reset; }\n}\n');
    client.stdin?.write('ping 2000\n');
    const ping = await out.next((l) => l.ping === true);
    expect(ping.ok).to.equal(0);
    expect(ping.reset as number).to.be.greaterThan(0);
    client.stdin?.end();
    server.stdin?.end();
  });

  it('times an answer by the echo\'s arrival, not by when a stalled client read it, and reports the wait', async () => {
    const server = fx.spawn(b, binary, ['server', '0.0.0.0', '7102']);
    await new JsonLines(server).next((l) => l.ready === true);
    const client = fx.spawn(a, binary, ['client', '10.66.0.2', '7102', '50', '5000']);
    const out = new JsonLines(client);
    await out.next((l) => l.ready === true);
    const pause = (pid: number | undefined, signal: NodeJS.Signals) => { if (pid !== undefined) process.kill(pid, signal); };
    // The server holds the requests; the client stops; the echoes arrive while it is stopped.
    pause(server.pid, 'SIGSTOP');
    client.stdin?.write('wave 0 5000\n');
    await new Promise((r) => setTimeout(r, 100));
    pause(client.pid, 'SIGSTOP');
    pause(server.pid, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 1000));
    pause(client.pid, 'SIGCONT');
    const wave = await out.next((l) => l.wave === true);
    const answers = wave.answers as number[];
    expect(answers.every((x) => x >= 0)).to.equal(true);
    // Arrival: about when the server resumed (0.1 s), far from the read a second later.
    expect(Math.max(...answers)).to.be.below(700);
    expect(wave.readLagMaxMs as number).to.be.at.least(700);
    client.stdin?.end();
    server.stdin?.end();
  });
});
