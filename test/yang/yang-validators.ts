// Two ways of validating a tandem data document, so the same expectations are checked against both:
// native yanglint (Debian libyang-tools) and the libyang WebAssembly binding the agent uses.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { YangContext, YangError } from '../../yang/libyang/api.js';

/** The repository root (this file runs as dist/test/yang/yang-validators.js). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const modulesDir = path.join(repoRoot, 'yang/modules');
export const fixturesDir = path.join(repoRoot, 'test/yang/fixtures');
/** The IETF modules the tandem ones import (ietf-netconf-acm). */
export const ietfDir = path.join(repoRoot, 'yang/ietf');
/** yanglint's search path for the tandem modules. */
export const yanglintSearchArgs = ['-p', modulesDir, ...(existsSync(ietfDir) ? ['-p', ietfDir] : [])];

export function moduleFiles(): string[] {
  return readdirSync(modulesDir).filter((f) => /^tandem-.*\.yang$/.test(f)).sort().map((f) => path.join(modulesDir, f));
}

/** What a validation said: nothing (valid) or libyang's errors, first one first. */
export interface ValidationOutcome {
  valid: boolean;
  errors: Pick<YangError, 'message' | 'path' | 'appTag' | 'type'>[];
}

export type DocumentKind = 'config' | 'data' | 'rpc' | 'reply' | 'notification';

/** yanglint's name (-t) of each kind. */
const YANGLINT_TYPE: Record<DocumentKind, string> = { config: 'config', data: 'data', rpc: 'rpc', reply: 'reply', notification: 'notif' };

export interface DocumentValidator {
  readonly name: string;
  /** rpcPath: for kind 'reply', the RPC answered, e.g. '/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization'. */
  validate(file: string, kind: DocumentKind, rpcPath?: string): ValidationOutcome;
  /** The configuration document as RFC 7951 JSON with every default value added. */
  configWithDefaults(file: string): Record<string, unknown>;
  close(): void;
}

export function yanglintAvailable(): boolean {
  return spawnSync('yanglint', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** One libyang error line of yanglint: `libyang err : MSG (Data location "PATH", line number N.)`. */
const YANGLINT_ERROR = /^libyang err : (.*?)(?: \((?:Data|Schema) location "([^"]*)"(?:, line number \d+)?\.\))?$/;

export function parseYanglintErrors(stderr: string): ValidationOutcome['errors'] {
  const errors: ValidationOutcome['errors'] = [];
  for (const line of stderr.split('\n')) {
    const m = YANGLINT_ERROR.exec(line);
    if (m) errors.push({ message: m[1], path: m[2], type: 'validation' });
  }
  return errors;
}

export class YanglintValidator implements DocumentValidator {
  readonly name = 'yanglint (native)';
  validate(file: string, kind: DocumentKind, rpcPath?: string): ValidationOutcome {
    let input = file;
    let tmp: string | undefined;
    if (kind === 'reply') {
      // yanglint wants a reply's output nodes inside an element naming the RPC.
      const m = /^\/([a-z0-9-]+):([a-z0-9-]+)$/.exec(rpcPath ?? '');
      if (!m) throw new Error(`a reply needs the RPC path, e.g. /module:rpc (got '${String(rpcPath)}')`);
      tmp = mkdtempSync(path.join(os.tmpdir(), 'tandem-reply-'));
      input = path.join(tmp, 'reply.xml');
      writeFileSync(input, `<${m[2]} xmlns="urn:tandem:yang:${m[1]}">${readFileSync(file, 'utf8').replace(/<!--[\s\S]*?-->/g, '')}</${m[2]}>`);
    }
    let r;
    try {
      r = spawnSync('yanglint', [...yanglintSearchArgs, '-t', YANGLINT_TYPE[kind], ...moduleFiles(), input], {
        encoding: 'utf8',
        timeout: 30_000,
      });
    } finally {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
    if (r.error) throw r.error;
    const errors = parseYanglintErrors(r.stderr);
    if (r.status !== 0 && errors.length === 0) {
      errors.push({ message: r.stderr.trim() || `yanglint exited with ${String(r.status)}`, type: 'internal' });
    }
    return { valid: r.status === 0 && errors.length === 0, errors };
  }
  configWithDefaults(file: string): Record<string, unknown> {
    const r = spawnSync('yanglint', [...yanglintSearchArgs, '-t', 'config', '-f', 'json', '-d', 'all', ...moduleFiles(), file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`yanglint: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }
  close(): void {}
}

interface BindingModule {
  loadTandemContext?: () => YangContext | Promise<YangContext>;
}

/** Where the compiled binding would be, relative to this compiled file. */
const bindingEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../yang/libyang/index.js');

export function bindingBuilt(): boolean {
  return existsSync(bindingEntry);
}

export class BindingValidator implements DocumentValidator {
  readonly name = 'libyang WebAssembly binding';
  private constructor(readonly ctx: YangContext) {}

  /** Loads the tandem context through the binding; undefined (with the reason) when it is not there. */
  static async load(): Promise<BindingValidator | string> {
    if (!bindingBuilt()) return `binding not built (${path.relative(repoRoot, bindingEntry)} missing)`;
    const mod = (await import(pathToFileURL(bindingEntry).href)) as BindingModule;
    if (typeof mod.loadTandemContext !== 'function') return 'binding has no loadTandemContext()';
    return new BindingValidator(await mod.loadTandemContext());
  }

  validate(file: string, kind: DocumentKind, rpcPath?: string): ValidationOutcome {
    const text = readFileSync(file, 'utf8');
    try {
      const tree = this.ctx.parse(text, { format: 'xml', kind, strict: true, validate: true, ...(rpcPath ? { rpcPath } : {}) });
      tree.free();
      return { valid: true, errors: [] };
    } catch (err) {
      const errors = (err as { errors?: YangError[] }).errors;
      if (!Array.isArray(errors)) throw err;
      return { valid: false, errors };
    }
  }

  configWithDefaults(file: string): Record<string, unknown> {
    const tree = this.ctx.parse(readFileSync(file, 'utf8'), { format: 'xml', kind: 'config', strict: true, validate: true });
    try {
      return JSON.parse(tree.print({ format: 'json', withDefaults: 'report-all' })) as Record<string, unknown>;
    } finally {
      tree.free();
    }
  }

  close(): void {
    this.ctx.free();
  }
}
