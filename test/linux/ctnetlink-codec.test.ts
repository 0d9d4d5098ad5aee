// The ctnetlink wire format without the kernel (no root needed): addresses, message layout, the
// NAT bindings a create carries, and clear errors for bad input.
import { expect } from 'chai';
import {
  IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, MessageBuilder, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
  encodeCreate, eventKind, splitMessages, writeCreate, writeCreateByAttributes, writeDelete, writeUpdate,
  writeUpdateByAttributes, type ConntrackWrite,
} from '../../fastpath/linux/ctnetlink-codec.js';
import { bytesToIp, ipToBytes } from '../../fastpath/linux/ip-address.js';
import { parseIPv4 } from '../../fastpath/ipv4-tuple-table.js';

const snat: ConntrackWrite = {
  orig: { proto: 'tcp', src: '10.1.0.2', dst: '10.77.0.2', sport: 40000, dport: 7000 },
  reply: { proto: 'tcp', src: '10.77.0.2', dst: '192.0.2.1', sport: 7000, dport: 9000 },
  state: 'established',
  timeout: 300,
  mark: 5,
};

/** Every (type, payload) attribute of a flat attribute area, recursing into nested ones. */
function attributes(buf: Buffer, depth = 0): { depth: number; type: number; payload: Buffer }[] {
  const out: { depth: number; type: number; payload: Buffer }[] = [];
  for (let off = 0; off + 4 <= buf.length;) {
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    const payload = buf.subarray(off + 4, off + len);
    out.push({ depth, type: rawType & 0x3fff, payload });
    if (rawType & 0x8000) out.push(...attributes(payload, depth + 1));
    off += (len + 3) & ~3;
  }
  return out;
}

describe('linux: ctnetlink wire format', () => {
  it('converts IPv4 and IPv6 addresses both ways', () => {
    expect([...ipToBytes('192.0.2.1')]).to.deep.equal([192, 0, 2, 1]);
    expect(bytesToIp(ipToBytes('2001:db8::1'))).to.equal('2001:db8::1');
    expect(bytesToIp(ipToBytes('fd00:0:0:1::'))).to.equal('fd00:0:0:1::');
    expect(bytesToIp(ipToBytes('::ffff:10.0.0.1'))).to.equal('::ffff:a00:1');
    expect(bytesToIp(ipToBytes('1:2:3:4:5:6:7:8'))).to.equal('1:2:3:4:5:6:7:8');
    expect(() => ipToBytes('300.1.1.1')).to.throw(/not an IP address/);
  });

  it('encodes a create with both tuples, the source NAT binding, state, timeout and mark', () => {
    const [msg] = splitMessages(encodeCreate(snat, 42, NLM_F_ACK));
    expect(msg.type).to.equal(IPCTNL_MSG_CT_NEW);
    expect(msg.flags).to.equal(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
    expect(msg.seq).to.equal(42);
    expect(msg.payload[0]).to.equal(2); // AF_INET
    const top = attributes(msg.payload.subarray(4)).filter((a) => a.depth === 0).map((a) => a.type);
    // CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_NAT_SRC, CTA_STATUS, CTA_TIMEOUT, CTA_MARK, CTA_PROTOINFO
    expect(top).to.deep.equal([1, 2, 6, 3, 7, 8, 4]);
    const all = attributes(msg.payload.subarray(4));
    const natSrc = all.find((a) => a.depth === 0 && a.type === 6)!;
    const nat = attributes(natSrc.payload);
    expect([...nat.find((a) => a.type === 1)!.payload]).to.deep.equal([192, 0, 2, 1]); // CTA_NAT_V4_MINIP
    expect(nat.find((a) => a.depth === 1 && a.type === 1)!.payload.readUInt16BE(0)).to.equal(9000); // port min
    expect(all.find((a) => a.depth === 0 && a.type === 7)!.payload.readUInt32BE(0)).to.equal(300);
    expect(all.find((a) => a.depth === 0 && a.type === 8)!.payload.readUInt32BE(0)).to.equal(5);
    // The reply tuple sent is the untranslated one: the kernel derives the NATed one from CTA_NAT_SRC.
    const reply = attributes(all.find((a) => a.depth === 0 && a.type === 2)!.payload);
    const replyIp = attributes(reply.find((a) => a.depth === 0 && a.type === 1)!.payload);
    expect([...replyIp.find((a) => a.type === 2)!.payload]).to.deep.equal([10, 1, 0, 2]);
  });

  it('writes many messages into one datagram', () => {
    const b = new MessageBuilder(64); // grows as needed
    for (let i = 0; i < 300; i++) writeUpdate(b, { ...snat, orig: { ...snat.orig, sport: 1000 + i } }, i + 1, i === 299 ? NLM_F_ACK : 0);
    writeDelete(b, snat.orig, 301, 0);
    const messages = splitMessages(b.finish());
    expect(messages).to.have.length(301);
    expect(messages.map((m) => m.seq)).to.deep.equal(Array.from({ length: 301 }, (_, i) => i + 1));
    expect(messages[299].flags & NLM_F_ACK).to.equal(NLM_F_ACK);
    expect(messages[300].type).to.equal(IPCTNL_MSG_CT_DELETE);
    expect(eventKind(messages[300])).to.equal('destroy');
    expect(eventKind({ ...messages[0], flags: NLM_F_CREATE | NLM_F_EXCL })).to.equal('new');
    expect(eventKind(messages[0])).to.equal('update');
  });

  it('refuses bad input with clear errors', () => {
    expect(() => encodeCreate({ ...snat, orig: { ...snat.orig, src: '10.1.0' } }, 1, 0)).to.throw('not an IP address: "10.1.0"');
    expect(() => encodeCreate({ ...snat, orig: { ...snat.orig, dst: 'fd00::1' } }, 1, 0)).to.throw(/mixed address families/);
    expect(() => encodeCreate({ ...snat, orig: { ...snat.orig, sport: 70000 } }, 1, 0)).to.throw('port out of range: 70000');
    expect(() => encodeCreate({ ...snat, reply: { ...snat.reply, proto: 'udp' } }, 1, 0)).to.throw(/protocols differ/);
    expect(() => encodeCreate({ ...snat, state: 'bogus' as never }, 1, 0)).to.throw(/unknown state "bogus"/);
    expect(() => encodeCreate({ ...snat, timeout: -1 }, 1, 0)).to.throw(/bad timeout -1/);
  });

  it('encodes IPv4 TCP/UDP writes on the fast path byte for byte as attribute by attribute', () => {
    // SNAT, DNAT, both, none; TCP and UDP; every state; with and without mark; odd timeouts and seqs.
    const variants: ConntrackWrite[] = [];
    const states = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close'] as const;
    let k = 0;
    for (const proto of ['tcp', 'udp'] as const) {
      for (const nat of ['snat', 'dnat', 'both', 'none', 'addr-only'] as const) {
        for (const state of states) {
          k++;
          const orig = { proto, src: `10.${k}.0.2`, dst: '203.0.113.255', sport: (k * 977) % 65536, dport: k % 2 ? 0 : 65535 };
          const reply = { proto, src: orig.dst, dst: orig.src, sport: orig.dport, dport: orig.sport };
          if (nat === 'snat' || nat === 'both') Object.assign(reply, { dst: '192.0.2.1', dport: 1024 + k });
          if (nat === 'dnat' || nat === 'both') Object.assign(reply, { src: '172.16.255.1', sport: 8080 });
          if (nat === 'addr-only') Object.assign(reply, { dst: '0.0.0.0' });
          variants.push({ orig, reply, state, timeout: k % 3 ? 7200.4 : 0, ...(k % 2 ? { mark: 0x80000000 + k } : {}) });
        }
      }
    }
    for (const [i, w] of variants.entries()) {
      const seq = i % 2 ? 0xfffffff0 : i + 1;
      const flags = i % 3 ? NLM_F_ACK : 0;
      const pairs: [typeof writeCreate, typeof writeCreate][] = [[writeCreate, writeCreateByAttributes], [writeUpdate, writeUpdateByAttributes]];
      for (const [fast, reference] of pairs) {
        const a = new MessageBuilder(8); // small: the fast path must grow it too
        const b = new MessageBuilder(8);
        a.u8(1, 7); // after another message's bytes, as in a datagram
        b.u8(1, 7);
        fast(a, w, seq, flags);
        reference(b, w, seq, flags);
        expect(a.finish().toString('hex'), `${fast.name} of variant ${i}`).to.equal(b.finish().toString('hex'));
      }
    }
  });

  it('parses dotted IPv4 addresses and rejects everything else (the one parser: fastpath/ipv4-tuple-table)', () => {
    expect(parseIPv4('0.0.0.0')).to.equal(0);
    expect(parseIPv4('255.255.255.255')).to.equal(0xffffffff);
    expect(parseIPv4('192.0.2.1')).to.equal(0xc0000201);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.', '.1.2.3', '1.2.3.4 ', 'fd00::1', '1.2.3.1234', '01.2.3.4', '1.2.3.00', '1.2.3.256', '0001.2.3.4']) {
      expect(parseIPv4(bad), bad).to.equal(-1);
    }
  });
});
