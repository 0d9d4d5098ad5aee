// RFC 6242 framing state machine: both framings, messages split at every byte, oversized messages
// skipped, broken framing detected.
import { expect } from 'chai';
import { FrameDecoder, FramingError, frameMessage, framePieces, ONE_PIECE_MAX_BYTES, type FrameEvent } from '../../agent/netconf/framing.js';

const hello = '<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"/>';

function feedBytewise(d: FrameDecoder, data: Buffer): FrameEvent[] {
  const out: FrameEvent[] = [];
  for (let i = 0; i < data.length; i += 1) out.push(...d.push(data.subarray(i, i + 1)));
  return out;
}

describe('NETCONF framing', () => {
  it('reads an end-of-message hello, then holds the rest until the framing is chosen', () => {
    const d = new FrameDecoder(1 << 20);
    const rpc = '<rpc message-id="1"/>';
    const evs = d.push(Buffer.concat([frameMessage(hello, 'eom'), frameMessage(rpc, 'chunked')]));
    expect(evs).to.deep.equal([{ kind: 'message', text: hello }]);
    expect(d.setMode('chunked')).to.deep.equal([{ kind: 'message', text: rpc }]);
  });

  it('accepts a chunk-framed hello', () => {
    const d = new FrameDecoder(1 << 20);
    expect(d.push(frameMessage(hello, 'chunked'))).to.deep.equal([{ kind: 'message', text: hello }]);
  });

  it('reassembles messages split at every byte, in both framings, with multi-byte UTF-8', () => {
    const text = '<rpc message-id="é€𝄞"><get/></rpc>';
    for (const mode of ['eom', 'chunked'] as const) {
      const d = new FrameDecoder(1 << 20);
      d.push(frameMessage(hello, 'eom'));
      d.setMode(mode);
      const evs = feedBytewise(d, Buffer.concat([frameMessage(text, mode), frameMessage(text, mode)]));
      expect(evs, mode).to.deep.equal([{ kind: 'message', text }, { kind: 'message', text }]);
    }
  });

  it('joins several chunks of one message (RFC 6242 section 4.2 example)', () => {
    const d = new FrameDecoder(1 << 20);
    d.push(frameMessage(hello, 'eom'));
    d.setMode('chunked');
    const raw = '\n#4\n<rpc\n#18\n message-id="102"\n\n#79\n     xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">\n  <close-session/>\n</rpc>\n##\n';
    const evs = d.push(Buffer.from(raw));
    expect(evs).to.have.length(1);
    expect(evs[0]!.kind).to.equal('message');
    expect((evs[0] as { text: string }).text).to.match(/^<rpc message-id="102"\n\s+xmlns=.*<close-session\/>\n<\/rpc>$/s);
  });

  for (const [name, raw] of [
    ['a non-digit chunk size', '\n#x\n'],
    ['a chunk size starting with 0', '\n#01\n'],
    ['a chunk size over 4294967295', '\n#4294967296\n'],
    ['a missing LF before #', '#4\nabcd'],
    ['end-of-chunks with no chunk', '\n##\n'],
    ['junk after a chunk', '\n#1\naXX'],
  ] as const) {
    it(`throws a FramingError on ${name}`, () => {
      const d = new FrameDecoder(1 << 20);
      d.push(frameMessage(hello, 'eom'));
      d.setMode('chunked');
      expect(() => d.push(Buffer.from(raw))).to.throw(FramingError);
    });
  }

  it('skips an oversized message without buffering it, keeping its head, then reads the next one', () => {
    for (const mode of ['eom', 'chunked'] as const) {
      const d = new FrameDecoder(1000);
      d.push(frameMessage(hello, 'eom'));
      d.setMode(mode);
      const big = `<rpc message-id="big">${'x'.repeat(10_000)}</rpc>`;
      const evs = [...d.push(frameMessage(big, mode).subarray(0, 5000)), ...d.push(frameMessage(big, mode).subarray(5000)), ...d.push(frameMessage('<ok/>', mode))];
      expect(evs, mode).to.have.length(2);
      expect(evs[0]!.kind).to.equal('oversized');
      expect((evs[0] as { head: string }).head).to.match(/^<rpc message-id="big">x+$/);
      expect((evs[0] as { size: number }).size).to.equal(Buffer.byteLength(big));
      expect(evs[1]).to.deep.equal({ kind: 'message', text: '<ok/>' });
    }
  });

  it('frames chunked output with the byte length, not the character count', () => {
    expect(frameMessage('é', 'chunked').toString()).to.equal('\n#2\né\n##\n');
    expect(frameMessage('<a/>', 'eom').toString()).to.equal('<a/>]]>]]>');
    for (const mode of ['eom', 'chunked'] as const) {
      expect(Buffer.concat(framePieces('<é/>', mode)).equals(frameMessage('<é/>', mode)), mode).to.equal(true);
    }
  });

  it('frames a small message into one piece (one SSH packet) and a large one without copying its body', () => {
    for (const mode of ['eom', 'chunked'] as const) {
      const small = framePieces('<rpc-reply message-id="1"><ok/></rpc-reply>', mode);
      expect(small, mode).to.have.length(1);
      const big = `<data>${'é'.repeat(ONE_PIECE_MAX_BYTES)}</data>`;
      const pieces = framePieces(big, mode);
      expect(pieces.length, mode).to.be.greaterThan(1);
      const d = new FrameDecoder(1 << 20);
      d.push(frameMessage(hello, 'eom'));
      d.setMode(mode);
      expect(d.push(Buffer.concat([...small, ...pieces]))).to.deep.equal([
        { kind: 'message', text: '<rpc-reply message-id="1"><ok/></rpc-reply>' }, { kind: 'message', text: big }]);
    }
  });
});
