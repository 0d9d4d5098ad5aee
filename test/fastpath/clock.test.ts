// The injectable clock: ManualClock fires timers in time order with now() at their due time.
import { expect } from 'chai';
import { ManualClock, RealClock } from '../../fastpath/clock.js';

describe('fastpath: clock', () => {
  it('ManualClock fires one-shot and interval timers in due order, at their due time', () => {
    const c = new ManualClock(0);
    const log: string[] = [];
    c.setTimer(250, () => log.push(`t250@${c.now()}`));
    const every = c.setInterval(100, () => log.push(`i@${c.now()}`));
    c.setTimer(100, () => log.push(`t100@${c.now()}`));
    c.advance(300);
    expect(log).to.deep.equal(['i@100', 't100@100', 'i@200', 't250@250', 'i@300']);
    expect(c.now()).to.equal(300);
    every.cancel();
    c.advance(1000);
    expect(log).to.have.length(5);
    expect(c.pending()).to.equal(0);
  });

  it('ManualClock runs timers armed by timers, refuses going back, and bounds runaway loops', () => {
    const c = new ManualClock(1000);
    const seen: number[] = [];
    c.setTimer(10, () => c.setTimer(10, () => seen.push(c.now())));
    c.set(1030);
    expect(seen).to.deep.equal([1020]);
    expect(() => c.set(5)).to.throw(/cannot go back/);
    expect(() => c.advance(-1)).to.throw(/cannot advance/);
    const zeroLoop = (): void => { c.setTimer(0, zeroLoop); };
    c.setTimer(0, zeroLoop);
    expect(() => c.advance(1, 1000)).to.throw(/more than 1000 timer firings/);
    expect(() => c.setInterval(0, () => undefined)).to.throw(/interval must be > 0/);
  });

  it('RealClock fires a timer after its delay and can cancel it', async () => {
    const c = new RealClock();
    const start = c.now();
    const fired = await new Promise<number>((resolve) => { c.setTimer(20, () => resolve(c.now())); });
    expect(fired - start).to.be.at.least(15);
    let count = 0;
    const t = c.setTimer(10, () => { count++; });
    t.cancel();
    await new Promise((r) => setTimeout(r, 40));
    expect(count).to.equal(0);
  });
});
