// Issue 8 (commit latency): the commit transaction runs the phases of the plane's subsystems in one
// round trip (validate, prepare, apply; not one per subsystem and phase; two when a test's fault
// hook runs between phases), with the same
// all-or-nothing outcome as one call each: a validate that fails prepares nothing; a prepare that
// fails stops the others' prepare and
// aborts all; an apply that fails stops the later applies, aborts them, undoes the failed one and
// those before it in reverse order, and takes back the save made alongside; a save that fails
// undoes every apply.
import { expect } from 'chai';
import { MessagePort } from 'node:worker_threads';
import { bridgeInProcess, type RunningPlane } from '../../agent/plane/start-plane.js';
import type { PlaneParts } from '../../agent/plane/plane-server.js';
import { CommitTransaction, type AlongsideApply } from '../../agent/transaction/commit-transaction.js';
import { SubsystemApplyError, type CommitSubsystem, type ConfigChange } from '../../core/subsystem.js';

type Fail = { validate?: string; prepare?: string; apply?: string };

function fakeSubsystem(name: string, log: string[], fail: Record<string, Fail>): CommitSubsystem {
  return {
    name,
    owns: [`/tandem-vrf:vrf/m-${name}:${name}`],
    validate: () => {
      log.push(`${name}.validate`);
      return fail[name]?.validate ? [{ message: fail[name].validate!, path: `/v/${name}` }] : [];
    },
    prepare: async () => {
      log.push(`${name}.prepare`);
      return fail[name]?.prepare ? [{ message: fail[name].prepare!, path: `/p/${name}` }] : [];
    },
    apply: async () => {
      log.push(`${name}.apply`);
      if (fail[name]?.apply) throw new SubsystemApplyError(fail[name].apply!, `/a/${name}`);
    },
    abort: async () => {
      log.push(`${name}.abort`);
    },
    undo: async () => {
      log.push(`${name}.undo`);
    },
  };
}

function parts(log: string[], fail: Record<string, Fail>): PlaneParts {
  return {
    subsystems: ['a', 'b', 'c'].map((n) => fakeSubsystem(n, log, fail)),
    stateProviders: [],
    rpcProviders: [],
    attachNotify: () => () => undefined,
    engine: { kind: 'soft', workers: 1 },
    close: async () => undefined,
  };
}

/** A save alongside the applies that records what happened to it. */
function save(log: string[], failWith?: string): AlongsideApply {
  return {
    run: async () => {
      log.push('save.run');
      if (failWith) throw new Error(failWith);
    },
    undo: async () => {
      log.push('save.undo');
    },
  };
}

const changes: ConfigChange[] = ['a', 'b', 'c'].map((n) => ({ operation: 'create', path: `/tandem-vrf:vrf[name='x']/m-${n}:${n}`, schemaPath: `/tandem-vrf:vrf/m-${n}:${n}` }));

describe('commit phases batched over the plane bridge', () => {
  let plane: RunningPlane | undefined;
  const posted: string[] = [];
  const original = MessagePort.prototype.postMessage;

  before(() => {
    // Count what the main side posts to the plane (requests carry t: 'phase' or t: 'subsystem').
    MessagePort.prototype.postMessage = function (this: MessagePort, value: unknown, ...rest: unknown[]) {
      const t = (value as { t?: unknown } | null)?.t;
      if (t === 'phase' || t === 'subsystem') posted.push(`${t}:${(value as { method: string }).method}`);
      if (t === 'validate-prepare' || t === 'validate-prepare-apply') posted.push(t);
      return (original as (...args: unknown[]) => void).call(this, value, ...rest);
    } as typeof original;
  });
  after(() => {
    MessagePort.prototype.postMessage = original;
  });
  afterEach(async () => {
    await plane?.close();
    plane = undefined;
    posted.length = 0;
  });

  async function transaction(log: string[], fail: Record<string, Fail> = {}, faults: ConstructorParameters<typeof CommitTransaction>[1] = {}): Promise<CommitTransaction> {
    plane = await bridgeInProcess(parts(log, fail));
    return new CommitTransaction(plane.subsystems, faults);
  }

  it('runs validate, prepare and apply of all subsystems in one message, in order, with the save started once every prepare passed', async () => {
    const log: string[] = [];
    const tx = await transaction(log);
    await tx.run({}, { 'tandem-vrf:vrf': [{ name: 'x' }] }, changes, { alongside: save(log) });
    expect(posted).to.deep.equal(['validate-prepare-apply']);
    expect(log.filter((l) => !l.startsWith('save'))).to.deep.equal([
      'a.validate', 'b.validate', 'c.validate', 'a.prepare', 'b.prepare', 'c.prepare', 'a.apply', 'b.apply', 'c.apply']);
    expect(log.indexOf('save.run'), 'the save starts after every prepare').to.be.greaterThan(log.indexOf('c.prepare'));
  });

  it('with a fault hook between phases: validate and prepare in one message, each apply alone after the hook', async () => {
    const log: string[] = [];
    const tx = await transaction(log, {}, { beforeApply: (sub) => { log.push(`hook.${sub}`); } });
    await tx.run({}, { 'tandem-vrf:vrf': [{ name: 'x' }] }, changes, { alongside: save(log) });
    expect(posted).to.deep.equal(['validate-prepare', 'subsystem:apply', 'subsystem:apply', 'subsystem:apply']);
    expect(log.filter((l) => !l.startsWith('save'))).to.deep.equal([
      'a.validate', 'b.validate', 'c.validate', 'a.prepare', 'b.prepare', 'c.prepare', 'hook.a', 'a.apply', 'hook.b', 'b.apply', 'hook.c', 'c.apply']);
    expect(log).to.include('save.run');
  });

  it('a validate that fails: every validate runs, no prepare, nothing to abort, nothing saved', async () => {
    const log: string[] = [];
    const tx = await transaction(log, { a: { validate: 'bad a' }, c: { validate: 'bad c' } });
    const err = await tx.run({}, {}, changes, { alongside: save(log) }).then(() => undefined, (e: unknown) => e) as { errors: { message: string; extra: { path?: string } }[] };
    expect(err.errors.map((e) => [e.message, e.extra.path])).to.deep.equal([['a: bad a', '/v/a'], ['c: bad c', '/v/c']]);
    expect(log).to.deep.equal(['a.validate', 'b.validate', 'c.validate']);
    expect(posted).to.deep.equal(['validate-prepare-apply']);
  });

  it('a prepare that fails stops the later prepares, aborts every subsystem, and saves nothing', async () => {
    const log: string[] = [];
    const tx = await transaction(log, { b: { prepare: 'no room' } });
    const err = await tx.run({}, {}, changes, { alongside: save(log) }).then(() => undefined, (e: unknown) => e) as { errors: { message: string; extra: { path?: string } }[] };
    expect(err.errors.map((e) => e.message)).to.deep.equal(['b: no room']);
    expect(err.errors[0]!.extra.path).to.equal('/p/b');
    expect(log).to.deep.equal(['a.validate', 'b.validate', 'c.validate', 'a.prepare', 'b.prepare', 'a.abort', 'b.abort', 'c.abort']);
  });

  it('an apply that fails stops the later applies: they are aborted, the failed one and those before it undone in reverse, the save taken back', async () => {
    const log: string[] = [];
    const tx = await transaction(log, { b: { apply: 'nft -f failed' } });
    const err = await tx.run({}, {}, changes, { alongside: save(log) }).then(() => undefined, (e: unknown) => e) as { errors: { message: string; extra: { path?: string } }[] };
    expect(err.errors).to.have.length(1);
    expect(err.errors[0]!.message).to.equal('b: apply failed at /a/b: nft -f failed; commit refused, the previous configuration is back in place');
    expect(err.errors[0]!.extra.path).to.equal('/a/b');
    const after = log.slice(log.indexOf('a.apply'));
    expect(after.filter((l) => l !== 'save.run')).to.deep.equal(['a.apply', 'b.apply', 'c.abort', 'b.undo', 'a.undo', 'save.undo']);
    expect(log, 'c was never applied').to.not.include('c.apply');
    expect(log).to.include('save.run');
    expect(posted[0]).to.equal('validate-prepare-apply');
  });

  it('a save that fails undoes every apply in reverse order', async () => {
    const log: string[] = [];
    const tx = await transaction(log);
    const err = await tx.run({}, {}, changes, { alongside: save(log, 'ENOSPC') }).then(() => undefined, (e: unknown) => e) as { errors: { message: string }[] };
    expect(err.errors.map((e) => e.message)).to.deep.equal(['running could not be saved: ENOSPC; commit refused, the previous configuration is back in place']);
    expect(log.slice(-3)).to.deep.equal(['c.undo', 'b.undo', 'a.undo']);
    expect(log).to.not.include('save.undo');
  });
});
