// The event reader's decoder (fastpath/linux/conntrack-event-decoder.ts) against the general one
// (splitMessages + eventKind + decodeConntrack of ctnetlink-codec.ts): the same events, conntracks
// and errors for every shape of message: the create messages the engine writes (the layout of
// kernel events), hand-built ones (IPv6, ICMP/ICMPv6, ids, duplicate, short, truncated and missing
// attributes, protocols the engine skips, other message types), and 3,000 of them with random
// bytes changed. No kernel needed.
import { expect } from 'chai';
import {
  IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, MessageBuilder, NLM_F_CREATE, NLM_F_EXCL, UnsupportedProtocolError, decodeConntrack,
  eventKind, splitMessages, writeCreate, type ConntrackWrite,
} from '../../fastpath/linux/ctnetlink-codec.js';
import { PackedEventWriter, forEachEvent, forEachPackedEvent } from '../../fastpath/linux/conntrack-event-decoder.js';

type Outcome = { kind: string; conntrack: unknown; portId: number } | { error: string } | { datagram: 'malformed' };

const errorOf = (err: unknown): { error: string } => ({ error: err instanceof UnsupportedProtocolError ? `unsupported ${err.protocol}` : 'error' });

function general(d: Buffer): Outcome[] {
  const out: Outcome[] = [];
  try {
    for (const m of splitMessages(d)) {
      const kind = eventKind(m);
      if (!kind) continue;
      try {
        out.push({ kind, conntrack: decodeConntrack(m), portId: m.portId });
      } catch (err) {
        out.push(errorOf(err));
      }
    }
  } catch {
    return [{ datagram: 'malformed' }];
  }
  return out;
}

function fast(d: Buffer): Outcome[] {
  const out: Outcome[] = [];
  try {
    forEachEvent(d, (e) => out.push({ kind: e.kind, conntrack: e.conntrack, portId: e.portId }), (err) => out.push(errorOf(err)));
  } catch {
    return [{ datagram: 'malformed' }];
  }
  return out;
}

/** Through the event thread's path: packed into records (its side), unpacked (the engine's side). */
function packed(d: Buffer, capacity = 4096): Outcome[] {
  const out: Outcome[] = [];
  const writer = new PackedEventWriter(capacity);
  try {
    writer.add(d);
  } catch {
    return [{ datagram: 'malformed' }];
  }
  const batch = writer.take();
  // As the thread posts it: the buffers are moved to the other side (a copy here).
  forEachPackedEvent(structuredClone(batch), (e) => out.push({ kind: e.kind, conntrack: e.conntrack, portId: e.portId }), (err) => out.push(errorOf(err)));
  return out;
}

// ---- hand-built messages ----
const NESTED = 0x8000;
function nla(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}
const nest = (type: number, ...children: Buffer[]): Buffer => nla(type | NESTED, Buffer.concat(children));
const u8 = (v: number): Buffer => Buffer.from([v]);
const u16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
const v4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));
const v6 = (last: number): Buffer => { const b = Buffer.alloc(16); b.writeUInt16BE(0x2001, 0); b.writeUInt16BE(0xdb8, 2); b.writeUInt16BE(last, 14); return b; };

function tuple(ip: Buffer[], proto: Buffer[]): Buffer {
  return nest(1, ...[ip.length ? nest(1, ...ip) : Buffer.alloc(0), proto.length ? nest(2, ...proto) : Buffer.alloc(0)]);
}
const tcpPorts = (s: number, d: number): Buffer[] => [nla(1, u8(6)), nla(2, u16(s)), nla(3, u16(d))];
const ipv4 = (s: string, d: string): Buffer[] => [nla(1, v4(s)), nla(2, v4(d))];
const protoinfo = (state: number): Buffer => nest(4, nest(1, nla(1, u8(state)), nla(2, u8(7))));

function message(type: number, flags: number, portId: number, attrs: Buffer[]): Buffer {
  const payload = Buffer.concat([Buffer.from([2, 0, 0, 0]), ...attrs]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(77, 8);
  h.writeUInt32LE(portId, 12);
  return Buffer.concat([h, payload]);
}
const NEW = NLM_F_CREATE | NLM_F_EXCL;
const orig = tuple(ipv4('10.1.2.3', '198.51.100.7'), tcpPorts(40000, 443));
const reply = (n = 1): Buffer => replyOf(tuple(ipv4('198.51.100.7', `192.0.2.${n}`), tcpPorts(443, 1024 + n)));
const replyOf = (t: Buffer): Buffer => { const r = Buffer.from(t); r.writeUInt16LE(r.readUInt16LE(2) & ~1 | 2, 2); return r; };

const handBuilt: Record<string, Buffer> = {
  'tcp new, every field': message(IPCTNL_MSG_CT_NEW, NEW, 0, [orig, reply(), nla(3, u32(0x0e)), protoinfo(3), nla(7, u32(432000)), nla(8, u32(0x80001c20)), nla(12, u32(1234))]),
  'udp update, reply seen': message(IPCTNL_MSG_CT_NEW, 0, 4242, [
    tuple(ipv4('10.0.0.1', '10.0.0.2'), [nla(1, u8(17)), nla(2, u16(53)), nla(3, u16(5353))]),
    replyOf(tuple(ipv4('10.0.0.2', '10.0.0.1'), [nla(1, u8(17)), nla(2, u16(5353)), nla(3, u16(53))])), nla(3, u32(2)), nla(7, u32(30))]),
  'icmp destroy': message(IPCTNL_MSG_CT_DELETE, 0, 0, [tuple(ipv4('10.0.0.1', '10.0.0.2'), [nla(1, u8(1)), nla(4, u16(999)), nla(5, u8(8)), nla(6, u8(0))]),
    replyOf(tuple(ipv4('10.0.0.2', '10.0.0.1'), [nla(1, u8(1)), nla(4, u16(999)), nla(5, u8(0)), nla(6, u8(0))])), nla(12, u32(9))]),
  'ipv6 tcp, no protoinfo': message(IPCTNL_MSG_CT_NEW, NEW, 0, [tuple([nla(3, v6(1)), nla(4, v6(2))], tcpPorts(1, 2)), replyOf(tuple([nla(3, v6(2)), nla(4, v6(1))], tcpPorts(2, 1)))]),
  'icmpv6': message(IPCTNL_MSG_CT_NEW, NEW, 0, [tuple([nla(3, v6(1)), nla(4, v6(2))], [nla(1, u8(58)), nla(7, u16(31))]), replyOf(tuple([nla(3, v6(2)), nla(4, v6(1))], [nla(1, u8(58)), nla(7, u16(31))]))]),
  'gre (skipped by readers)': message(IPCTNL_MSG_CT_NEW, NEW, 0, [tuple(ipv4('10.0.0.1', '10.0.0.2'), [nla(1, u8(47))]), reply()]),
  'no reply tuple': message(IPCTNL_MSG_CT_NEW, NEW, 0, [orig, nla(3, u32(8))]),
  'no addresses': message(IPCTNL_MSG_CT_NEW, NEW, 0, [tuple([], tcpPorts(1, 2)), reply()]),
  'no protocol nest': message(IPCTNL_MSG_CT_NEW, NEW, 0, [tuple(ipv4('10.0.0.1', '10.0.0.2'), []), reply()]),
  'duplicate mark: the last wins': message(IPCTNL_MSG_CT_NEW, 0, 0, [orig, reply(), nla(8, u32(1)), nla(8, u32(2)), protoinfo(4)]),
  'short timeout': message(IPCTNL_MSG_CT_NEW, 0, 0, [orig, reply(), nla(7, u16(5))]),
  'both families in a tuple: v4 wins': message(IPCTNL_MSG_CT_NEW, 0, 0, [tuple([nla(3, v6(1)), nla(1, v4('10.9.9.9')), nla(4, v6(2)), nla(2, v4('10.8.8.8'))], tcpPorts(5, 6)), reply()]),
  'syn-sent2 and an unknown tcp state': Buffer.concat([
    message(IPCTNL_MSG_CT_NEW, 0, 0, [orig, reply(), protoinfo(9)]), message(IPCTNL_MSG_CT_NEW, 0, 0, [orig, reply(2), protoinfo(12)])]),
  'other message types are skipped': Buffer.concat([message(3, 0, 0, []), message(IPCTNL_MSG_CT_NEW, NEW, 0, [orig, reply()]), message((1 << 8) | 1, 0, 0, [orig, reply()])]),
  'truncated attribute ends its nest': (() => {
    const m = message(IPCTNL_MSG_CT_NEW, NEW, 0, [orig, reply(), nla(3, u32(2)), nla(7, u32(100))]);
    m.writeUInt16LE(200, m.length - 8); // the timeout's length runs past the message
    return m;
  })(),
  'malformed datagram': message(IPCTNL_MSG_CT_NEW, NEW, 0, [orig, reply()]).subarray(0, 30),
};

function createMessages(): Buffer[] {
  const writes: ConntrackWrite[] = [];
  for (let i = 0; i < 40; i++) {
    const proto = (['tcp', 'udp', 'icmp'] as const)[i % 3] as 'tcp' | 'udp' | 'icmp';
    const six = i % 5 === 0;
    const a = (n: number): string => (six ? `2001:db8::${n.toString(16)}` : `10.${i}.0.${n}`);
    writes.push({
      orig: { proto, src: a(1), dst: a(2), sport: proto === 'icmp' ? 100 + i : 1024 + i, dport: proto === 'icmp' ? 0 : 443 },
      reply: { proto, src: a(2), dst: a(3 + (i % 4)), sport: proto === 'icmp' ? 100 + i : 443, dport: proto === 'icmp' ? 0 : 2000 + i },
      state: (['established', 'syn-sent', 'fin-wait', 'time-wait'] as const)[i % 4] as 'established',
      timeout: 60 * i,
      ...(i % 2 ? { mark: 0x80000000 + i } : {}),
    });
  }
  return writes.map((w, i) => {
    const b = new MessageBuilder();
    writeCreate(b, w, i + 1, NEW);
    return b.finish();
  });
}

describe('conntrack event decoder (the event reader\'s hot path)', () => {
  it('decodes the messages the engine writes exactly as the general decoder', () => {
    const messages = createMessages();
    for (const m of messages) {
      const g = general(m);
      expect(g).to.have.length(1);
      expect(g[0]).to.have.property('conntrack');
      expect(fast(m)).to.deep.equal(g);
      expect(packed(m)).to.deep.equal(g);
    }
    // Several messages in one datagram (as the kernel may batch them), in order.
    const all = Buffer.concat(messages);
    expect(fast(all)).to.deep.equal(general(all));
    expect(fast(all)).to.have.length(messages.length);
    // Packed: IPv4 as records, IPv6 raw in their place; a batch smaller than the datagram grows.
    expect(packed(all, 3)).to.deep.equal(general(all));
    // Only the IPv6 ones travel raw (every fifth message): the others are records, not a fallback.
    const writer = new PackedEventWriter();
    writer.add(all);
    const batch = writer.take();
    const rawBytes = messages.filter((_, i) => i % 5 === 0).reduce((n, m) => n + m.length, 0);
    expect(batch.count).to.equal(messages.length);
    expect(batch.raw?.byteLength).to.equal(rawBytes);
  });

  for (const [name, d] of Object.entries(handBuilt)) {
    it(`hand-built: ${name}`, () => {
      const g = general(d);
      expect(fast(d)).to.deep.equal(g);
      expect(packed(d)).to.deep.equal(g);
    });
  }

  it('the hand-built cases cover events, errors, skipped protocols and malformed datagrams', () => {
    const all = Object.values(handBuilt).flatMap(general);
    expect(all.some((o) => 'conntrack' in o && (o.conntrack as { id: number }).id === 1234)).to.equal(true);
    expect(all.filter((o) => 'error' in o && o.error === 'unsupported 47')).to.have.length(1);
    expect(all.filter((o) => 'error' in o && o.error === 'error')).to.have.length(3); // no reply tuple, no addresses, short timeout
    expect(all.filter((o) => 'error' in o && o.error === 'unsupported -1')).to.have.length(1); // no protocol nest
    expect(all.filter((o) => 'datagram' in o)).to.have.length(1);
    expect(all.filter((o) => 'kind' in o && o.kind === 'destroy')).to.have.length(1);
  });

  it('agrees with the general decoder on 3,000 messages with random bytes changed', () => {
    const bases = [...createMessages(), ...Object.values(handBuilt).filter((d) => general(d).length === 1 && !('datagram' in (general(d)[0] as object)))];
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const kinds = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const d = Buffer.from(bases[i % bases.length] as Buffer);
      for (let k = 1 + rand(3); k > 0; k--) d[20 + rand(d.length - 20)] = rand(256);
      const g = general(d);
      expect(fast(d), `mutated message ${i}: ${d.toString('hex')}`).to.deep.equal(g);
      expect(packed(d), `mutated message ${i} (packed): ${d.toString('hex')}`).to.deep.equal(g);
      for (const o of g) kinds.add('conntrack' in o ? 'event' : 'error' in o ? o.error.split(' ')[0] as string : 'malformed');
    }
    // The mutations reached both decoded events and errors.
    expect([...kinds]).to.include.members(['event', 'error']);
  });
});
