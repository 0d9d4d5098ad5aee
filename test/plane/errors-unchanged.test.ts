// The rpc-errors a client gets from the dataplane's subsystems are the same, byte for byte, whether
// the dataplane runs in the plane worker (default) or in the agent's thread (`--plane in-process`):
// a refusal at validate (fastpath: switching the running engine) and at prepare (sync: its listen
// port taken), each through a real `tandem start`.
import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import { freePort } from '../sync/two-nodes.js';
import { NetconfTestClient } from '../helpers/netconf-client.js';
import { startTandem, type TandemProcess } from '../helpers/tandem-process.js';

const SWITCH_ENGINE = '<config><system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system></config>';

function syncConfig(port: number): string {
  return `<config><ha xmlns="urn:tandem:yang:tandem-ha"><group><name>g1</name><state>master</state></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <peer><name>peer1</name><source>127.0.0.1</source><address>127.0.0.2</address><port>${port}</port></peer>
      <listen-ha-group>g1</listen-ha-group><shared-secret>errors-unchanged-shared-secret</shared-secret>
    </ha-fp-conntrack>
  </vrf></config>`;
}

/** The replies of the two refused commits on one agent started with `--plane plane`. */
async function refusals(plane: string, port: number): Promise<string[]> {
  let t: TandemProcess | undefined;
  let c: NetconfTestClient | undefined;
  try {
    t = await startTandem({ args: ['--plane', plane] });
    c = await NetconfTestClient.connect({ host: t.host, port: t.port, username: t.username, password: t.password });
    const out: string[] = [];
    for (const config of [SWITCH_ENGINE, syncConfig(port)]) {
      expect(await c.rpc(`<edit-config><target><candidate/></target>${config}</edit-config>`)).to.include('<ok/>');
      out.push(await c.rpc('<commit/>'));
      expect(await c.rpc('<discard-changes/>')).to.include('<ok/>');
    }
    return out;
  } finally {
    c?.close();
    await t?.stop();
  }
}

describe('plane worker: rpc-errors from the dataplane subsystems are unchanged', function () {
  this.timeout(180_000);
  let squatter: Server | undefined;

  after(async () => {
    await new Promise<void>((r) => (squatter ? squatter.close(() => r()) : r()));
  });

  it('validate and prepare refusals: the same reply with the worker as in-process', async () => {
    const port = await freePort();
    squatter = createServer();
    await new Promise<void>((r) => squatter!.listen(port, '127.0.0.1', r));
    const worker = await refusals('worker', port);
    const inProcess = await refusals('in-process', port);
    expect(worker[0]).to.include('<error-tag>operation-failed</error-tag>').and.include('fastpath: not yet implemented: switching the running soft engine to linux');
    expect(worker[0]).to.match(/<error-path[^>]*>\/tandem-system:system\/fast-path\/engine<\/error-path>/);
    expect(worker[1]).to.include(`sync: cannot listen for peer peer1 on 127.0.0.1 port ${port}`).and.include('EADDRINUSE');
    expect(worker[1]).to.match(/<error-path[^>]*>\/tandem-vrf:vrf\[name='main'\]\/tandem-ha-fp-conntrack:ha-fp-conntrack\/peer\[name='peer1'\]\/source<\/error-path>/);
    expect(worker).to.deep.equal(inProcess);
  });
});
