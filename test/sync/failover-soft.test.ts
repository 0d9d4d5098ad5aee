// Rules 4 and 5 and a static failover end to end on the real soft engine (worker threads) of
// both nodes: ha1 forwards TCP connections, sync carries them to ha2, a NETCONF-style
// reconfiguration of the HA group switches roles, and ha2 ends up holding every established
// conntrack with the rule-5 timeouts.
import { expect } from 'chai';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry, FlowTuple } from '../../fastpath/engine.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, Verdict, type SoftPacket } from '../../fastpath/soft/vrf-dataplane.js';
import { freePort, nodeConfig, reconfigure, type NodeOpts, startNode, type SyncNode, waitFor } from './two-nodes.js';

const N = 400;
const ESTABLISHED_TIMEOUT = 300;

function flows(n: number, base: number): FlowTuple[] {
  return Array.from({ length: n }, (_, i) => ({ proto: 'tcp', src: `10.${base}.${i >> 8}.${i & 255}`, dst: '192.0.2.10', sport: 30000 + i, dport: 80 }));
}

function handshake(fs: FlowTuple[]): SoftPacket[][] {
  return [fs.map((flow) => ({ flow, flags: TCP_SYN })), fs.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })), fs.map((flow) => ({ flow, flags: TCP_ACK }))];
}

async function entries(engine: SoftEngine, vrf = 'main'): Promise<ConntrackEntry[]> {
  const out: ConntrackEntry[] = [];
  await engine.dump(vrf, (b) => {
    out.push(...b);
  });
  return out;
}

/** Advance the shared clock in 1 s steps, letting both engines run their expiry ticks. */
async function advance(clock: ManualClock, engines: SoftEngine[], seconds: number): Promise<void> {
  for (let i = 0; i < seconds; i++) {
    clock.advance(1000);
    if (i % 50 === 49) for (const e of engines) await e.flush();
  }
  for (const e of engines) await e.flush();
}

describe('sync on the soft engine: rules 4 and 5, static failover', function () {
  this.timeout(60000);
  let clock: ManualClock;
  let ha1: SyncNode<SoftEngine> | undefined;
  let ha2: SyncNode<SoftEngine> | undefined;
  let port: number;

  const opts = (source: string, address: string, state: 'master' | 'backup', grace?: number): NodeOpts => ({
    source, address, states: { g1: state }, workers: 2,
    vrfs: [{ name: 'main', port, tcpEstablished: ESTABLISHED_TIMEOUT, firewall: { 'default-action': 'accept', 'drop-invalid': true }, ...(grace ? { grace: { tcp: grace } } : {}) }],
  });

  async function pair(grace?: number): Promise<void> {
    clock = new ManualClock(1_000_000);
    port = await freePort();
    ha1 = await startNode('ha1', await SoftEngine.create({ clock, workers: 2 }), clock, nodeConfig(opts('127.0.0.1', '127.0.0.2', 'master', grace)));
    ha2 = await startNode('ha2', await SoftEngine.create({ clock, workers: 2 }), clock, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'backup', grace)));
    await waitFor(() => !!ha1?.service.ready() && !!ha2?.service.ready(), 'sync connections up', 20000);
  }

  async function traffic(n: number): Promise<FlowTuple[]> {
    const a = ha1 as SyncNode<SoftEngine>;
    const fs = flows(n, 1);
    for (const step of handshake(fs)) expect(new Set(await a.engine.inject('main', step))).to.deep.equal(new Set([Verdict.Forward]));
    await a.engine.flush();
    const b = ha2 as SyncNode<SoftEngine>;
    await waitFor(() => b.engine.counters('main').conntracks === n, `${n} conntracks on ha2`);
    return fs;
  }

  afterEach(async () => {
    for (const n of [ha1, ha2]) {
      if (!n) continue;
      await n.service.close();
      await n.engine.close();
    }
    ha1 = ha2 = undefined;
  });

  describe('SPEC rule 4: on a backup synchronised conntracks never expire and their traffic is blocked', function () {
    it('keeps them far beyond their timeout and drops matching packets', async () => {
      await pair();
      const fs = await traffic(N);
      const a = ha1 as SyncNode<SoftEngine>;
      const b = ha2 as SyncNode<SoftEngine>;
      // ha1 goes away (its expiry deletes must not reach ha2); ha2 stays backup.
      await a.service.close();
      await advance(clock, [a.engine, b.engine], 3 * ESTABLISHED_TIMEOUT);
      expect(a.engine.counters('main').conntracks).to.equal(0); // the master does expire them
      expect(b.engine.counters('main')).to.include({ conntracks: N, synced: N });
      const verdicts = await b.engine.inject('main', fs.slice(0, 10).map((flow) => ({ flow, flags: TCP_ACK })));
      expect(new Set(verdicts)).to.deep.equal(new Set([Verdict.DropBackup]));
      expect(b.engine.counters('main').dropsBackup).to.equal(10);
    });
  });

  describe('SPEC rule 5: after failover the new master waits the whole current timeout from the switch time', function () {
    it('holds every established conntrack, forwards it, and releases unused ones only after timeout from the switch', async () => {
      await pair();
      const fs = await traffic(N);
      const a = ha1 as SyncNode<SoftEngine>;
      const b = ha2 as SyncNode<SoftEngine>;
      await advance(clock, [a.engine, b.engine], 100); // activity on ha1 is 100 s old: not synchronised
      // Planned failover: the static group state is edited on both nodes.
      await reconfigure(a, nodeConfig(opts('127.0.0.1', '127.0.0.2', 'backup')));
      await reconfigure(b, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'master')));
      expect(b.engine.role('main')).to.equal('master');
      const held = await entries(b.engine);
      expect(held).to.have.length(N);
      for (const e of held) expect(e).to.include({ state: 'established', timeout: ESTABLISHED_TIMEOUT, synced: true });
      // The new master resyncs everything to the new backup, which then holds them as synced.
      await b.service.vrfs.get('main')?.resyncIdle();
      await waitFor(() => a.engine.counters('main').synced === N, 'ha1 holds the conntracks as synced');
      // ha2 forwards the connections now; ha1 (backup) blocks them.
      const used = fs.slice(0, 50);
      expect(new Set(await b.engine.inject('main', used.map((flow) => ({ flow, flags: TCP_ACK }))))).to.deep.equal(new Set([Verdict.Forward]));
      expect(new Set(await a.engine.inject('main', used.map((flow) => ({ flow, flags: TCP_ACK }))))).to.deep.equal(new Set([Verdict.DropBackup]));
      await advance(clock, [a.engine, b.engine], ESTABLISHED_TIMEOUT - 5);
      expect(b.engine.counters('main').conntracks).to.equal(N); // 395 s after ha1's last activity: kept
      await b.engine.inject('main', used.map((flow) => ({ flow, flags: TCP_ACK }))); // still in use
      await advance(clock, [a.engine, b.engine], 10);
      // Unused ones are released once their whole timeout has passed since the switch.
      expect(b.engine.counters('main').conntracks).to.equal(used.length);
    });

    it('SPEC rule 8 on the soft engine: after a manual synchronisation the synchronised activity time decides', async () => {
      await pair();
      await traffic(N);
      const a = ha1 as SyncNode<SoftEngine>;
      const b = ha2 as SyncNode<SoftEngine>;
      await advance(clock, [a.engine, b.engine], 100); // last activity on ha1: 100 s ago
      const done = await a.service.manualSync('main');
      expect(done.count).to.equal(N);
      await a.service.vrfs.get('main')?.resyncIdle();
      await waitFor(() => (b.service.vrfs.get('main')?.receive ?? 0) >= 2 * N, 'manual synchronisation received');
      await b.engine.flush();
      await reconfigure(a, nodeConfig(opts('127.0.0.1', '127.0.0.2', 'backup')));
      await reconfigure(b, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'master')));
      await advance(clock, [a.engine, b.engine], ESTABLISHED_TIMEOUT - 100 - 5);
      expect(b.engine.counters('main').conntracks).to.equal(N);
      await advance(clock, [a.engine, b.engine], 10);
      // Released at last activity + timeout, 200 s after the switch instead of 300.
      expect(b.engine.counters('main').conntracks).to.equal(0);
    });

    it('with undefined-grace-period, keeps them during the grace period and releases all by the timeout', async () => {
      await pair(10);
      await traffic(N);
      const a = ha1 as SyncNode<SoftEngine>;
      const b = ha2 as SyncNode<SoftEngine>;
      await reconfigure(a, nodeConfig(opts('127.0.0.1', '127.0.0.2', 'backup', 10)));
      await reconfigure(b, nodeConfig(opts('127.0.0.2', '127.0.0.1', 'master', 10)));
      await advance(clock, [a.engine, b.engine], 9);
      expect(b.engine.counters('main').conntracks).to.equal(N);
      await advance(clock, [a.engine, b.engine], ESTABLISHED_TIMEOUT);
      expect(b.engine.counters('main').conntracks).to.equal(0);
    });
  });
});
