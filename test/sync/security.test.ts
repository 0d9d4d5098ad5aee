// The sync channel gives nothing away (issue 9, item 3): a wrong secret is visible on both nodes;
// a listener sends nothing secret-derived to a client that has not proved the secret; tampered and
// replayed frames close the connection with a logged reason; non-peer addresses are closed at
// accept and a flood of them does not keep the real peer out; weak secrets are refused. Real TCP
// on loopback addresses (127.0.0.0/8 is local on Linux: no root needed); every loop is bounded.
import { expect } from 'chai';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { encodeRecords, recordSize, type SyncRecord } from '../../sync/conntrack-codec.js';
import { AeadFrameCipher, FrameDecoder, FrameEncoder } from '../../sync/frame-codec.js';
import { decodeRefuse, NONCE_BYTES, RefuseCode, secretKey, sessionKeys } from '../../sync/handshake.js';
import { listenerLog } from '../../sync/inbound-connection.js';
import { encodeHeader, FrameType, HEADER_BYTES, SyncProtocolError } from '../../sync/protocol.js';
import { clientLog } from '../../sync/sync-client.js';
import type { SyncListener } from '../../sync/sync-listener.js';
import { checkSharedSecrets, sharedSecretWeakness } from '../../sync/shared-secret-policy.js';
import { SyncStateProvider } from '../../sync/sync-state.js';
import { toYangNotification } from '../../sync/sync-notifications.js';
import { loadTandemContext } from '../../yang/libyang/index.js';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { flow, nodeConfig, Pair, reconfigure, SECRET, startNode, type SyncNode, waitFor } from './two-nodes.js';
import { MemoryEngine } from './memory-engine.js';
import { RawSyncClient } from './raw-sync-client.js';

type Json = Record<string, unknown>;
type Warning = { fields: Record<string, unknown>; msg: string };

/** Records every warn line of the sync listener and client loggers while a test runs. */
class WarnCapture {
  readonly listener: Warning[] = [];
  readonly client: Warning[] = [];
  private restore: Array<() => void> = [];

  start(): this {
    for (const [log, into] of [[listenerLog, this.listener], [clientLog, this.client]] as const) {
      const orig = log.warn;
      log.warn = ((fields: Record<string, unknown>, msg: string) => {
        into.push({ fields, msg });
      }) as typeof log.warn;
      this.restore.push(() => {
        log.warn = orig;
      });
    }
    return this;
  }

  stop(): void {
    for (const r of this.restore) r();
    this.restore = [];
  }
}

function listenerOf(node: SyncNode): SyncListener {
  const l = [...(node.service as unknown as { listeners: Map<string, SyncListener> }).listeners.values()][0];
  if (!l) throw new Error(`${node.name} has no sync listener`);
  return l;
}

function statuses(node: SyncNode): string[] {
  return (node.service.vrfs.get('main')?.clientStats() ?? []).map((c) => c.status);
}

function entry(i: number): ConntrackEntry {
  const f = flow();
  return {
    vrf: 'main', orig: f, reply: { ...f, src: f.dst, dst: f.src, sport: f.dport, dport: f.sport }, state: 'established',
    timeout: 300 + i, alg: false, establishedAt: 1, lastActivity: 1,
  };
}

function ctPayload(n: number): Buffer {
  const recs: SyncRecord[] = Array.from({ length: n }, (_, i) => ({ entry: entry(i), withActivity: false, timeout: 300 }));
  return encodeRecords(recs, recs.map(recordSize), 1);
}

describe('sync security: the frame cipher (AES-256-GCM, counters as nonces, per-direction keys)', function () {
  const key = randomBytes(32);
  const sealed = (enc: FrameEncoder, n: number): Buffer => Buffer.concat(enc.encode(FrameType.CtNew, ctPayload(n)));
  const pair = (): { enc: FrameEncoder; dec: FrameDecoder } => {
    const enc = new FrameEncoder();
    enc.setCipher(new AeadFrameCipher(key));
    const dec = new FrameDecoder();
    dec.setCipher(new AeadFrameCipher(key));
    return { enc, dec };
  };

  it('encrypts: no record byte of the payload appears on the wire', () => {
    const { enc, dec } = pair();
    const payload = ctPayload(50);
    const wire = Buffer.concat(enc.encode(FrameType.CtNew, payload));
    expect(wire.length).to.equal(HEADER_BYTES + payload.length + 16);
    // Any 8-byte window of the plaintext would be found if it were sent as is.
    for (let i = 0; i + 8 <= payload.length; i += 8) expect(wire.indexOf(payload.subarray(i, i + 8))).to.equal(-1);
    expect(dec.push(wire)[0]?.payload.equals(payload)).to.equal(true);
  });

  it('refuses a bit flipped in the header, the ciphertext or the tag', () => {
    for (const at of ['header', 'body', 'tag'] as const) {
      const { enc, dec } = pair();
      const wire = sealed(enc, 3);
      if (at === 'header') wire[3] = FrameType.CtUpdate; // the type is authenticated data
      else {
        const i = at === 'body' ? HEADER_BYTES + 5 : wire.length - 1;
        wire[i] = (wire[i] as number) ^ 0x01;
      }
      expect(() => dec.push(wire), at).to.throw(SyncProtocolError, /failed authentication/);
    }
  });

  it('refuses a replayed and a reordered frame, and a frame of the other direction', () => {
    const { enc, dec } = pair();
    const a = sealed(enc, 1);
    expect(dec.push(a)).to.have.length(1);
    expect(() => dec.push(a)).to.throw(SyncProtocolError, /failed authentication.*sequence 1/);
    const r = pair();
    sealed(r.enc, 1); // frame 0, never delivered
    const second = sealed(r.enc, 1);
    expect(() => r.dec.push(second)).to.throw(SyncProtocolError, /sequence 0/);
    const other = new FrameDecoder();
    other.setCipher(new AeadFrameCipher(randomBytes(32)));
    expect(() => other.push(sealed(pair().enc, 1))).to.throw(SyncProtocolError, /failed authentication/);
  });
});

describe('sync security: a wrong shared secret is visible on both nodes', function () {
  this.timeout(60000);
  let p: Pair | undefined;
  const warns = new WarnCapture();
  afterEach(async () => {
    warns.stop();
    await p?.close();
    p = undefined;
  });

  it('shows authentication-failed in state data, in sync-connection-down and as a warning on each side; a fixed secret recovers', async () => {
    warns.start();
    p = await new Pair().start({ workers: 2, ha2Secret: 'the-other-nodes-secret-42' }, false);
    const pair = p;
    await waitFor(() => [pair.ha1, pair.ha2].every((n) => statuses(n).every((s) => s === 'authentication-failed')), 'every client of both nodes authentication-failed', 20000);
    for (const node of [pair.ha1, pair.ha2]) {
      const state = new SyncStateProvider(node.service).state() as Json;
      const vrf = (state['tandem-vrf:vrf'] as Json[])[0] as Json;
      const peer = ((vrf['tandem-ha-fp-conntrack:ha-fp-conntrack'] as Json)['peer'] as Json[])[0] as Json;
      expect((peer['client'] as Json[]).map((c) => c['connection-status']), node.name).to.deep.equal(['authentication-failed', 'authentication-failed']);
      const downs = node.notifications.filter((n) => n.kind === 'connection-down');
      // One notification per client and episode, not one per retry.
      expect(downs.map((n) => (n as { client: string }).client).sort(), node.name).to.deep.equal(['npf_event0', 'npf_event1']);
      for (const n of downs) expect((n as { reason: string }).reason).to.match(/^authentication-failed: peer refused our proof of the shared secret/);
    }
    // The state (with the new enum) and the notification parse strictly against the YANG modules.
    const yang = await loadTandemContext();
    try {
      const tree = yang.parse(JSON.stringify(pair.ha1.config), { format: 'json', kind: 'config' });
      const st = yang.parse(JSON.stringify(new SyncStateProvider(pair.ha1.service).state()), { format: 'json', kind: 'data', validate: false });
      tree.merge(st);
      expect(tree.print({ format: 'json' })).to.include('"connection-status":"authentication-failed"');
      st.free();
      tree.free();
      const down = pair.ha1.notifications.find((n) => n.kind === 'connection-down');
      yang.parse(JSON.stringify(toYangNotification(down as NonNullable<typeof down>)), { format: 'json', kind: 'notification' }).free();
    } finally {
      yang.free();
    }
    // Client side: one warning per connection and episode, naming peer and client.
    const clientWarns = warns.client.filter((w) => /authentication failed/.test(w.msg));
    expect(clientWarns.length).to.equal(4);
    expect(new Set(clientWarns.map((w) => `${String(w.fields['vrf'])}/${String(w.fields['client'])}`))).to.deep.equal(new Set(['main/npf_event0', 'main/npf_event1']));
    // Listener side: the address that failed, rate-limited (at most one line per source and 10 s).
    const listenerWarns = warns.listener.filter((w) => /failed authentication/.test(w.msg));
    expect(listenerWarns.map((w) => w.fields['remote']).sort()).to.deep.equal(['127.0.0.1', '127.0.0.2']);
    expect(listenerOf(pair.ha2).stats.authenticationFailures).to.be.greaterThan(1);
    // Nothing was applied and nothing established meanwhile.
    expect(pair.ha1.notifications.some((n) => n.kind === 'connection-up')).to.equal(false);
    // The operator fixes ha2's secret: every connection comes up.
    await reconfigure(pair.ha2, nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, workers: 2, vrfs: [{ name: 'main', port: pair.port }] }));
    await waitFor(() => statuses(pair.ha1).every((s) => s === 'established') && statuses(pair.ha2).every((s) => s === 'established'), 'established with the right secret', 20000);
    const f = flow();
    pair.ha1.engine.open('main', f);
    await waitFor(() => pair.ha2.engine.get('main', f) !== undefined, 'a conntrack synced after the fix');
  });
});

describe('sync security: conntracks never cross the link in clear', function () {
  this.timeout(60000);
  const nodes: SyncNode[] = [];
  let proxy: Server | undefined;
  const sockets = new Set<Socket>();
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
    for (const n of nodes) {
      await n.service.close();
      await n.engine.close();
    }
  });

  it('carries 200 conntracks to the backup with none of their addresses visible on the wire', async () => {
    const { freePort } = await import('./two-nodes.js');
    const port = await freePort();
    // ha1 -> 127.0.0.5:port (a recording relay) -> ha2 at 127.0.0.2:port, relayed from 127.0.0.1,
    // the address ha2 knows as its peer.
    const wire: Buffer[] = [];
    proxy = createServer((inbound) => {
      const out = connect({ host: '127.0.0.2', port, localAddress: '127.0.0.1' });
      for (const s of [inbound, out]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          inbound.destroy();
          out.destroy();
        });
      }
      inbound.on('data', (d: Buffer) => {
        wire.push(d);
        out.write(d);
      });
      out.on('data', (d: Buffer) => inbound.write(d));
    });
    await new Promise<void>((r) => (proxy as Server).listen({ host: '127.0.0.5', port }, () => r()));
    const clock = new Pair().clock;
    const ha2 = await startNode('ha2', new MemoryEngine(clock, 1), clock, nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, workers: 1, vrfs: [{ name: 'main', port }] }));
    nodes.push(ha2);
    const ha1 = await startNode('ha1', new MemoryEngine(clock, 1), clock, nodeConfig({ source: '127.0.0.1', address: '127.0.0.5', states: { g1: 'master' }, workers: 1, vrfs: [{ name: 'main', port }] }));
    nodes.push(ha1);
    await waitFor(() => statuses(ha1).every((st) => st === 'established'), 'ha1 established through the relay', 20000);
    const flows = Array.from({ length: 200 }, () => flow());
    for (const f of flows) (ha1.engine as MemoryEngine).open('main', f);
    await waitFor(() => ha2.engine.counters('main').conntracks === 200, '200 conntracks on ha2');
    const bytes = Buffer.concat(wire);
    const ipv4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));
    const seen = flows.filter((f) => bytes.indexOf(ipv4(f.src)) !== -1).length;
    let dst = 0;
    for (let at = bytes.indexOf(ipv4('192.0.2.1')); at !== -1; at = bytes.indexOf(ipv4('192.0.2.1'), at + 1)) dst++;
    // In clear every one of them would be there; ciphertext matches a 4-byte value by chance only.
    expect(seen, 'client addresses found on the wire').to.be.lessThan(3);
    expect(dst, 'occurrences of the server address').to.be.lessThan(3);
    expect(bytes.length).to.be.greaterThan(200 * 20);
  });
});

describe('sync security: a client does not trust a listener that cannot prove the secret', function () {
  this.timeout(60000);
  let node: SyncNode | undefined;
  let impostor: Server | undefined;
  const sockets = new Set<Socket>();
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => (impostor ? impostor.close(() => r()) : r()));
    await node?.service.close();
    await node?.engine.close();
  });

  it('shows authentication-failed and sends no conntrack to an impostor at the peer address', async () => {
    const { freePort } = await import('./two-nodes.js');
    const port = await freePort();
    // The impostor answers like a listener but without the secret: its welcome is sealed with a
    // key of its own. It records everything the client sends after its proof.
    const afterAuth: Buffer[] = [];
    impostor = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      const dec = new FrameDecoder();
      const enc = new FrameEncoder();
      let phase: 'hello' | 'auth' | 'done' = 'hello';
      s.on('data', (d: Buffer) => {
        if (phase === 'done') {
          afterAuth.push(d);
          return;
        }
        try {
          for (let fs = dec.push(d); fs.length > 0; fs = dec.push(Buffer.alloc(0))) {
            for (const f of fs) {
              if (phase === 'hello' && f.type === FrameType.Hello) {
                for (const part of enc.encode(FrameType.Challenge, randomBytes(NONCE_BYTES))) s.write(part);
                phase = 'auth';
              } else if (phase === 'auth' && f.type === FrameType.Auth) {
                enc.setCipher(new AeadFrameCipher(randomBytes(32)));
                for (const part of enc.encode(FrameType.Welcome, Buffer.concat([randomBytes(32), Buffer.from([3]), Buffer.from('bad'), randomBytes(32)]))) s.write(part);
                phase = 'done';
                return;
              }
            }
          }
        } catch {
          s.destroy();
        }
      });
    });
    await new Promise<void>((r) => (impostor as Server).listen({ host: '127.0.0.2', port }, () => r()));
    const clock = new Pair().clock;
    node = await startNode('ha1', new MemoryEngine(clock, 1), clock, nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, workers: 1, vrfs: [{ name: 'main', port }] }));
    const ha1 = node;
    const f = flow();
    (ha1.engine as MemoryEngine).open('main', f);
    await waitFor(() => statuses(ha1).every((st) => st === 'authentication-failed'), 'the client sees authentication-failed', 20000);
    const down = ha1.notifications.find((n) => n.kind === 'connection-down') as { reason: string } | undefined;
    expect(down?.reason).to.match(/^authentication-failed: peer's welcome does not verify/);
    expect(ha1.notifications.some((n) => n.kind === 'connection-up')).to.equal(false);
    // Nothing but the identity could have followed the proof, and not even that was sent.
    expect(Buffer.concat(afterAuth).length).to.equal(0);
  });
});

describe('sync security: the listener sends nothing secret-derived before the client proved the secret', function () {
  this.timeout(60000);
  let p: Pair | undefined;
  after(async () => p?.close());

  it('gives a client that never proves only the challenge nonce, and one with a wrong proof only a refusal', async () => {
    p = await new Pair().start({ workers: 1 });
    // 1. Hello, then silence: the listener sends exactly one challenge (header + fresh nonce)
    //    and closes at the handshake timeout.
    const c = await RawSyncClient.connect('127.0.0.2', p.port, '127.0.0.1');
    const { hello, challenge } = await c.hello();
    await c.closedByServer('handshake timeout', 8000);
    const bytes = c.receivedBytes();
    expect(bytes.length).to.equal(HEADER_BYTES + NONCE_BYTES);
    expect(bytes.readUInt8(3)).to.equal(FrameType.Challenge);
    expect(bytes.subarray(HEADER_BYTES).equals(challenge)).to.equal(true);
    // Nothing in it depends on the secret: every value a guesser could test is absent.
    const keys = sessionKeys(await secretKey(SECRET, 'main'), hello, challenge);
    for (const v of [keys.serverProof, keys.clientProof, keys.clientToServer, keys.serverToClient, await secretKey(SECRET, 'main')]) {
      expect(bytes.indexOf(v.subarray(0, 8))).to.equal(-1);
    }
    // Fresh per connection: a second client gets another nonce.
    const c2 = await RawSyncClient.connect('127.0.0.2', p.port, '127.0.0.1');
    const second = await c2.hello();
    expect(second.challenge.equals(challenge)).to.equal(false);
    // 2. A wrong proof: the answer is a clear refusal saying why, then the close; no welcome.
    c2.send(FrameType.Auth, randomBytes(32));
    await c2.closedByServer('wrong proof');
    const after = c2.receivedBytes().subarray(HEADER_BYTES + NONCE_BYTES);
    expect(after.readUInt8(3)).to.equal(FrameType.Refuse);
    const refusal = decodeRefuse(after.subarray(HEADER_BYTES, HEADER_BYTES + after.readUInt32BE(4)));
    expect(refusal.code).to.equal(RefuseCode.AuthenticationFailed);
    expect(refusal.reason).to.match(/authentication failed/);
    expect(after.length).to.equal(HEADER_BYTES + after.readUInt32BE(4));
    const keys2 = sessionKeys(await secretKey(SECRET, 'main'), second.hello, second.challenge);
    expect(c2.receivedBytes().indexOf(keys2.serverProof.subarray(0, 8))).to.equal(-1);
  });
});

describe('sync security: tampered and replayed frames from an authenticated peer', function () {
  this.timeout(60000);
  let p: Pair | undefined;
  const warns = new WarnCapture();
  afterEach(async () => {
    warns.stop();
    await p?.close();
    p = undefined;
  });

  it('closes the connection on a tampered frame with the reason logged, and applies nothing of it', async () => {
    p = await new Pair().start({ workers: 1 });
    warns.start();
    const receiver = p.ha2.service.vrfs.get('main');
    const before = { count: p.ha2.engine.counters('main').conntracks, receive: receiver?.receive };
    const c = await RawSyncClient.connect('127.0.0.2', p.port, '127.0.0.1');
    await c.authenticate(SECRET);
    const frame = Buffer.concat(c.encoder.encode(FrameType.CtNew, ctPayload(5)));
    frame[HEADER_BYTES + 20] = (frame[HEADER_BYTES + 20] as number) ^ 0x40;
    c.socket.write(frame);
    await c.closedByServer('tampered frame');
    const w = warns.listener.find((x) => /failed authentication/.test(String(x.fields['reason'])));
    expect(w, 'a warning with the reason').to.not.equal(undefined);
    expect(String(w?.fields['reason'])).to.match(/frame failed authentication \(type 7, .*sequence 1\): tampered/);
    expect(w?.fields['remote']).to.equal('127.0.0.1');
    expect(p.ha2.engine.counters('main').conntracks).to.equal(before.count);
    expect(receiver?.receive).to.equal(before.receive);
  });

  it('rejects a replayed frame: the first copy is applied, the replay closes the connection', async () => {
    p = await new Pair().start({ workers: 1 });
    warns.start();
    const receiver = p.ha2.service.vrfs.get('main');
    const before = receiver?.receive ?? 0;
    const c = await RawSyncClient.connect('127.0.0.2', p.port, '127.0.0.1');
    await c.authenticate(SECRET);
    const frame = Buffer.concat(c.encoder.encode(FrameType.CtNew, ctPayload(3)));
    c.socket.write(frame);
    await waitFor(() => receiver?.receive === before + 3, 'the first copy applied');
    c.socket.write(frame);
    await c.closedByServer('replayed frame');
    expect(receiver?.receive).to.equal(before + 3);
    expect(warns.listener.some((x) => /failed authentication .*sequence 2/.test(String(x.fields['reason'])))).to.equal(true);
    // Replayed into another connection (other keys): refused too.
    const d = await RawSyncClient.connect('127.0.0.2', p.port, '127.0.0.1');
    await d.authenticate(SECRET);
    d.socket.write(frame);
    await d.closedByServer('frame of another connection');
    expect(receiver?.receive).to.equal(before + 3);
  });
});

describe('sync security: non-peer addresses are closed at accept; per-source slots keep the peer in', function () {
  this.timeout(120000);
  const warns = new WarnCapture();
  const nodes: SyncNode[] = [];
  const sockets = new Set<Socket>();
  const children = new Set<ChildProcess>();
  afterEach(async () => {
    warns.stop();
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    children.clear();
    for (const s of sockets) s.destroy();
    sockets.clear();
    for (const n of nodes.splice(0)) {
      await n.service.close();
      await n.engine.close();
    }
  });

  /** One connection from `from`; resolves when it is closed (true) or still open after `holdMs` (false). */
  function probe(port: number, from: string, send: Buffer | undefined, holdMs: number): Promise<{ closed: boolean; bytes: number; ms: number }> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const s = connect({ host: '127.0.0.2', port, localAddress: from });
      sockets.add(s);
      let bytes = 0;
      let done = false;
      const finish = (closed: boolean): void => {
        if (done) return;
        done = true;
        clearTimeout(t);
        resolve({ closed, bytes, ms: performance.now() - t0 });
      };
      const t = setTimeout(() => finish(false), holdMs);
      s.on('connect', () => {
        if (send) s.write(send);
      });
      s.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        finish(true);
      });
    });
  }

  async function backup(port: number, extraPeers: Array<{ name: string; address: string }> = []): Promise<SyncNode> {
    const clock = new Pair().clock;
    const config = nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, workers: 2, vrfs: [{ name: 'main', port }] });
    const hfc = ((config['tandem-vrf:vrf'] as Json[])[0] as Json)['tandem-ha-fp-conntrack:ha-fp-conntrack'] as Json;
    for (const e of extraPeers) (hfc['peer'] as Json[]).push({ name: e.name, source: '127.0.0.2', address: e.address, port });
    const node = await startNode('ha2', new MemoryEngine(clock, 2), clock, config);
    nodes.push(node);
    await waitFor(() => listenerOf(node).listening, 'ha2 listening');
    return node;
  }

  async function master(port: number): Promise<SyncNode<MemoryEngine>> {
    const clock = new Pair().clock;
    const config = nodeConfig({ source: '127.0.0.1', address: '127.0.0.2', states: { g1: 'master' }, workers: 2, vrfs: [{ name: 'main', port }] });
    const node = await startNode('ha1', new MemoryEngine(clock, 2), clock, config);
    nodes.push(node);
    return node;
  }

  it('closes a connection from a non-peer address before reading a byte, and warns once per source, not per connection', async () => {
    const { freePort } = await import('./two-nodes.js');
    const port = await freePort();
    const ha2 = await backup(port);
    warns.start();
    const receiver = ha2.service.vrfs.get('main');
    const errorsBefore = receiver?.receiveError ?? 0;
    const hello = Buffer.concat([encodeHeader(FrameType.Hello, 0)]);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => probe(port, '127.0.0.3', i % 2 === 0 ? hello : undefined, 3000)));
    expect(results.every((r) => r.closed)).to.equal(true);
    expect(results.every((r) => r.bytes === 0)).to.equal(true);
    // Closed at once, also those that never sent anything (no handshake timeout involved).
    expect(Math.max(...results.map((r) => r.ms))).to.be.lessThan(2000);
    const l = listenerOf(ha2);
    expect(l.stats.refusedNonPeer).to.equal(50);
    // The hello was never read: no VRF saw it (a hello from a non-peer would be a receive-error).
    expect(receiver?.receiveError).to.equal(errorsBefore);
    const lines = warns.listener.filter((w) => /no configured peer/.test(w.msg));
    expect(lines.length).to.equal(1);
    expect(lines[0]?.fields['remote']).to.equal('127.0.0.3');
  });

  it('a flood of 600 non-peer connections does not delay the real peer', async () => {
    const { freePort } = await import('./two-nodes.js');
    // Baseline: how long ha1 takes to establish with nobody else around (the secret's key derived
    // beforehand, as it is in both runs then).
    await secretKey(SECRET, 'main');
    const basePort = await freePort();
    await backup(basePort);
    let t0 = performance.now();
    const base = await master(basePort);
    await waitFor(() => statuses(base).every((s) => s === 'established'), 'baseline established', 20000);
    const baselineMs = performance.now() - t0;
    for (const n of nodes.splice(0)) {
      await n.service.close();
      await n.engine.close();
    }
    // Under attack: another process keeps 600 connections from 127.0.0.3 coming, each reopened
    // as soon as it is closed (at most 3,000 in all, for at most 5 s), while ha1 connects.
    const port = await freePort();
    const ha2 = await backup(port);
    warns.start();
    const flooder = fork(fileURLToPath(new URL('./connection-flood.js', import.meta.url)), ['127.0.0.2', String(port), '127.0.0.3', '600', '3000', '5000'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.add(flooder);
    const messages: Array<Record<string, number>> = [];
    flooder.on('message', (m) => messages.push(m as Record<string, number>));
    const exited = new Promise((r) => flooder.once('exit', r));
    await waitFor(() => messages.length > 0, 'the flooder started');
    await waitFor(() => listenerOf(ha2).stats.refusedNonPeer >= 600, 'the flood is on', 20000);
    t0 = performance.now();
    const ha1 = await master(port);
    await waitFor(() => statuses(ha1).every((s) => s === 'established'), 'established under the flood', 20000);
    const underFloodMs = performance.now() - t0;
    const f = flow();
    ha1.engine.open('main', f);
    await waitFor(() => (ha2.engine as MemoryEngine).get('main', f) !== undefined, 'a conntrack synced under the flood');
    const refusedWhileConnecting = listenerOf(ha2).stats.refusedNonPeer;
    await exited;
    const opened = messages[1]?.['opened'] ?? 0;
    const l = listenerOf(ha2);
    console.log(`      peer established in ${baselineMs.toFixed(0)} ms alone, ${underFloodMs.toFixed(0)} ms under a flood of ${opened} non-peer connections from another process (${l.stats.refusedNonPeer} refused at accept, ${refusedWhileConnecting} by the time the peer was up; ${warns.listener.length} warning lines; load ${loadavg()[0]?.toFixed(1)})`);
    expect(l.stats.refusedNonPeer).to.be.at.least(600);
    expect(opened).to.be.at.least(600);
    // Before: 16-21 s kept out. Now a peer connects about as fast as without the flood; the bound
    // leaves room for a loaded 2-core machine.
    expect(underFloodMs).to.be.lessThan(Math.max(3000, 10 * baselineMs));
    expect(warns.listener.filter((w) => /no configured peer/.test(w.msg)).length).to.be.at.most(2);
  });

  it('a peer address holding all its slots does not take those of another peer', async () => {
    const { freePort } = await import('./two-nodes.js');
    const port = await freePort();
    // ha2 has two peers: ha1 (127.0.0.1) and peer2 (127.0.0.4), which misbehaves: it opens 600
    // connections and never says hello (they stay until the handshake timeout).
    const ha2 = await backup(port, [{ name: 'peer2', address: '127.0.0.4' }]);
    warns.start();
    const held = Array.from({ length: 600 }, () => probe(port, '127.0.0.4', undefined, 4000));
    await waitFor(() => listenerOf(ha2).stats.refusedOverLimit >= 600 - 64, 'peer2 over its slots', 20000);
    const t0 = performance.now();
    const ha1 = await master(port);
    await waitFor(() => statuses(ha1).every((s) => s === 'established'), 'ha1 established while peer2 holds its slots', 20000);
    const ms = performance.now() - t0;
    expect(ms).to.be.lessThan(3000);
    expect(listenerOf(ha2).stats.refusedOverLimit).to.equal(600 - 64);
    await Promise.all(held);
    expect(warns.listener.filter((w) => /holds all its connection slots/.test(w.msg)).length).to.equal(1);
  });

  it('refuses a peer speaking protocol version 1 with a clear reason', async () => {
    const { freePort } = await import('./two-nodes.js');
    const port = await freePort();
    await backup(port);
    warns.start();
    const v1Hello = Buffer.from([0x54, 0x53, 1, 1, 0, 0, 0, 0]);
    const r = await probe(port, '127.0.0.1', v1Hello, 5000);
    expect(r.closed).to.equal(true);
    expect(warns.listener.some((w) => /unsupported protocol version 1 \(this node speaks version 4/.test(String(w.fields['reason'])))).to.equal(true);
  });
});

describe('sync security: shared-secret strength', function () {
  it('refuses missing, short and trivially repetitive secrets and accepts openssl rand -base64 32', () => {
    for (const weak of ['a'.repeat(16), ' '.repeat(16), 'short-secret', 'abababababababab', 'abc123abc123abc123', 'abcdefghijklmnop', 'aaaaaaaabbbbbbbbcc']) {
      expect(sharedSecretWeakness(weak), JSON.stringify(weak)).to.be.a('string');
    }
    let generated = randomBytes(32).toString('base64');
    try {
      generated = execFileSync('openssl', ['rand', '-base64', '32'], { encoding: 'utf8' }).trim();
    } catch {
      // no openssl binary: the same 32 random bytes in base64
    }
    for (const ok of [generated, SECRET, 'correct-horse-battery-staple']) expect(sharedSecretWeakness(ok), ok).to.equal(undefined);
    const config = (secret: string | undefined, enabled = true): Json => ({
      'tandem-vrf:vrf': [{ name: 'main', 'tandem-ha-fp-conntrack:ha-fp-conntrack': { enabled, ...(secret === undefined ? {} : { 'shared-secret': secret }) } }],
    });
    expect(checkSharedSecrets(config(undefined))).to.deep.equal([{
      message: 'shared-secret is mandatory when ha-fp-conntrack is enabled (generate one with: openssl rand -base64 32)',
      path: "/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack",
      appTag: 'shared-secret-missing',
    }]);
    expect(checkSharedSecrets(config(undefined, false))).to.deep.equal([]);
    const [weak] = checkSharedSecrets(config('abababababababab'));
    expect(weak?.appTag).to.equal('shared-secret-too-weak');
    expect(weak?.path).to.equal("/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret");
    expect(weak?.message).to.match(/a 2-character pattern repeated/);
    expect(checkSharedSecrets(config(generated))).to.deep.equal([]);
  });
});

