// The plane bridge: calls, results, notifications and errors cross it as they would in one thread
// (error class, tag, type, app-tag, path and error-info kept), over a MessageChannel and over the
// real plane worker of `tandem start`, which closes its parts and ends by itself.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bridgeInProcess, startPlaneWorker } from '../../agent/plane/start-plane.js';
import type { PlaneParts } from '../../agent/plane/plane-server.js';
import { NetconfError } from '../../core/netconf-error.js';
import { SubsystemApplyError, type CommitContext, type ConfigJson, type NotificationSink } from '../../core/subsystem.js';

function fakeParts(seen: CommitContext[], closed: string[]): PlaneParts & { sink?: NotificationSink } {
  const parts: PlaneParts & { sink?: NotificationSink } = {
    subsystems: [{
      name: 'fake',
      owns: ['/tandem-vrf:vrf'],
      validate: (ctx) => {
        seen.push(ctx);
        return [{ message: 'bad thing', path: "/tandem-vrf:vrf[name='x']", appTag: 'too-many' }];
      },
      prepare: () => Promise.reject(new NetconfError('resource-denied', 'application', 'no room', { appTag: 'full', path: '/a', info: [{ name: 'bad-element', value: 'rule' }], severity: 'error' })),
      apply: () => Promise.reject(new SubsystemApplyError('nft -f failed', "/tandem-vrf:vrf[name='x']")),
      abort: () => Promise.reject(Object.assign(new RangeError('out of range'), {})),
    }],
    stateProviders: [{ name: 'st', paths: ['/tandem-ha:ha'], state: () => ({ 'tandem-ha:ha': { n: 1 } }) }],
    rpcProviders: [{ rpcPath: '/m:r', invoke: async (input: ConfigJson) => ({ echo: input }) }],
    attachNotify: (sink) => {
      parts.sink = sink;
      return () => { parts.sink = undefined; };
    },
    engine: { kind: 'soft', workers: 1 },
    close: async () => { closed.push('parts'); },
  };
  return parts;
}

describe('plane bridge', () => {
  it('carries results, notifications and each error class unchanged (MessageChannel)', async () => {
    const seen: CommitContext[] = [];
    const closed: string[] = [];
    const parts = fakeParts(seen, closed);
    const plane = await bridgeInProcess(parts);
    try {
      const [sub] = plane.subsystems;
      expect(sub?.name).to.equal('fake');
      expect(sub?.owns).to.deep.equal(['/tandem-vrf:vrf']);
      expect(sub?.undo, 'no undo in the plane: none on the proxy').to.equal(undefined);
      const cfg = { 'tandem-vrf:vrf': [{ name: 'x' }] };
      const ctx: CommitContext = { id: 7, oldConfig: {}, newConfig: cfg, changes: [{ operation: 'create', path: "/tandem-vrf:vrf[name='x']", schemaPath: '/tandem-vrf:vrf' }], startup: true };
      expect(await sub!.validate(ctx)).to.deep.equal([{ message: 'bad thing', path: "/tandem-vrf:vrf[name='x']", appTag: 'too-many' }]);
      expect(seen[0]).to.deep.equal(ctx);
      const prepareErr = await sub!.prepare(ctx).then(() => undefined, (e: unknown) => e);
      expect(prepareErr).to.be.instanceOf(NetconfError);
      const ne = prepareErr as NetconfError;
      expect([ne.tag, ne.type, ne.message]).to.deep.equal(['resource-denied', 'application', 'no room']);
      expect(ne.extra).to.deep.equal({ appTag: 'full', path: '/a', info: [{ name: 'bad-element', value: 'rule' }], severity: 'error' });
      const applyErr = await sub!.apply(ctx).then(() => undefined, (e: unknown) => e);
      expect(applyErr).to.be.instanceOf(SubsystemApplyError);
      expect((applyErr as SubsystemApplyError).path).to.equal("/tandem-vrf:vrf[name='x']");
      expect((applyErr as Error).message).to.equal('nft -f failed');
      const abortErr = await sub!.abort(ctx).then(() => undefined, (e: unknown) => e) as Error;
      expect([abortErr.name, abortErr.message]).to.deep.equal(['RangeError', 'out of range']);
      expect(plane.stateProviders[0]?.paths).to.deep.equal(['/tandem-ha:ha']);
      expect(await plane.stateProviders[0]!.state()).to.deep.equal({ 'tandem-ha:ha': { n: 1 } });
      expect(await plane.rpcProviders[0]!.invoke({ a: '1' })).to.deep.equal({ echo: { a: '1' } });
      const got: ConfigJson[] = [];
      plane.attachNotify((n) => got.push(n));
      parts.sink?.({ 'm:event': { x: 1 } });
      await new Promise((r) => setTimeout(r, 50));
      expect(got).to.deep.equal([{ 'm:event': { x: 1 } }]);
    } finally {
      await plane.close();
    }
    expect(closed).to.deep.equal(['parts']);
    expect(await Promise.resolve().then(() => plane.stateProviders[0]!.state()).then(() => 'answered', (e: Error) => e.message)).to.equal('the dataplane plane is closed');
  });

  it('the plane worker (soft engine) serves the dataplane parts, then closes them and ends', async function () {
    this.timeout(60_000);
    const dir = await mkdtemp(path.join(tmpdir(), 'tandem-plane-'));
    try {
      const plane = await startPlaneWorker({ engine: 'soft', stateDir: dir });
      let closed = false;
      try {
        expect(plane.engine.kind).to.equal('soft');
        expect(plane.subsystems.map((s) => s.name)).to.deep.equal(['fastpath', 'ha', 'sync', 'vrrp']);
        expect(plane.rpcProviders.map((p) => p.rpcPath)).to.include('/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization');
        const ha = plane.stateProviders.find((p) => p.name === 'ha');
        expect(ha, 'the ha state provider').to.not.equal(undefined);
        expect(await ha!.state()).to.be.an('object');
        // A validate through the worker: the fastpath subsystem refuses what the engine cannot do, with its path.
        const fastpath = plane.subsystems[0]!;
        const errors = await fastpath.validate({ id: 0, oldConfig: {}, newConfig: { 'tandem-vrf:vrf': [{ name: 'main', 'tandem-firewall:firewall': { 'default-action': 'accept' } }] } });
        expect(errors).to.be.an('array');
        await plane.close();
        closed = true;
        // It ended by itself (exit code 0), not terminated (exit code 1).
        expect(await plane.exited).to.equal(0);
        expect(await Promise.resolve().then(() => plane.stateProviders[0]!.state()).then(() => 'answered', (e: Error) => e.message)).to.match(/closed|ended/);
      } finally {
        if (!closed) await plane.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
