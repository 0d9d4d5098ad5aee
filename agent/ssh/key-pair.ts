// SSH key pairs that ssh2 itself can read back (host keys, and client keys of tests and benchmarks).
import ssh2 from 'ssh2';

/**
 * ssh2 1.17's generateKeyPairSync writes an ed25519 key whose public part starts with a zero byte
 * as 31 bytes (it trims it like an mpint), and its own parseKey then rejects the file (about 1 key
 * in 250). Such a key is simply drawn again; 20 draws in a row failing would be a different bug.
 */
export function generateParsableKeyPair(type: 'ed25519' | 'ecdsa', opts: { bits?: number } = {}, comment = 'tandem host key'): { private: string; public: string } {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync(type, { ...opts, comment });
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error(`could not generate a parsable ${type} key`);
}
