// The agent's users, in <state-dir>/users.json (mode 0600): a password is stored only as a scrypt
// hash (N=2^14, r=8, p=1, 16-byte salt), public keys as OpenSSH lines. The file is read on every
// authentication, so `tandem user add` takes effect on a running agent.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile, rename, writeFile, open } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';
import { publicKeyProblem } from './key-policy.js';

export interface UserRecord {
  /** "scrypt$N$r$p$salt-b64$hash-b64" */
  password?: string;
  /** OpenSSH public key lines ("ssh-ed25519 AAAA... comment"). */
  keys?: string[];
  /** NACM groups the transport gives this user (RFC 8341 2.5), e.g. ["admin"]. */
  groups?: string[];
  /** The recovery user: never subject to NACM (RFC 8341 3.2.3). */
  recovery?: boolean;
}

export interface UsersFile {
  users: Record<string, UserRecord>;
}

// N=2^14, r=8: the interactive-login parameters of the scrypt paper (~16 MiB, tens of ms per check).
const SCRYPT = { N: 1 << 14, r: 8, p: 1, keyLen: 32 };
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
/** A NACM group name (group-name-type: not starting with '*'); kept to the user-name alphabet. */
const GROUP = NAME;

function scryptAsync(password: string, salt: Buffer, keyLen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p, keyLen } = SCRYPT;
  const hash = await scryptAsync(password, salt, keyLen, { N, r, p, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, saltB64, hashB64] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hashB64, 'base64');
  const got = await scryptAsync(password, Buffer.from(saltB64, 'base64'), expected.length, {
    N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024,
  });
  return got.length === expected.length && timingSafeEqual(got, expected);
}

let dummyHash: Promise<string> | undefined;

export class UserStore {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'users.json');
  }

  async load(): Promise<UsersFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { users: {} };
      throw new Error(`users file ${this.file} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    let parsed: UsersFile;
    try {
      parsed = JSON.parse(text) as UsersFile;
    } catch (err) {
      throw new Error(`users file ${this.file} is not valid JSON (${(err as Error).message}); fix it, or move it aside and add the users again with tandem user add`, { cause: err });
    }
    if (typeof parsed !== 'object' || parsed === null || typeof parsed.users !== 'object' || parsed.users === null) {
      throw new Error(`users file ${this.file} is not a users file (expected {"users": {...}})`);
    }
    return parsed;
  }

  /**
   * Add a user, or add a credential to an existing one (a new password replaces the old). Groups,
   * when given, replace the user's groups; `recovery` makes the user the NACM recovery user.
   */
  async add(name: string, cred: { password?: string; publicKey?: string; groups?: string[]; recovery?: boolean }): Promise<void> {
    if (!NAME.test(name)) throw new Error(`invalid user name '${name}' (letters, digits, '_', '.', '-'; at most 64)`);
    for (const g of cred.groups ?? []) {
      if (!GROUP.test(g)) throw new Error(`invalid group name '${g}' (letters, digits, '_', '.', '-'; at most 64)`);
    }
    const data = await this.load();
    const rec: UserRecord = data.users[name] ?? {};
    if (cred.groups !== undefined) rec.groups = [...new Set(cred.groups)];
    if (cred.recovery) rec.recovery = true;
    if (cred.password !== undefined) {
      if (cred.password.length === 0) throw new Error('empty password');
      rec.password = await hashPassword(cred.password);
    }
    if (cred.publicKey !== undefined) {
      if (/PRIVATE KEY/.test(cred.publicKey)) throw new Error('that is a private key; give the .pub file');
      const line = cred.publicKey.trim().split('\n').find((l) => l.trim() !== '' && !l.startsWith('#'));
      if (!line) throw new Error('no public key found');
      const parsed = ssh2.utils.parseKey(line);
      if (parsed instanceof Error) throw new Error(`not an OpenSSH public key: ${parsed.message}`);
      if (parsed.isPrivateKey()) throw new Error('that is a private key; give the .pub file');
      const refused = publicKeyProblem(parsed.type, parsed.getPublicSSH());
      if (refused) throw new Error(refused);
      const keys = rec.keys ?? [];
      if (!keys.some((k) => parsed.equals(k))) keys.push(line.trim());
      rec.keys = keys;
    }
    data.users[name] = rec;
    await this.save(data);
  }

  /** Atomic replace with fsync, mode 0600 (the file holds password hashes). */
  private async save(data: UsersFile): Promise<void> {
    const tmp = `${this.file}.tmp-${process.pid}`;
    await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
    const fh = await open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    const dir = await open(path.dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** NACM groups and recovery flag of a user (undefined when unknown); read on every call. */
  async identity(name: string): Promise<{ groups: string[]; recovery: boolean } | undefined> {
    const rec = (await this.load()).users[name];
    if (!rec) return undefined;
    const groups = Array.isArray(rec.groups) ? rec.groups.filter((g): g is string => typeof g === 'string') : [];
    return { groups, recovery: rec.recovery === true };
  }

  async checkPassword(name: string, password: string): Promise<boolean> {
    const rec = (await this.load()).users[name];
    if (!rec?.password) {
      // Same work for an unknown user as for a wrong password: the answer time does not tell them apart.
      dummyHash ??= hashPassword('tandem-dummy');
      await verifyPassword(password, await dummyHash);
      return false;
    }
    return verifyPassword(password, rec.password);
  }

  /** The user's stored key matching this public key blob, if any. */
  async findKey(name: string, blob: Buffer): Promise<ssh2.ParsedKey | undefined> {
    const rec = (await this.load()).users[name];
    for (const line of rec?.keys ?? []) {
      const k = ssh2.utils.parseKey(line);
      if (k instanceof Error) continue;
      // The blob names its own key type, so equal blobs are the same key.
      if (k.getPublicSSH().equals(blob)) return k;
    }
    return undefined;
  }
}
