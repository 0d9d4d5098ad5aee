// SSH host keys of the agent: generated on first start into the state directory (mode 0600) and
// reused afterwards, so clients keep trusting the same host. Ed25519 for modern clients, ECDSA
// P-256 for older libssh2 builds (yangcli); both are cheap to generate.
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';
import { logger } from '../../core/log.js';
import { generateParsableKeyPair } from './key-pair.js';

const log = logger('ssh-host-keys');

const KEYS = [
  { file: 'ssh_host_ed25519_key', type: 'ed25519' as const, opts: {} },
  { file: 'ssh_host_ecdsa_key', type: 'ecdsa' as const, opts: { bits: 256 } },
];

export interface HostKey {
  file: string;
  privateKey: string;
  /** OpenSSH public key line, for known_hosts. */
  publicKey: string;
}

/** Load the host keys from stateDir, generating any that are missing. */
export async function loadOrCreateHostKeys(stateDir: string): Promise<HostKey[]> {
  const keys: HostKey[] = [];
  for (const k of KEYS) {
    const file = path.join(stateDir, k.file);
    let privateKey: string;
    try {
      privateKey = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`host key ${file} cannot be read: ${(err as Error).message}`, { cause: err });
      const pair = generateParsableKeyPair(k.type, k.opts);
      const tmp = `${file}.tmp-${process.pid}`;
      await writeFile(tmp, pair.private, { mode: 0o600 });
      await writeFile(`${file}.pub`, `${pair.public}\n`, { mode: 0o644 });
      await rename(tmp, file);
      privateKey = pair.private;
      log.info({ file }, 'generated SSH host key');
    }
    await chmod(file, 0o600).catch((err: Error) => {
      throw new Error(`host key ${file}: cannot set its mode to 0600: ${err.message}`);
    });
    const parsed = ssh2.utils.parseKey(privateKey);
    if (parsed instanceof Error) {
      throw new Error(`host key ${file} is unreadable (${parsed.message}); move it aside and the agent generates a new one `
        + '(clients will then see a changed host key)');
    }
    const publicKey = `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
    keys.push({ file, privateKey, publicKey });
  }
  return keys;
}
