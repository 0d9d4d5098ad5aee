// The demo of `npm run demo`, smaller: two `tandem start` processes driven over NETCONF. It must end
// with every connection of the capture held by the backup, then forwarded by the new master after
// the failover, and the mirroring counters matching.
import { expect } from 'chai';
import { runDemo } from '../../demo/demo-run.js';

describe('demo (npm run demo): two agent processes over NETCONF', function () {
  this.timeout(120_000);

  it('synchronises, fails over by an edit of the HA group and keeps every connection', async () => {
    const lines: string[] = [];
    const r = await runDemo((l) => lines.push(l), { connections: 300, rate: 500, seconds: 2 });
    const why = `demo output:\n${lines.join('\n')}\nfigures: ${JSON.stringify(r)}`;
    expect(r.heldOnBackup, why).to.equal(300);
    expect(r.forwardedAfterFailover, why).to.equal(300);
    expect(r.generatorFlows, why).to.be.greaterThan(0);
    expect(r.ha2Synced, why).to.be.at.least(300);
    expect(r.mirrorActive, why).to.be.at.least(300);
    expect(r.mirrorStandby, why).to.equal(r.mirrorActive);
    expect(lines.some((l) => l.startsWith('[6/6] summary: every connection continued'))).to.equal(true);
  });

  it('control run without ha-fp-conntrack: the connections do not continue and the demo fails', async () => {
    const lines: string[] = [];
    let failure: Error | undefined;
    try {
      await runDemo((l) => lines.push(l), { connections: 100, rate: 200, seconds: 1, withoutSync: true });
    } catch (err) {
      failure = err as Error;
    }
    expect(failure?.message, lines.join('\n')).to.equal('only 0 of 100 connections continued after the failover');
    expect(lines.some((l) => l.includes('ha2 blocked 0 of 100 data packets as backup'))).to.equal(true);
    expect(lines.some((l) => l.startsWith('[6/6] summary: NOT every connection continued'))).to.equal(true);
  });
});
