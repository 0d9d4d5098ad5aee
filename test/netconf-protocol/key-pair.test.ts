import { expect } from 'chai';
import ssh2 from 'ssh2';
import { generateParsableKeyPair } from '../../agent/ssh/key-pair.js';

describe('SSH key generation', () => {
  // ssh2 alone fails to read back about 1 ed25519 key in 250 (a public key with a leading zero byte);
  // 3,000 draws make that near-certain to show if the retry were missing.
  it('always yields ed25519 keys that ssh2 parses back (3,000 draws)', () => {
    for (let i = 0; i < 3000; i++) {
      const pair = generateParsableKeyPair('ed25519');
      const parsed = ssh2.utils.parseKey(pair.private);
      expect(parsed, `draw ${i}`).not.to.be.instanceOf(Error);
    }
  });
});
