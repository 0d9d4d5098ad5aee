// Frame decoding for pcap replay: link types, VLAN tags, IPv6, fragments, ICMP echo.
import { expect } from 'chai';
import { decodeFrame, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW } from '../../fastpath/traffic/packet-decoder.js';
import { ethernetFrame } from '../../fastpath/traffic/pcap-writer.js';

function ipv6Tcp(): Buffer {
  const ip = Buffer.alloc(40 + 20);
  ip.writeUInt8(0x60, 0);
  ip.writeUInt16BE(20, 4);
  ip.writeUInt8(6, 6);
  ip.writeUInt8(64, 7);
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(ip, 8);
  Buffer.from('20010db8000100000000000000000000', 'hex').copy(ip, 24);
  ip.writeUInt16BE(40000, 40);
  ip.writeUInt16BE(443, 42);
  ip.writeUInt8(0x02, 53);
  return ip;
}

describe('fastpath: packet decoder', () => {
  it('decodes IPv4 over Ethernet, with a VLAN tag, and over Linux cooked capture', () => {
    const frame = ethernetFrame({ timeMs: 0, proto: 'udp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 53 });
    const expected = { proto: 'udp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 53, flags: 0 };
    expect(decodeFrame(frame, LINKTYPE_ETHERNET)).to.deep.equal(expected);
    const vlan = Buffer.concat([frame.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 0x64]), frame.subarray(12)]);
    expect(decodeFrame(vlan, LINKTYPE_ETHERNET)).to.deep.equal(expected);
    const sll = Buffer.concat([Buffer.alloc(14), Buffer.from([0x08, 0x00]), frame.subarray(14)]);
    expect(decodeFrame(sll, LINKTYPE_LINUX_SLL)).to.deep.equal(expected);
  });

  it('decodes IPv6 TCP with compressed addresses and ICMP echo directions', () => {
    expect(decodeFrame(ipv6Tcp(), LINKTYPE_RAW)).to.deep.equal({ proto: 'tcp', src: '2001:db8::1', dst: '2001:db8:1::', sport: 40000, dport: 443, flags: 2 });
    const req = ethernetFrame({ timeMs: 0, proto: 'icmp', src: '10.0.0.1', dst: '10.0.0.2', sport: 77, dport: 0, echoRequest: true });
    const rep = ethernetFrame({ timeMs: 0, proto: 'icmp', src: '10.0.0.2', dst: '10.0.0.1', sport: 77, dport: 0, echoRequest: false });
    expect(decodeFrame(req, LINKTYPE_ETHERNET)).to.include({ proto: 'icmp', sport: 77, echoRequest: true });
    expect(decodeFrame(rep, LINKTYPE_ETHERNET)).to.include({ proto: 'icmp', sport: 77, echoRequest: false });
  });

  it('skips what it cannot track: non-first fragments, truncated headers, other link types and ICMP types', () => {
    const frame = ethernetFrame({ timeMs: 0, proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, tcpFlags: 2 });
    const frag = Buffer.from(frame);
    frag.writeUInt16BE(0x0010, 14 + 6); // fragment offset 16
    expect(decodeFrame(frag, LINKTYPE_ETHERNET)).to.equal(undefined);
    expect(decodeFrame(frame.subarray(0, 40), LINKTYPE_ETHERNET)).to.equal(undefined);
    expect(decodeFrame(frame, 9999)).to.equal(undefined);
    const unreachable = ethernetFrame({ timeMs: 0, proto: 'icmp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 0 });
    unreachable.writeUInt8(3, 34);
    expect(decodeFrame(unreachable, LINKTYPE_ETHERNET)).to.equal(undefined);
  });
});
