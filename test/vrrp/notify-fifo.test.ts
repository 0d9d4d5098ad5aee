// The notify FIFO: line parsing, and a real FIFO read while writers come and go.
import { expect } from 'chai';
import { promises as fs, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotifyFifo, parseNotifyLine, type InstanceStateEvent } from '../../ha/vrrp/notify-fifo.js';

describe('VRRP notify FIFO', function () {
  describe('parseNotifyLine', function () {
    it('parses INSTANCE lines of every state', function () {
      for (const state of ['MASTER', 'BACKUP', 'FAULT', 'STOP', 'DELETED'] as const) {
        expect(parseNotifyLine(`INSTANCE "gw-1.a" ${state} 150`)).to.deep.equal({ instance: 'gw-1.a', state, priority: 150 });
      }
      expect(parseNotifyLine('INSTANCE "v1" MASTER 100\r')).to.deep.equal({ instance: 'v1', state: 'MASTER', priority: 100 });
    });

    it('skips lines about groups and virtual servers', function () {
      expect(parseNotifyLine('GROUP "g1" MASTER')).to.equal(null);
      expect(parseNotifyLine('RS 10.0.0.1 80 UP')).to.equal(null);
    });

    it('reports malformed lines as errors', function () {
      for (const line of ['INSTANCE v1 MASTER 100', 'INSTANCE "v1" MASTER', 'INSTANCE "v1" SLEEPING 100', 'INSTANCE "v1" MASTER 999', 'garbage', '']) {
        expect(parseNotifyLine(line), line).to.be.instanceOf(Error);
      }
    });
  });

  describe('reading a FIFO', function () {
    let dir: string;
    let fifo: NotifyFifo | undefined;

    beforeEach(function () {
      dir = mkdtempSync(join(tmpdir(), 'tandem-vrrp-fifo-'));
    });
    afterEach(async function () {
      await fifo?.close();
      fifo = undefined;
      await fs.rm(dir, { recursive: true, force: true });
    });

    async function waitFor(events: InstanceStateEvent[], count: number): Promise<void> {
      for (let i = 0; i < 200 && events.length < count; i++) await new Promise((r) => setTimeout(r, 25));
    }

    it('emits instance states in order, ignores bad lines, survives writers closing, removes the FIFO on close', async function () {
      const path = join(dir, 'notify.fifo');
      await fs.writeFile(path, 'a stale regular file');
      fifo = new NotifyFifo(path, { vrf: 'test' });
      const events: InstanceStateEvent[] = [];
      fifo.onState((ev) => events.push(ev));
      await fifo.open();
      expect(statSync(path).isFIFO()).to.equal(true);
      // Each writeFile opens, writes and closes: like keepalived restarting between lines.
      await fs.writeFile(path, 'INSTANCE "v1" BACKUP 100\nthis is not a notify line\n');
      await fs.writeFile(path, 'GROUP "g" MASTER\nINSTANCE "v1" MASTER 100\n');
      await fs.writeFile(path, 'INSTANCE "v2" FAU');
      await fs.writeFile(path, 'LT 50\n');
      await waitFor(events, 3);
      expect(events).to.deep.equal([
        { instance: 'v1', state: 'BACKUP', priority: 100 },
        { instance: 'v1', state: 'MASTER', priority: 100 },
        { instance: 'v2', state: 'FAULT', priority: 50 },
      ]);
      await fifo.close();
      fifo = undefined;
      await fs.access(path).then(
        () => expect.fail('FIFO still present'),
        (err: NodeJS.ErrnoException) => expect(err.code).to.equal('ENOENT'),
      );
    });
  });
});
