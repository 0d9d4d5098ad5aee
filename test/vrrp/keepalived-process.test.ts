// KeepalivedProcess on its own (root, one namespace): console output as JSON log lines, and no
// keepalived outliving an agent that is SIGKILLed (a killed master must not keep the address).
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { KeepalivedProcess, keepalivedArgv, type KeepalivedExit } from '../../ha/vrrp/keepalived-process.js';
import { renderKeepalivedConf } from '../../ha/vrrp/keepalived-config.js';
import { NotifyFifo, type InstanceStateEvent } from '../../ha/vrrp/notify-fifo.js';
import { requireRoot, VrrpNamespacePair, waitUntil } from './vrrp-namespaces.js';

const RUNNER = join(dirname(fileURLToPath(import.meta.url)), 'keepalived-runner.js');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('keepalived process', function () {
  this.timeout(60_000);

  it('builds the command line: VRRP only, own pid files, in the namespace, ended with its parent', function () {
    expect(keepalivedArgv({ vrf: 'blue', netns: 'blue', confPath: '/s/blue/keepalived.conf', stateDir: '/s/blue' })).to.deep.equal([
      'ip', 'netns', 'exec', 'blue', 'setpriv', '--pdeathsig', 'TERM', '--', 'keepalived', '--dont-fork', '--log-console', '--no-syslog',
      '--use-file', '/s/blue/keepalived.conf', '--pid', '/s/blue/keepalived.pid', '--vrrp_pid', '/s/blue/vrrp.pid', '--vrrp',
    ]);
    expect(keepalivedArgv({ vrf: 'main', confPath: '/s/k.conf', stateDir: '/s', binary: '/usr/sbin/keepalived' }).slice(0, 6)).to.deep.equal([
      'setpriv', '--pdeathsig', 'TERM', '--', '/usr/sbin/keepalived', '--dont-fork',
    ]);
    expect(keepalivedArgv({ vrf: 'main', confPath: '/s/k.conf', stateDir: '/s', realtime: true }).slice(0, 8)).to.deep.equal([
      'setpriv', '--pdeathsig', 'TERM', '--', 'chrt', '--rr', '1', 'keepalived',
    ]);
  });

  it('restarts a keepalived that keeps dying, after a backoff, and never once stopped', async function () {
    const dir2 = mkdtempSync(join(tmpdir(), 'tandem-vrrp-dying-'));
    const ka = new KeepalivedProcess({ vrf: 'main', confPath: join(dir2, 'none.conf'), stateDir: dir2, binary: join(dir2, 'no-such-keepalived'), backoffMinMs: 20, backoffMaxMs: 80 });
    const exits: KeepalivedExit[] = [];
    ka.onExit((e) => exits.push(e));
    try {
      ka.start();
      await waitUntil('four deaths', () => exits.length >= 4, 10_000);
      expect(exits.every((e) => e.restarting && e.code !== 0)).to.equal(true);
      expect(ka.restarts).to.be.at.least(3);
    } finally {
      await ka.stop();
      await fs.rm(dir2, { recursive: true, force: true });
    }
    const seen = exits.length;
    const restarts = ka.restarts;
    await new Promise((r) => setTimeout(r, 300));
    expect(ka.restarts, 'no restart after stop').to.equal(restarts);
    expect(exits.length).to.be.at.most(seen + 1);
  });

  describe('in a namespace (root)', function () {
    const pair = new VrrpNamespacePair();
    let dir: string;
    let runner: ChildProcess | undefined;
    let fifo: NotifyFifo | undefined;
    let keepalivedPid: number | undefined;
    let direct: KeepalivedProcess | undefined;

    before(function () {
      requireRoot(this);
      pair.setup();
      dir = mkdtempSync(join(tmpdir(), 'tandem-vrrp-proc-'));
    });

    after(async function () {
      await direct?.stop();
      if (runner?.exitCode === null && runner.signalCode === null) runner.kill('SIGKILL');
      if (keepalivedPid !== undefined && alive(keepalivedPid)) process.kill(keepalivedPid, 'SIGKILL');
      await fifo?.close();
      if (dir) await fs.rm(dir, { recursive: true, force: true });
      pair.cleanup();
    });

    it('logs keepalived output as JSON lines, and keepalived ends when the agent is SIGKILLed', async function () {
      const confPath = join(dir, 'keepalived.conf');
      const vip = `${pair.subnet}.100`;
      fifo = new NotifyFifo(join(dir, 'notify.fifo'));
      const events: InstanceStateEvent[] = [];
      fifo.onState((ev) => events.push(ev));
      await fifo.open();
      const conf = renderKeepalivedConf(
        { vrf: pair.a, enabled: true, instances: [{ name: 'solo', linkInterface: pair.link, vrid: 9, priority: 100, virtualAddresses: [vip], advertIntervalCs: 50, preempt: true }] },
        { notifyFifo: fifo.path },
      );
      await fs.writeFile(confPath, conf);
      runner = spawn(process.execPath, [RUNNER, pair.a, pair.a, confPath, dir], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TANDEM_LOG_LEVEL: 'info' } });
      const logLines: Record<string, unknown>[] = [];
      createInterface({ input: runner.stdout! }).on('line', (line) => {
        try {
          logLines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          logLines.push({ notJson: line });
        }
      });
      await waitUntil('the lone node is master', () => events.some((e) => e.instance === 'solo' && e.state === 'MASTER'));
      await waitUntil('the address is up', () => pair.addresses(pair.a).includes(vip), 5000);
      keepalivedPid = Number((await fs.readFile(join(dir, 'keepalived.pid'), 'utf8')).trim());
      expect(alive(keepalivedPid)).to.equal(true);
      await waitUntil('keepalived said it entered MASTER', () => logLines.some((l) => l['component'] === 'keepalived' && /Entering MASTER STATE/.test(String(l['msg']))), 5000);
      expect(logLines.filter((l) => 'notJson' in l)).to.deep.equal([]);
      const line = logLines.find((l) => /Entering MASTER STATE/.test(String(l['msg'])))!;
      expect(line).to.include({ vrf: pair.a, netns: pair.a, pid: keepalivedPid });
      expect(String(line['msg'])).to.not.match(/^\w{3} \w{3} /); // keepalived's own date is stripped

      runner.kill('SIGKILL');
      await waitUntil('keepalived ended after its parent died', () => !alive(keepalivedPid!), 10_000);
      // It ended cleanly (SIGTERM from the kernel), so it released the address and said STOP.
      await waitUntil('the FIFO reported STOP', () => events.some((e) => e.instance === 'solo' && e.state === 'STOP'), 5000);
      expect(pair.addresses(pair.a)).to.not.include(vip);
    });

    it('keeps its real-time VRRP processes through reloads: a commit that reloads keepalived causes no failover', async function () {
      // keepalived's own real-time mode (vrrp_rt_priority) got its VRRP process SIGKILLed by the
      // kernel a few seconds after a reload (about 4 in 10 reloads); the respawn came up backup
      // and the peer took over. A master (a) and a backup (b), both reloaded 8 times. 0.5 s adverts:
      // at 5 cs the two reloads alone (both instances restart their timers) may swap the roles for a
      // moment on a loaded machine; what is checked here is that no VRRP process is killed.
      const nodes = [
        { ns: pair.a, priority: 150 },
        { ns: pair.b, priority: 100 },
      ].map(({ ns, priority }) => {
        const stateDir = join(dir, `realtime-${ns}`);
        const events: InstanceStateEvent[] = [];
        const exits: KeepalivedExit[] = [];
        const fifo = new NotifyFifo(join(stateDir, 'notify.fifo'));
        fifo.onState((ev) => events.push(ev));
        const ka = new KeepalivedProcess({ vrf: ns, netns: ns, confPath: join(stateDir, 'keepalived.conf'), stateDir, realtime: true });
        ka.onExit((e) => exits.push(e));
        return { ns, priority, stateDir, events, exits, fifo, ka };
      });
      // Field 41 of /proc/PID/stat (the 39th after the command) is the scheduling policy: 2 = SCHED_RR.
      const policy = async (pid: number) => Number((await fs.readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[38]);
      try {
        for (const n of nodes) {
          await fs.mkdir(n.stateDir);
          await n.fifo.open();
          await fs.writeFile(join(n.stateDir, 'keepalived.conf'), renderKeepalivedConf(
            { vrf: n.ns, enabled: true, instances: [{ name: 'rt', linkInterface: pair.link, vrid: 11, priority: n.priority, virtualAddresses: [`${pair.subnet}.102`], advertIntervalCs: 50, preempt: true }] },
            { notifyFifo: n.fifo.path },
          ));
          n.ka.start();
        }
        const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
        await waitUntil('a master, b backup', () => a.events.some((e) => e.state === 'MASTER') && b.events.some((e) => e.state === 'BACKUP'));
        const pids: number[] = [];
        for (const n of nodes) {
          const pid = await n.ka.vrrpPid();
          expect(pid, `VRRP process of ${n.ns}`).to.be.a('number');
          expect(await policy(pid!), 'VRRP process runs SCHED_RR').to.equal(2);
          pids.push(pid!);
        }
        const aSince = a.events.length;
        const bSince = b.events.length;
        for (let i = 0; i < 8; i++) {
          for (const n of nodes) n.ka.reload();
          await new Promise((r) => setTimeout(r, 700));
        }
        await new Promise((r) => setTimeout(r, 3000));
        for (const [i, n] of nodes.entries()) {
          expect(await n.ka.vrrpPid(), `${n.ns}: the same VRRP process after 8 reloads (none killed and respawned)`).to.equal(pids[i]);
          expect(n.exits).to.deep.equal([]);
        }
        // A reload re-reports the current state (fifo_write_vrrp_states_on_reload); a respawned
        // process would come up BACKUP on a, and b would then have become MASTER.
        expect(a.events.slice(aSince).filter((e) => e.state !== 'MASTER'), 'a never left MASTER').to.deep.equal([]);
        expect(b.events.slice(bSince).filter((e) => e.state !== 'BACKUP'), 'b never became MASTER').to.deep.equal([]);
      } finally {
        for (const n of nodes) {
          await n.ka.stop();
          await n.fifo.close();
        }
      }
    });

    it('defers a reload asked while keepalived starts (an early SIGHUP would kill it), then sends it', async function () {
      const stateDir = join(dir, 'direct');
      await fs.mkdir(stateDir);
      const confPath = join(stateDir, 'keepalived.conf');
      const fifo2 = new NotifyFifo(join(stateDir, 'notify.fifo'));
      const events: InstanceStateEvent[] = [];
      fifo2.onState((ev) => events.push(ev));
      await fifo2.open();
      try {
        await fs.writeFile(confPath, renderKeepalivedConf(
          { vrf: pair.b, enabled: true, instances: [{ name: 'early', linkInterface: pair.link, vrid: 10, priority: 100, virtualAddresses: [`${pair.subnet}.101`], advertIntervalCs: 100, preempt: true }] },
          { notifyFifo: fifo2.path },
        ));
        direct = new KeepalivedProcess({ vrf: pair.b, netns: pair.b, confPath, stateDir });
        const exits: KeepalivedExit[] = [];
        direct.onExit((e) => exits.push(e));
        direct.start();
        const pid = direct.pid;
        direct.reload();
        direct.reload();
        // The instance starts in BACKUP, and the reload (fifo_write_vrrp_states_on_reload) says BACKUP again.
        await waitUntil('two BACKUP lines: start and the deferred reload', () => events.filter((e) => e.instance === 'early' && e.state === 'BACKUP').length >= 2, 10_000);
        expect(exits).to.deep.equal([]);
        expect(direct.restarts).to.equal(0);
        expect(direct.pid).to.equal(pid);
        await direct.stop();
        expect(exits).to.have.length(1);
        expect(exits[0]).to.include({ pid, restarting: false });
        expect(alive(pid!)).to.equal(false);
      } finally {
        await fifo2.close();
      }
    });
  });
});
