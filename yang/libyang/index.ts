// Entry point of the libyang binding: contexts over the shared WebAssembly libyang instance.
import { readdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { ModuleInfo, YangContext } from './api.js';
import { WasmYangContext } from './context.js';
import { failure, LY } from './errors.js';
import { projectRoot } from './project-root.js';
import { libyangWasm, withArena } from './wasm-module.js';

export * from './api.js';
export { projectRoot } from './project-root.js';
export { WasmYangContext } from './context.js';


/** Creates an empty libyang context (built-in ietf-yang-library & co.) searching modules in searchDirs. */
export async function createYangContext(opts?: { searchDirs?: string[] }): Promise<YangContext> {
  const dirs = (opts?.searchDirs ?? []).map((d) => {
    if (typeof d !== 'string' || d.length === 0 || d.includes(':')) throw new TypeError(`invalid YANG search directory '${String(d)}'`);
    return isAbsolute(d) ? d : resolve(d);
  });
  const m = await libyangWasm();
  const ctx = withArena(m, (a) => m._tdm_ctx_new(a.str(dirs.join(':'))));
  if (!ctx) throw failure(m, 0, LY.EINVAL, 'schema', `creating a libyang context (search dirs: ${dirs.join(', ') || 'none'})`);
  return new WasmYangContext(m, ctx, dirs.join(':'));
}

/** The IETF modules tandem's NETCONF server implements (shipped in yang/ietf/). */
export const IETF_MODULES: readonly string[] = [
  'ietf-netconf', 'ietf-netconf-with-defaults', 'ietf-netconf-acm', 'ietf-netconf-monitoring',
  'ietf-netconf-nmda', 'ietf-origin', 'ietf-netconf-notifications', 'notifications', 'nc-notifications',
];

/** ietf-netconf features enabled by default in loadTandemContext: exactly what the server implements
 *  (not `url`: no <url> source or target). Announced in the hello and in yang-library. */
export const DEFAULT_NETCONF_FEATURES: readonly string[] = [
  'writable-running', 'candidate', 'confirmed-commit', 'rollback-on-error', 'validate', 'startup', 'xpath',
];

/** Names of the tandem-* modules present in a directory (file names `name.yang` or `name@rev.yang`). */
export function tandemModuleNames(dir: string): string[] {
  const names = new Set<string>();
  for (const file of readdirSync(dir)) {
    const m = /^(tandem-[a-z0-9-]+?)(@\d{4}-\d{2}-\d{2})?\.yang$/.exec(file);
    if (m) names.add(m[1]);
  }
  return [...names].sort();
}

/**
 * A context with the IETF NETCONF modules of yang/ietf/ and every tandem-* module of yang/modules/
 * (or of opts.modulesDir), all implemented. Throws YangException when a module does not load.
 */
/** Loads the IETF and tandem modules; `onLoaded` hears what was loaded (yang/ has no logger of its own). */
export async function loadTandemContext(opts?: {
  modulesDir?: string;
  netconfFeatures?: string[];
  extraSearchDirs?: string[];
  onLoaded?: (modules: string[], ms: number) => void;
}): Promise<YangContext> {
  const root = projectRoot();
  const modulesDir = opts?.modulesDir ?? join(root, 'yang', 'modules');
  const ietfDir = join(root, 'yang', 'ietf');
  const started = Date.now();
  const ctx = await createYangContext({ searchDirs: [ietfDir, modulesDir, ...(opts?.extraSearchDirs ?? [])] });
  const loaded: ModuleInfo[] = [];
  try {
    for (const name of IETF_MODULES) {
      const features = name === 'ietf-netconf' ? [...(opts?.netconfFeatures ?? DEFAULT_NETCONF_FEATURES)] : undefined;
      loaded.push(ctx.loadModule(name, features ? { features } : undefined));
    }
    for (const name of tandemModuleNames(modulesDir)) loaded.push(ctx.loadModule(name, { features: ['*'] }));
  } catch (e) {
    ctx.free();
    throw e;
  }
  opts?.onLoaded?.(loaded.map((m) => `${m.name}@${m.revision ?? ''}`), Date.now() - started);
  return ctx;
}
