// The demo scenario of `npm run demo`, smaller: it must end with every established connection
// kept by the new master and the mirroring counters matching.
import { expect } from 'chai';
import { runDemo } from '../../demo/demo-run.js';

describe('sync demo (npm run demo)', function () {
  this.timeout(60000);

  it('synchronises, fails over and keeps every established connection', async () => {
    const lines: string[] = [];
    const r = await runDemo((l) => lines.push(l), { rate: 2000, trafficMs: 1000 });
    const why = `demo output:\n${lines.join('\n')}\nfigures: ${JSON.stringify(r)}`;
    expect(r['synced'], why).to.be.greaterThan(100);
    expect(r['held'], why).to.be.greaterThan(0);
    expect(r['forwarded'], why).to.equal(r['held']);
    expect(r['mirrorActive'], why).to.be.greaterThan(0);
    expect(r['mirrorStandby'], why).to.equal(r['mirrorActive']);
    expect(r['resyncCount'], why).to.equal(r['synced']);
    expect(lines.some((l) => l.startsWith('[5/5] summary'))).to.equal(true);
  });
});
