// What a shared-secret must be. YANG says what XPath can (16..256 characters, present while the
// synchronisation is enabled, not one character repeated); this says the rest, for the sync
// subsystem's validate: no short pattern repeated, no run of consecutive characters, enough
// different characters. `openssl rand -base64 32` passes every check.
import type { SubsystemError } from '../core/subsystem.js';
import { vrfEntries } from './sync-config.js';

export const MIN_SECRET_LENGTH = 16;
const MIN_DISTINCT_CHARACTERS = 6;
export const SECRET_ADVICE = 'generate one with: openssl rand -base64 32';
export const WEAK_SECRET_APP_TAG = 'shared-secret-too-weak';
export const MISSING_SECRET_APP_TAG = 'shared-secret-missing';

type Json = Record<string, unknown>;

/** Why `secret` is too weak, or undefined when it is acceptable. */
export function sharedSecretWeakness(secret: string): string | undefined {
  const chars = [...secret];
  if (chars.length < MIN_SECRET_LENGTH) return `shared-secret has ${chars.length} characters, at least ${MIN_SECRET_LENGTH} are needed`;
  if (secret.trim() === '') return 'shared-secret is only white space';
  const distinct = new Set(chars).size;
  if (distinct < MIN_DISTINCT_CHARACTERS) return `shared-secret uses only ${distinct} different characters (at least ${MIN_DISTINCT_CHARACTERS})`;
  for (let period = 1; period <= chars.length / 2; period++) {
    if (chars.length % period !== 0) continue;
    const unit = chars.slice(0, period).join('');
    if (unit.repeat(chars.length / period) === secret) return `shared-secret is "${period === 1 ? 'one character' : `a ${period}-character pattern`}" repeated`;
  }
  const codes = chars.map((c) => c.codePointAt(0) as number);
  const step = (codes[1] as number) - (codes[0] as number);
  if (Math.abs(step) === 1 && codes.every((c, i) => i === 0 || c - (codes[i - 1] as number) === step)) return 'shared-secret is a run of consecutive characters';
  return undefined;
}

/** Errors for every VRF whose enabled ha-fp-conntrack has no or a weak shared-secret. */
export function checkSharedSecrets(config: Json): SubsystemError[] {
  const errors: SubsystemError[] = [];
  for (const v of vrfEntries(config)) {
    const ha = v['tandem-ha-fp-conntrack:ha-fp-conntrack'] as Json | undefined;
    if (!ha) continue;
    const path = `/tandem-vrf:vrf[name='${String(v['name'])}']/tandem-ha-fp-conntrack:ha-fp-conntrack`;
    const secret = ha['shared-secret'];
    if (typeof secret !== 'string') {
      if (ha['enabled'] !== false) {
        errors.push({ message: `shared-secret is mandatory when ha-fp-conntrack is enabled (${SECRET_ADVICE})`, path, appTag: MISSING_SECRET_APP_TAG });
      }
      continue;
    }
    const weak = sharedSecretWeakness(secret);
    if (weak) errors.push({ message: `${weak}: use a random secret (${SECRET_ADVICE})`, path: `${path}/shared-secret`, appTag: WEAK_SECRET_APP_TAG });
  }
  return errors;
}
