// `npm run bench -- traffic-agent`: flows per second a running soft agent takes from its flow
// generator (start-traffic over NETCONF) while it synchronises every one of them to a second agent.
// Two `tandem start` processes on loopback, configured as in the demo; for each offered rate the
// generator runs STEP_S seconds with every flow staying established (so each one is synchronised),
// then we wait for ha1 to have nothing pending and ha2 to hold as many synced conntracks as ha1
// reports synced. A rate is sustained when the generator opened >= 95 % of what was offered and sync
// caught up within CATCH_UP_S seconds of the end of the step.
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { findAll, findText, NetconfClient } from '../cli/netconf-client.js';
import { AgentProcess } from '../demo/agent-process.js';
import { counters, demoConfigXml, freePort, getState, syncState, until } from '../demo/demo-run.js';

const TRAFFIC_NS = 'urn:tandem:yang:tandem-traffic';
const RATES = (process.env.TRAFFIC_BENCH_RATES ?? '2000,5000,10000,20000').split(',').map(Number);
const STEP_S = Number(process.env.TRAFFIC_BENCH_STEP_S ?? 5);
const CATCH_UP_S = 2;

export async function run(): Promise<Record<string, unknown>> {
  const password = randomBytes(12).toString('base64url');
  const ha1 = await AgentProcess.start('bench-ha1', 'admin', password);
  const ha2 = await AgentProcess.start('bench-ha2', 'admin', password).catch(async (e: unknown) => { await ha1.stop(); throw e; });
  const c1 = await NetconfClient.connect({ host: '127.0.0.1', port: ha1.port, username: 'admin', password });
  const c2 = await NetconfClient.connect({ host: '127.0.0.1', port: ha2.port, username: 'admin', password });
  const steps: Record<string, unknown>[] = [];
  try {
    const port = await freePort();
    await c1.configure(demoConfigXml('127.0.0.1', '127.0.0.2', port, 'master'));
    await c2.configure(demoConfigXml('127.0.0.2', '127.0.0.1', port, 'backup'));
    await until(async () => { const s = await syncState(c1); return s.clients > 0 && s.established === s.clients; }, 'sync connections', 30_000);
    let subnet = 0;
    for (const rate of RATES) {
      subnet++;
      const load = loadavg()[0];
      const id = findText(await c1.rpc(`<start-traffic xmlns="${TRAFFIC_NS}"><vrf>main</vrf><rate>${rate}</rate><duration>${STEP_S}</duration>
        <count>${rate * STEP_S}</count><source-prefix>10.${100 + subnet}.0.0/16</source-prefix><destination-address>198.51.100.200</destination-address>
        <established-share>100</established-share><max-open>1000000</max-open><seed>${subnet}</seed></start-traffic>`), 'id');
      const t0 = Date.now();
      let opened = 0;
      for (;;) {
        await new Promise((r) => setTimeout(r, 250));
        const s = findAll(await getState(c1, `<traffic xmlns="${TRAFFIC_NS}"><source><id>${id}</id></source></traffic>`), 'source')[0];
        opened = Number(s ? findText(s, 'flows-opened') ?? 0 : 0);
        if (!s || findText(s, 'status') !== 'running') break;
        if (Date.now() - t0 > (STEP_S + 60) * 1000) break;
      }
      const runS = (Date.now() - t0) / 1000;
      const end = Date.now();
      let caughtUp = true;
      await until(async () => {
        const [s1, k2] = [await syncState(c1), await counters(c2)];
        return s1.pending === 0 && k2.synced >= s1.synced;
      }, 'sync to catch up', 60_000).catch(() => { caughtUp = false; });
      const catchUpS = (Date.now() - end) / 1000;
      const achieved = Math.round(opened / STEP_S);
      const step = { offered: rate, opened, achievedFlowsPerS: achieved, runS: Number(runS.toFixed(1)), syncCatchUpS: Number(catchUpS.toFixed(1)),
        caughtUp, sustained: opened >= 0.95 * rate * STEP_S && caughtUp && catchUpS <= CATCH_UP_S, loadavg1: load,
        ha2Synced: (await counters(c2)).synced };
      steps.push(step);
      process.stderr.write(`traffic-agent: ${JSON.stringify(step)}\n`);
    }
    const sustained = steps.filter((s) => s.sustained).map((s) => s.offered as number);
    return { method: `two tandem start processes on loopback, soft engine, 2 workers each; start-traffic ${STEP_S} s per offered rate, 100% established TCP, all synchronised to ha2`,
      steps, maxSustainedFlowsPerS: sustained.length ? Math.max(...sustained) : 0 };
  } finally {
    c1.close();
    c2.close();
    await ha1.stop();
    await ha2.stop();
  }
}
