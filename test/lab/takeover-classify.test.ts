// How the takeover benchmark tells apart the late flows (lab/takeover-run.ts classifyLateFlows):
// a send that left the client after the deadline is the client's; a retransmission the dead master
// does not explain is a loss after the takeover; a flow sent after the takeover that lost nothing
// and was still late is the lab's slow path. No namespaces: the evidence is given.
import { expect } from 'chai';
import { classifyLateFlows, excessOverAnchor } from '../../lab/takeover-run.js';

describe('lab: classifying the late flows of a takeover', () => {
  const kill = 1_000_000;
  const gateways = kill + 200; // ha2 holds both gateways 0.2 s after the kill
  const deadline = gateways + 1000;
  const rto = 200;

  it('sorts each late flow by its evidence and leaves the flows in time out', () => {
    const flows = [
      // in time: sent at the kill, lost at the dead master, its first retransmission (at +200 ms) answered
      { send: kill, retrans: 1, answer: kill + 210 },
      // the client sent after the deadline: the client's
      { send: deadline + 50, retrans: 0, answer: deadline + 60 },
      // never sent at all (counted with the client's)
      { send: -1, retrans: 0, answer: -1 },
      // sent at the kill: one retransmission is explained (the send itself was lost; +210 ms is
      // after the gateways moved), three are not: lost after the takeover
      { send: kill + 10, retrans: 3, answer: kill + 1500 },
      // sent after the takeover, nothing retransmitted, answered late: the lab's slow path
      { send: gateways + 100, retrans: 0, answer: deadline + 500 },
      // sent before the takeover, retransmissions all explained by the dead master, late anyway
      { send: kill - 500, retrans: 2, answer: deadline + 100 },
    ];
    const out = classifyLateFlows({
      answers: flows.map((f) => f.answer),
      sendTimes: flows.map((f) => f.send),
      retrans: flows.map((f) => f.retrans),
      clientSendCpuMs: [12],
      clientSendInvoluntarySwitches: [3],
    }, kill, gateways, deadline, rto, 7);
    expect(out).to.include({ late: 5, sentAfterDeadline: 2, lostAfterTakeover: 1, sentAfterTakeoverNoLoss: 1, other: 1, serverRetransmissions: 7 });
    expect(out.allRetransHistogram).to.deep.equal([3, 1, 1, 1]);
    expect(out.retransHistogram).to.deep.equal([3, 0, 1, 1]);
    expect(out.clientSendCpuMs).to.deep.equal([12]);
  });

  it('counts as explained every retransmission that left before the gateways moved', () => {
    // Sent 1 s before the kill: sends at -1000, -800, -400, +400 (relative to the kill) with rto 200;
    // gateways at +200: three sends were lost to the dead master, so three retransmissions are
    // explained (the third, at +400, is the first after the takeover) and a fourth is a loss.
    const base = { answers: [deadline + 1], sendTimes: [kill - 1000], clientSendCpuMs: [], clientSendInvoluntarySwitches: [] };
    expect(classifyLateFlows({ ...base, retrans: [3] }, kill, gateways, deadline, rto, 0).other).to.equal(1);
    expect(classifyLateFlows({ ...base, retrans: [4] }, kill, gateways, deadline, rto, 0).lostAfterTakeover).to.equal(1);
    // Sent after the gateways moved: nothing is explained.
    const after = { answers: [deadline + 1], sendTimes: [gateways + 10], clientSendCpuMs: [], clientSendInvoluntarySwitches: [] };
    expect(classifyLateFlows({ ...after, retrans: [1] }, kill, gateways, deadline, rto, 0).lostAfterTakeover).to.equal(1);
  });

  it('compares the kill wave with the anchor flow by flow: what the failover added beyond one RTO', () => {
    // Per flow, ms from each wave's start; -1: no answer (left out of the comparison).
    const anchor = [50, 60, 70, 80, -1, 90];
    const kill = [260, 270, 900, 80 + 200 + 150, 300, -1];
    const out = excessOverAnchor(kill, anchor, 200);
    // excesses: 210, 210, 830, 350
    expect(out).to.include({ flows: 4, rtoMs: 200, maxMs: 830, beyondRtoPlus100ms: 2, beyondRtoPlus500ms: 1 });
    expect(out.p10Ms).to.equal(210);
    expect(out.p50Ms).to.equal(350);
    expect(out.per100ms).to.deep.equal([0, 0, 2, 1, 0, 0, 0, 0, 1]);
  });
});
