// The per-VRF dataplane in-thread: TCP state machine, UDP/ICMP, timeouts, firewall order, table limit.
import { expect } from 'chai';
import type { ConntrackEntry, ConntrackEventKind } from '../../fastpath/engine.js';
import { AddressTable } from '../../fastpath/soft/address-table.js';
import { VrfDataplane, Verdict, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type SoftPacket } from '../../fastpath/soft/vrf-dataplane.js';
import { parseNetworkProfiles, parseVrfConfig } from '../../fastpath/config/vrf-config.js';
import { vrfJson, type VrfJsonOptions } from './vrf-json.js';

interface Harness {
  dp: VrfDataplane;
  events: [ConntrackEventKind, ConntrackEntry][];
}

function harness(o: VrfJsonOptions = {}, max = 1000): Harness {
  const events: [ConntrackEventKind, ConntrackEntry][] = [];
  const dp: VrfDataplane = new VrfDataplane(new AddressTable(), { emit: (k, slot) => events.push([k, dp.toEntry(slot)]), natLog: () => undefined }, new Int32Array(new SharedArrayBuffer(4)), 0);
  dp.configure(parseVrfConfig(vrfJson('main', o), parseNetworkProfiles([]), max), []);
  return { dp, events };
}

const flow = { proto: 'tcp' as const, src: '10.0.0.1', dst: '192.0.2.10', sport: 40000, dport: 80 };
const pkt = (flags: number, reply = false, f = flow): SoftPacket => ({ flow: f, reply, flags });

function state(dp: VrfDataplane): string | undefined {
  return dp.dump(0, 10).entries[0]?.state;
}

describe('fastpath: soft dataplane TCP state machine and timeouts', () => {
  it('walks SYN-SENT -> SYN-RECV -> ESTABLISHED -> FIN-WAIT -> CLOSE-WAIT -> LAST-ACK -> TIME-WAIT with events', () => {
    const { dp, events } = harness();
    let now = 1000;
    expect(dp.process(pkt(TCP_SYN), now)).to.equal(Verdict.Forward);
    expect(state(dp)).to.equal('syn-sent');
    expect(dp.process(pkt(TCP_SYN | TCP_ACK, true), ++now)).to.equal(Verdict.Forward);
    expect(state(dp)).to.equal('syn-recv');
    dp.process(pkt(TCP_ACK), ++now);
    expect(state(dp)).to.equal('established');
    dp.process(pkt(TCP_FIN | TCP_ACK), ++now);
    expect(state(dp)).to.equal('fin-wait');
    dp.process(pkt(TCP_ACK, true), ++now);
    expect(state(dp)).to.equal('close-wait');
    dp.process(pkt(TCP_FIN | TCP_ACK, true), ++now);
    expect(state(dp)).to.equal('last-ack');
    dp.process(pkt(TCP_ACK), now + 1);
    expect(state(dp)).to.equal('time-wait');
    expect(events.map((e) => e[0])).to.deep.equal(['new', 'established', 'update', 'update', 'update', 'update']);
    const est = events[1]?.[1] as ConntrackEntry;
    expect(est.establishedAt).to.equal(1002);
    expect(est.timeout).to.equal(432000);
    expect(events.at(-1)?.[1].timeout).to.equal(120);
  });

  it('expires each state after its configured timeout, not before', () => {
    const { dp, events } = harness({ tcp: { 'syn-sent': 5, established: 50, 'time-wait': 7 } });
    dp.process(pkt(TCP_SYN), 0);
    dp.tick(4999);
    expect(dp.table.count).to.equal(1);
    dp.tick(5000);
    expect(dp.table.count).to.equal(0);
    expect(events.at(-1)?.[0]).to.equal('destroy');
    dp.process(pkt(TCP_SYN), 10_000);
    dp.process(pkt(TCP_SYN | TCP_ACK, true), 10_000);
    dp.process(pkt(TCP_ACK), 10_000);
    dp.process(pkt(TCP_ACK, true), 20_000); // traffic refreshes the timeout
    dp.tick(69_999);
    expect(dp.table.count).to.equal(1);
    dp.tick(70_000);
    expect(dp.table.count).to.equal(0);
  });

  it('RST closes a connection and invalid packets are dropped without state', () => {
    const { dp } = harness({ tcp: { close: 3 } });
    expect(dp.process(pkt(TCP_ACK), 0)).to.equal(Verdict.DropInvalid);
    expect(dp.process(pkt(TCP_SYN, true), 0)).to.equal(Verdict.DropInvalid);
    expect(dp.table.count).to.equal(0);
    dp.process(pkt(TCP_SYN), 0);
    dp.process(pkt(TCP_RST, true), 1);
    expect(state(dp)).to.equal('close');
    dp.tick(3001);
    expect(dp.table.count).to.equal(0);
    expect(dp.counters().dropsInvalid).to.equal(2);
  });

  it('UDP and ICMP become established on the first reply and use their timeouts', () => {
    const { dp, events } = harness({ udp: 20, icmp: 4 });
    const u = { proto: 'udp' as const, src: '10.0.0.2', dst: '192.0.2.53', sport: 5353, dport: 53 };
    const i = { proto: 'icmp' as const, src: '10.0.0.3', dst: '192.0.2.1', sport: 77, dport: 0 };
    dp.process({ flow: u }, 0);
    dp.process({ flow: i }, 0);
    expect(dp.dump(0, 10).entries.map((e) => e.state)).to.deep.equal(['syn-sent', 'syn-sent']);
    dp.process({ flow: u, reply: true }, 10);
    dp.process({ flow: i, reply: true }, 10);
    expect(events.filter((e) => e[0] === 'established').map((e) => [e[1].orig.proto, e[1].timeout])).to.deep.equal([['udp', 20], ['icmp', 4]]);
    // Traffic on an established UDP flow is reported once per second at most (sync rule 6).
    dp.process({ flow: u }, 500);
    dp.process({ flow: u }, 1500);
    dp.process({ flow: u }, 1600);
    expect(events.filter((e) => e[0] === 'update' && e[1].orig.proto === 'udp')).to.have.length(1);
    dp.tick(4010);
    expect(dp.dump(0, 10).entries.map((e) => e.orig.proto)).to.deep.equal(['udp']);
    dp.tick(21_600);
    expect(dp.table.count).to.equal(0);
  });

  it('applies firewall rules in order, first match wins, default action last', () => {
    const { dp } = harness({
      firewall: {
        'default-action': 'drop',
        rule: [
          { name: 'block-one', protocol: 'tcp', 'source-prefix': '10.0.0.9/32', action: 'drop' },
          { name: 'web', protocol: 'tcp', 'destination-prefix': '192.0.2.0/24', 'destination-port': { start: 80, end: 443 }, action: 'accept' },
          { name: 'web-again-drop', protocol: 'tcp', 'destination-port': { start: 80 }, action: 'drop' },
        ],
      },
    });
    expect(dp.process(pkt(TCP_SYN, false, { ...flow, src: '10.0.0.9' }), 0)).to.equal(Verdict.DropFirewall);
    expect(dp.process(pkt(TCP_SYN, false, { ...flow, dport: 443 }), 0)).to.equal(Verdict.Forward);
    expect(dp.process(pkt(TCP_SYN, false, { ...flow, dport: 444 }), 0)).to.equal(Verdict.DropFirewall);
    expect(dp.process({ flow: { proto: 'udp', src: '10.0.0.1', dst: '192.0.2.10', sport: 1, dport: 80 } }, 0)).to.equal(Verdict.DropFirewall);
    // Stateful: the reply of an accepted connection passes although no rule accepts it.
    expect(dp.process(pkt(TCP_SYN | TCP_ACK, true, { ...flow, dport: 443 }), 1)).to.equal(Verdict.Forward);
    expect(dp.counters().dropsFirewall).to.equal(3);
  });

  it('drops new connections beyond limits conntrack max and counts them', () => {
    const { dp } = harness({}, 3);
    const verdicts = [0, 1, 2, 3, 4].map((n) => dp.process(pkt(TCP_SYN, false, { ...flow, sport: 1000 + n }), 0));
    expect(verdicts).to.deep.equal([Verdict.Forward, Verdict.Forward, Verdict.Forward, Verdict.DropTableFull, Verdict.DropTableFull]);
    expect(dp.counters()).to.include({ conntracks: 3, dropsTableFull: 2 });
    dp.tick(200_000);
    expect(dp.process(pkt(TCP_SYN, false, { ...flow, sport: 2000 }), 200_000)).to.equal(Verdict.Forward);
  });

  it('flags ALG-related conntracks so sync never sends them (rule 7)', () => {
    const { dp, events } = harness();
    dp.process({ flow: { ...flow, sport: 20, dport: 40001 }, flags: TCP_SYN, alg: true }, 0);
    dp.process({ flow: { ...flow, sport: 20, dport: 40001 }, reply: true, flags: TCP_SYN | TCP_ACK }, 1);
    dp.process({ flow: { ...flow, sport: 20, dport: 40001 }, flags: TCP_ACK }, 2);
    dp.process(pkt(TCP_SYN), 3);
    expect(events.filter((e) => e[0] === 'established').map((e) => e[1].alg)).to.deep.equal([true]);
    expect(events.filter((e) => e[0] === 'new').map((e) => e[1].alg)).to.deep.equal([true, false]);
  });
});
