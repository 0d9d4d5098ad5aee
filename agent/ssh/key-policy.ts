// Which user public keys and signatures the SSH server accepts, as OpenSSH 9 does by default:
// no DSA (ssh-dss, 1024-bit and SHA-1 only), no RSA key below 2048 bits, no RSA signature with
// SHA-1 (the `ssh-rsa` signature algorithm; rsa-sha2-256 and rsa-sha2-512 are fine). Applied when a
// key is added (`tandem user add --key`) and again at every login (users.json may predate the policy).

export const MIN_RSA_BITS = 2048;

const ACCEPTED_TYPES = new Set([
  'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
]);

/** Bits of the modulus of an SSH "ssh-rsa" public key blob; undefined when it is not one. */
export function rsaModulusBits(blob: Buffer): number | undefined {
  let off = 0;
  const str = (): Buffer | undefined => {
    if (off + 4 > blob.length) return undefined;
    const len = blob.readUInt32BE(off);
    if (off + 4 + len > blob.length) return undefined;
    const s = blob.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    return s;
  };
  if (str()?.toString('latin1') !== 'ssh-rsa') return undefined;
  if (!str()) return undefined; // e
  const n = str();
  if (!n) return undefined;
  let i = 0;
  while (i < n.length && n[i] === 0) i += 1; // mpint sign byte / leading zeros
  if (i === n.length) return 0;
  return (n.length - i - 1) * 8 + (32 - Math.clz32(n[i]!));
}

/** Why a user public key (its type name and SSH wire blob) is refused; undefined when it is accepted. */
export function publicKeyProblem(type: string, blob: Buffer): string | undefined {
  if (type === 'ssh-dss') return 'DSA keys (ssh-dss) are refused: use ed25519, ECDSA or RSA of at least 2048 bits';
  if (!ACCEPTED_TYPES.has(type)) return `key type ${type} is not accepted (use ed25519, ECDSA or RSA of at least ${MIN_RSA_BITS} bits)`;
  if (type === 'ssh-rsa') {
    const bits = rsaModulusBits(blob);
    if (bits === undefined) return 'unreadable RSA key';
    if (bits < MIN_RSA_BITS) return `RSA key of ${bits} bits is refused: at least ${MIN_RSA_BITS} bits`;
  }
  return undefined;
}

/**
 * Why a login signature is refused: ssh2 reports an RSA signature's hash as sha256/sha512 for
 * rsa-sha2-256/512, and none for the SHA-1 `ssh-rsa` algorithm.
 */
export function signatureProblem(type: string, hashAlgo: string | undefined): string | undefined {
  if (type === 'ssh-rsa' && hashAlgo !== 'sha256' && hashAlgo !== 'sha512') {
    return 'RSA signatures with SHA-1 (ssh-rsa) are refused: use rsa-sha2-256 or rsa-sha2-512';
  }
  return undefined;
}
