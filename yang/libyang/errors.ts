// Turns libyang's stored error records into YangError objects. libyang 2.1.30 gives the location as prose
// ('Data location "/m:a/b", line number 3.'), so the data path is cut out of that text.
import { YangException, type YangError } from './api.js';
import { takeString, type LibyangWasm, type Ptr } from './wasm-module.js';

/** LY_ERR values (log.h). */
export const LY = {
  SUCCESS: 0, EMEM: 1, ESYS: 2, EINVAL: 3, EEXIST: 4, ENOTFOUND: 5, EINT: 6, EVALID: 7, EDENIED: 8,
  EINCOMPLETE: 9, ERECOMPILE: 10, ENOT: 11, EOTHER: 12,
} as const;

const LY_ERR_NAMES = ['success', 'out of memory', 'system call failure', 'invalid argument', 'already exists',
  'not found', 'internal error', 'validation failure', 'operation denied', 'incomplete', 'needs recompilation',
  'negative result', 'unknown error'];

/** LY_VECODE values (log.h). */
const VE = { SYNTAX: 1, SYNTAX_YANG: 2, SYNTAX_YIN: 3, REFERENCE: 4, XPATH: 5, SEMANTICS: 6, SYNTAX_XML: 7, SYNTAX_JSON: 8, DATA: 9, OTHER: 10 } as const;

/** Whether the failing call worked on schemas (loading modules) or on data. */
export type ErrorPhase = 'schema' | 'data';

interface RawError { no: number; vecode: number; msg: string | null; path: string | null; apptag: string | null }

function classify(raw: RawError, phase: ErrorPhase): YangError['type'] {
  const no = raw.no & 0x7f; // strip LY_EPLUGIN
  if (no === LY.EMEM || no === LY.EINT || no === LY.ESYS) return 'internal';
  if (no === LY.EVALID) {
    switch (raw.vecode) {
      case VE.SYNTAX: case VE.SYNTAX_XML: case VE.SYNTAX_JSON: return 'syntax';
      case VE.SYNTAX_YANG: case VE.SYNTAX_YIN: return 'schema';
      case VE.XPATH: return 'xpath';
      default: return phase === 'schema' ? 'schema' : 'validation';
    }
  }
  return phase === 'schema' ? 'schema' : 'validation';
}

/** The data path (or, failing that, schema path) inside libyang's location prose. */
export function pathFromLocation(location: string | null): string | undefined {
  if (!location) return undefined;
  // Greedy up to the quote that ends the location: key values in predicates may contain quotes themselves.
  const m = /^(?:Data|Schema) location "(.*)"(?:, line number \d+)?\.?$/s.exec(location);
  return m ? m[1] : undefined;
}

function lineFromLocation(location: string | null): number | undefined {
  const m = location ? /line number (\d+)/i.exec(location) : null;
  return m ? Number(m[1]) : undefined;
}

function toYangError(raw: RawError, phase: ErrorPhase): YangError {
  const err: YangError = { message: raw.msg ?? 'libyang error', type: classify(raw, phase) };
  const path = pathFromLocation(raw.path);
  if (path) err.path = path;
  if (raw.apptag) err.appTag = raw.apptag;
  const line = lineFromLocation(raw.path);
  if (line !== undefined) err.message += ` (line ${line})`;
  return err;
}

/** Drains the context's stored errors. */
export function takeErrors(m: LibyangWasm, ctx: Ptr, phase: ErrorPhase): YangError[] {
  const json = takeString(m, m._tdm_errors(ctx));
  if (!json) return [];
  return (JSON.parse(json) as RawError[]).map((raw) => toYangError(raw, phase));
}

/** A YangException for a failed call: libyang's stored errors, or a description of the return code. */
export function failure(m: LibyangWasm, ctx: Ptr, rc: number, phase: ErrorPhase, what: string): YangException {
  const errors = takeErrors(m, ctx, phase);
  if (errors.length === 0) {
    const code = rc & 0x7f;
    errors.push({
      message: `${what} failed: ${LY_ERR_NAMES[code] ?? `libyang error ${rc}`}`,
      type: code === LY.EMEM || code === LY.EINT ? 'internal' : phase === 'schema' ? 'schema' : 'validation',
    });
  }
  return new YangException(errors);
}
