// The fastpath commit subsystem driven by the real commit transaction, on a real soft engine.
import { expect } from 'chai';
import { CommitTransaction, NetconfErrorList } from '../../agent/transaction/commit-transaction.js';
import type { ConfigJson } from '../../core/subsystem.js';
import { ManualClock } from '../../fastpath/clock.js';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { FastpathStateProvider, FastpathSubsystem } from '../../fastpath/fastpath-subsystem.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { TCP_ACK, TCP_SYN, Verdict } from '../../fastpath/soft/vrf-dataplane.js';
import { tcpFastPathProfile, vrfJson } from './vrf-json.js';

function config(o: { workers?: number; max?: number; engine?: string; vrfs?: Record<string, unknown>[]; profiles?: Record<string, unknown>[] }): ConfigJson {
  return {
    'tandem-system:system': { 'fast-path': { engine: o.engine ?? 'soft', limits: { 'cg-nat': { 'nb-event-threads': o.workers ?? 2 }, conntrack: { max: o.max ?? 1048576 } } } },
    ...(o.profiles ? { 'tandem-network-profile:network-profile': o.profiles } : {}),
    ...(o.vrfs ? { 'tandem-vrf:vrf': o.vrfs } : {}),
  };
}

const vs = (profile: string) => [{ name: 'vs_conn_mirror', vip: '192.0.2.100', port: 80, protocol: 'tcp', 'pool-member': [{ address: '10.9.0.1', port: 80, weight: 1 }], 'network-profile': profile, persistence: 'none' }];

describe('fastpath: commit subsystem and state', function () {
  this.timeout(30000);
  let engine: SoftEngine | undefined;
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  it('applies VRFs, resizes the pool, and reports virtual-service tcpstat as state data', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 1 });
    const tx = new CommitTransaction([new FastpathSubsystem(engine)]);
    const c1 = config({ workers: 3, profiles: [tcpFastPathProfile('mirror', { mirror: true })], vrfs: [vrfJson('main', { virtualServices: vs('mirror') })] });
    await tx.run({}, c1);
    expect(engine.workers).to.equal(3);
    expect(engine.vrfNames()).to.deep.equal(['main']);
    const flows = Array.from({ length: 30 }, (_, i) => ({ proto: 'tcp' as const, src: `172.16.0.${i + 1}`, dst: '192.0.2.100', sport: 999, dport: 80 }));
    await engine.inject('main', flows.map((flow) => ({ flow, flags: TCP_SYN })));
    await engine.inject('main', flows.map((flow) => ({ flow, reply: true, flags: TCP_SYN | TCP_ACK })));
    await engine.inject('main', flows.map((flow) => ({ flow, flags: TCP_ACK })));
    const state = await new FastpathStateProvider(engine).state();
    expect(state).to.deep.equal({
      'tandem-vrf:vrf': [{ name: 'main', 'tandem-virtual-service:virtual-service': [{ name: 'vs_conn_mirror', tcpstat: { 'mirror-conn-list-on-active': '30', 'mirrored-connections-on-standby': '0', connections: '30' } }] }],
    });
    // A pool size change alone is a commit that rebalances; conntracks survive it.
    const c2 = { ...c1, 'tandem-system:system': config({ workers: 2 })['tandem-system:system'] };
    await tx.run(c1, c2);
    expect(engine.workers).to.equal(2);
    expect(engine.counters('main').conntracks).to.equal(30);
    // Lowering conntrack max re-applies every VRF with the new limit.
    const c3 = { ...c2, 'tandem-system:system': config({ workers: 2, max: 30 })['tandem-system:system'] };
    await tx.run(c2, c3);
    expect(await engine.inject('main', [{ flow: { ...flows[0] as ConntrackEntry['orig'], sport: 1 }, flags: TCP_SYN }])).to.deep.equal([Verdict.DropTableFull]);
    // Removing the VRF removes it from the dataplane.
    await tx.run(c3, { ...c3, 'tandem-vrf:vrf': [] });
    expect(engine.vrfNames()).to.deep.equal([]);
  });

  it('refuses bad configuration with a precise path and message, leaving the dataplane unchanged', async () => {
    engine = await SoftEngine.create({ clock: new ManualClock(), workers: 2 });
    const tx = new CommitTransaction([new FastpathSubsystem(engine)]);
    const good = config({ vrfs: [vrfJson('main')] });
    await tx.run({}, good);
    const cases: [ConfigJson, RegExp, string | undefined][] = [
      [config({ engine: 'linux', vrfs: [vrfJson('main')] }), /not yet implemented: switching the running soft engine to linux/, '/tandem-system:system/fast-path/engine'],
      [config({ vrfs: [vrfJson('main', { virtualServices: vs('missing') })] }), /unknown network profile "missing"/, "/tandem-vrf:vrf[name='main']/tandem-virtual-service:virtual-service[name='vs_conn_mirror']/network-profile"],
      [config({ vrfs: [vrfJson('main', { cgNat: { pool: [{ name: 'huge', prefix: '100.0.0.0/4' }] } })] }), /pool huge: prefix 100.0.0.0\/4 is too large for the soft engine/, "/tandem-vrf:vrf[name='main']/tandem-cg-nat:cg-nat/pool[name='huge']/prefix"],
      [config({ vrfs: [vrfJson('main', { firewall: { rule: [{ name: 'r', 'source-prefix': '10.0.0.0/33', action: 'drop' }] } })] }), /invalid prefix "10.0.0.0\/33"/, undefined],
    ];
    for (const [bad, message, path] of cases) {
      let caught: unknown;
      try {
        await tx.run(good, bad);
      } catch (err) {
        caught = err;
      }
      expect(caught, String(message)).to.be.instanceOf(NetconfErrorList);
      const errs = (caught as NetconfErrorList).errors;
      expect(errs.map((e) => e.message).join('\n')).to.match(message);
      if (path) expect(errs.map((e) => e.extra.path)).to.include(path);
    }
    expect(engine.vrfNames()).to.deep.equal(['main']);
    expect(engine.workers).to.equal(2);
  });
});
