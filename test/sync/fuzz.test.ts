// Bad input (issue item 9): random bytes, mutated frames, wrong versions, oversized and truncated
// frames, unknown VRFs and wrong secrets. The decoder only ever fails with SyncProtocolError; on
// the network every such connection is closed with a logged reason and the backup's table does
// not change. Every loop is bounded in count and time.
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { decodeDeletes, decodeRecords, encodeRecords, recordSize, type SyncRecord } from '../../sync/conntrack-codec.js';
import { AeadFrameCipher, FrameDecoder, FrameEncoder } from '../../sync/frame-codec.js';
import { decodeHello, encodeHello, newNonce } from '../../sync/handshake.js';
import { encodeHeader, FrameType, MAX_PAYLOAD_BYTES, SyncProtocolError } from '../../sync/protocol.js';
import type { ConntrackEntry } from '../../fastpath/engine.js';
import { ManualClock } from '../../fastpath/clock.js';
import { SoftEngine } from '../../fastpath/soft/soft-engine.js';
import { flow, freePort, nodeConfig, Pair, SECRET, startNode, type SyncNode, waitFor } from './two-nodes.js';
import { RawSyncClient } from './raw-sync-client.js';
import { seededRandom } from '../../fastpath/traffic/seeded-random.js';

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

function mutate(r: () => number, src: Buffer): Buffer {
  const b = Buffer.from(src);
  const flips = 1 + Math.floor(r() * 3);
  for (let i = 0; i < flips; i++) {
    const at = Math.floor(r() * b.length);
    b[at] = (b[at] as number) ^ (1 + Math.floor(r() * 255));
  }
  return b;
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

describe('sync bad input: decoder fuzz', function () {
  it('fails only with SyncProtocolError on 10,000 random and mutated inputs', () => {
    const r = seededRandom(7);
    const valid = [
      Buffer.concat([encodeHeader(FrameType.Hello, 0)]),
      Buffer.concat([encodeHeader(FrameType.Hello, 80), encodeHello({ vrf: 'main', worker: 0, workers: 1, nonce: newNonce() }).subarray(0, 80)]),
    ];
    const payload = ctPayload(20);
    let protocolErrors = 0;
    let frames = 0;
    for (let i = 0; i < 10_000; i++) {
      const kind = i % 4;
      const input = kind === 0 ? randomBytes(r, 1 + Math.floor(r() * 200))
        : kind === 1 ? mutate(r, valid[i % valid.length] as Buffer)
          : kind === 2 ? mutate(r, payload) : randomBytes(r, Math.floor(r() * 60));
      try {
        if (kind === 2) {
          decodeRecords(input);
        } else if (kind === 3) {
          if (r() < 0.5) decodeDeletes(input);
          else decodeHello(input);
        } else {
          const d = new FrameDecoder();
          // Random split points: the state machine must not care how TCP cuts the stream.
          let off = 0;
          for (let k = 0; k < 8 && off < input.length; k++) {
            const n = 1 + Math.floor(r() * (input.length - off));
            frames += d.push(input.subarray(off, off + n)).length;
            off += n;
          }
        }
      } catch (err) {
        if (!(err instanceof SyncProtocolError)) throw new Error(`input ${i} (kind ${kind}) threw ${String(err)}`, { cause: err });
        protocolErrors++;
      }
    }
    expect(protocolErrors).to.be.greaterThan(5000);
    expect(frames).to.be.lessThan(10_000);
  });

  it('rejects bad magic, version, type and oversized length at the header', () => {
    const h = encodeHeader(FrameType.Hello, 10);
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.from([0, 0, ...h.subarray(2)]), /bad magic/],
      [Buffer.from([...h.subarray(0, 2), 9, ...h.subarray(3)]), /unsupported protocol version 9/],
      [Buffer.from([...h.subarray(0, 3), 99, ...h.subarray(4)]), /unknown frame type 99/],
      [Buffer.from([...h.subarray(0, 4), 0xff, 0xff, 0xff, 0xff]), /oversized frame/],
      [encodeHeader(FrameType.CtNew, 0), /before authentication/],
    ];
    for (const [buf, re] of cases) expect(() => new FrameDecoder().push(buf)).to.throw(SyncProtocolError, re);
    expect(() => encodeHeader(FrameType.CtNew, MAX_PAYLOAD_BYTES + 1)).to.throw(SyncProtocolError);
  });

  it('rejects a frame whose tag does not match, and a replayed frame', () => {
    const key = Buffer.alloc(32, 1);
    const enc = new FrameEncoder();
    enc.setCipher(new AeadFrameCipher(key));
    const dec = new FrameDecoder();
    dec.setCipher(new AeadFrameCipher(key));
    const frame = Buffer.concat(enc.encode(FrameType.CtNew, ctPayload(3)));
    expect(dec.push(frame)).to.have.length(1);
    expect(() => dec.push(frame)).to.throw(SyncProtocolError, /failed authentication/); // same bytes, next sequence number
  });
});

/** Open a raw connection from 127.0.0.1 (ha2's configured peer) to ha2's listener. */
function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.2', port, localAddress: '127.0.0.1' }, () => resolve(s));
    s.on('error', reject);
  });
}

/** Resolves when the server has closed the socket (bounded). */
function closed(s: Socket, what = '', ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) {
      resolve();
      return;
    }
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`server did not close the connection (${what})`));
    }, ms);
    s.on('error', () => undefined);
    s.resume(); // read (and drop) what the server says, so its close is seen
    s.on('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** A client that completes the real handshake (or is refused) and returns its socket and sealing encoder. */
async function authenticated(port: number, secret: string): Promise<{ socket: Socket; encoder: FrameEncoder }> {
  const c = await RawSyncClient.connect('127.0.0.2', port, '127.0.0.1');
  await c.authenticate(secret).catch(() => undefined); // a wrong secret: the listener refuses and closes
  c.socket.removeAllListeners('data');
  return { socket: c.socket, encoder: c.encoder };
}

describe('sync bad input: a peer sending garbage is cut off and the table does not change', function () {
  this.timeout(60000);
  let p: Pair;
  before(async () => {
    p = await new Pair().start({ workers: 1 });
  });
  after(async () => p?.close());

  it('closes every bad connection with a reason; nothing reaches the table', async () => {
    const synced = Array.from({ length: 20 }, () => flow());
    for (const f of synced) p.ha1.engine.open('main', f);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === 20, 'baseline synced');
    const receiver = p.ha2.service.vrfs.get('main');
    const baseline = { count: p.ha2.engine.counters('main').conntracks, receive: receiver?.receive, errors: receiver?.receiveError ?? 0 };
    const r = seededRandom(42);
    const valid = Buffer.concat([encodeHeader(FrameType.Hello, 0)]);
    const hello = encodeHello({ vrf: 'main', worker: 0, workers: 1, nonce: newNonce() });
    let sent = 0;
    // 1. Unauthenticated: garbage, mutated hellos, wrong version, oversized, truncated, unknown VRF.
    for (let i = 0; i < 300; i++) {
      const s = await rawConnect(p.port);
      const k = i % 6;
      const c = closed(s, `unauthenticated case ${k}`);
      const data = k === 0 ? randomBytes(r, 1 + Math.floor(r() * 300))
        : k === 1 ? mutate(r, Buffer.concat([encodeHeader(FrameType.Hello, hello.length), hello]))
          : k === 2 ? Buffer.concat([Buffer.from([0x54, 0x53, 2, 1, 0, 0, 0, 0])])
            : k === 3 ? Buffer.from([0x54, 0x53, 1, 7, 0x7f, 0xff, 0xff, 0xff])
              : k === 4 ? Buffer.concat([encodeHeader(FrameType.CtNew, 40), randomBytes(r, 20)])
                : Buffer.concat([encodeHeader(FrameType.Hello, 0), valid]);
      s.write(data);
      s.end(); // whatever was cut short stays incomplete: the peer gives up half-way
      await c;
      sent++;
    }
    // 2. A hello with the wrong secret is refused after the proof.
    for (let i = 0; i < 20; i++) {
      const { socket } = await authenticated(p.port, 'not-the-shared-secret!');
      await closed(socket, 'wrong secret');
      sent++;
    }
    // 3. Authenticated, then mutated frames (bit flips in a valid CT_NEW frame with its MAC).
    const payload = ctPayload(10);
    for (let i = 0; i < 400; i++) {
      const { socket, encoder } = await authenticated(p.port, SECRET);
      const c = closed(socket, 'mutated frame');
      const frame = Buffer.concat(encoder.encode(FrameType.CtNew, payload));
      socket.write(mutate(r, frame));
      socket.end();
      await c;
      sent++;
    }
    expect(sent).to.equal(720);
    expect(p.ha2.engine.counters('main').conntracks).to.equal(baseline.count);
    expect(receiver?.receive).to.equal(baseline.receive);
    expect(receiver?.receiveError).to.be.greaterThan(baseline.errors + 400);
    // The real peer is unaffected.
    const after = flow();
    p.ha1.engine.open('main', after);
    await waitFor(() => p.ha2.engine.get('main', after) !== undefined, 'a new conntrack still syncs');
  });

  it('a correct frame from an authenticated client is applied (the fuzz harness itself works)', async () => {
    const before = p.ha2.engine.counters('main').conntracks;
    const { socket, encoder } = await authenticated(p.port, SECRET);
    for (const part of encoder.encode(FrameType.CtNew, ctPayload(5))) socket.write(part);
    await waitFor(() => p.ha2.engine.counters('main').conntracks === before + 5, 'five injected conntracks');
    socket.destroy();
  });
});

describe('sync bad input on the packed receive path: an authenticated peer sends malformed records', function () {
  this.timeout(60000);
  let ha2: SyncNode<SoftEngine> | undefined;
  after(async () => {
    await ha2?.service.close();
    await ha2?.engine.close();
  });

  it('cuts every such connection, applies nothing of those frames, and still applies a good one', async () => {
    // A soft-engine backup: plain IPv4 payloads take its packed path (upsertIPv4Records), the
    // others the object path; both must refuse whatever the reference decoder refuses.
    const clock = new ManualClock(1_000_000);
    const port = await freePort();
    const config = nodeConfig({ source: '127.0.0.2', address: '127.0.0.1', states: { g1: 'backup' }, workers: 2, vrfs: [{ name: 'main', port }] });
    ha2 = await startNode('ha2', await SoftEngine.create({ clock, workers: 2 }), clock, config);
    const node = ha2;
    const receiver = node.service.vrfs.get('main');
    let good: Awaited<ReturnType<typeof authenticated>> | undefined;
    for (let i = 0; i < 100 && !good; i++) {
      good = await authenticated(port, SECRET).catch(async () => {
        await new Promise((res) => setTimeout(res, 50)); // ha2 not listening yet
        return undefined;
      });
    }
    if (!good) throw new Error('ha2 never accepted an authenticated connection');
    for (const part of good.encoder.encode(FrameType.CtNew, ctPayload(5))) good.socket.write(part);
    await waitFor(() => node.engine.counters('main').conntracks === 5, 'five good conntracks');
    good.socket.destroy();
    const baseline = { receive: receiver?.receive, errors: receiver?.receiveError ?? 0 };
    const r = seededRandom(99);
    const payload = ctPayload(10);
    let sent = 0;
    for (let i = 0; i < 2000 && sent < 60; i++) {
      const bad = mutate(r, payload);
      try {
        decodeRecords(bad);
        continue; // still a valid payload (e.g. a port changed): not bad input
      } catch (err) {
        if (!(err instanceof SyncProtocolError)) throw err;
      }
      const { socket, encoder } = await authenticated(port, SECRET);
      const c = closed(socket, 'malformed records');
      for (const part of encoder.encode(i % 2 === 0 ? FrameType.CtNew : FrameType.CtUpdate, bad)) socket.write(part);
      await c;
      sent++;
    }
    expect(sent).to.equal(60);
    expect(node.engine.counters('main').conntracks).to.equal(5);
    expect(receiver?.receive).to.equal(baseline.receive);
    expect(receiver?.receiveError).to.be.at.least(baseline.errors + 60);
  });
});
