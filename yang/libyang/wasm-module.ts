// Loads yang/wasm/libyang.{js,wasm} (emscripten 3.1.6, CommonJS, MODULARIZE) once per process and gives it a
// typed face. Only files in yang/libyang/ use this; everything else goes through YangContext/DataTree.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { projectRoot } from './project-root.js';

/** A wasm pointer (byte offset into the module's memory); 0 is NULL. */
export type Ptr = number;

/** The raw exports of shim.c plus the emscripten runtime helpers we use. */
export interface LibyangWasm {
  HEAPU8: Uint8Array;
  UTF8ToString(ptr: Ptr, maxBytes?: number): string;
  stringToUTF8(str: string, ptr: Ptr, maxBytes: number): void;
  lengthBytesUTF8(str: string): number;
  getValue(ptr: Ptr, type: 'i32' | '*'): number;
  setValue(ptr: Ptr, value: number, type: 'i32' | '*'): void;
  _malloc(size: number): Ptr;
  _free(ptr: Ptr): void;
  _tdm_free(ptr: Ptr): void;
  _tdm_heap_used(): number;
  _tdm_errors(ctx: Ptr): Ptr;
  _tdm_ctx_new(searchDirs: Ptr): Ptr;
  _tdm_ctx_free(ctx: Ptr): void;
  _tdm_load_module(ctx: Ptr, name: Ptr, revision: Ptr, features: Ptr): Ptr;
  _tdm_modules(ctx: Ptr): Ptr;
  _tdm_schema_text(ctx: Ptr, name: Ptr, revision: Ptr, yin: number): Ptr;
  _tdm_schema_node(ctx: Ptr, path: Ptr): Ptr;
  _tdm_schema_children(ctx: Ptr, path: Ptr): Ptr;
  _tdm_parse(ctx: Ptr, text: Ptr, format: number, kind: number, strict: number, validate: number, rpcPath: Ptr, depTree: Ptr, out: Ptr): number;
  _tdm_validate(ctx: Ptr, tree: Ptr, configOnly: number): number;
  _tdm_print(tree: Ptr, format: number, withDefaults: number, pretty: number): Ptr;
  _tdm_dup(tree: Ptr, out: Ptr): number;
  _tdm_merge(target: Ptr, source: Ptr): number;
  _tdm_diff(first: Ptr, second: Ptr, format: number, out: Ptr): number;
  _tdm_xpath(tree: Ptr, expr: Ptr, out: Ptr): number;
  _tdm_select(tree: Ptr, expr: Ptr, out: Ptr): number;
  _tdm_set_path(ctx: Ptr, tree: Ptr, path: Ptr, value: Ptr): number;
  _tdm_remove_path(tree: Ptr, path: Ptr): number;
  _tdm_exists(tree: Ptr, path: Ptr): number;
  _tdm_free_tree(tree: Ptr): void;
  _tdm_yanglib(ctx: Ptr, contentId: Ptr, out: Ptr): number;
}

// The part of the WebAssembly JS API used here (Node has it; this project's TypeScript lib does not declare it).
interface WasmCompiledModule { readonly compiled?: never }
interface WasmInstance { readonly exports: object }
declare const WebAssembly: {
  compile(bytes: Uint8Array): Promise<WasmCompiledModule>;
  instantiate(module: WasmCompiledModule, imports: object): Promise<WasmInstance>;
};

type InstantiateWasm = (imports: object, receive: (instance: WasmInstance, module: WasmCompiledModule) => void) => object;
type ModuleFactory = (opts: { instantiateWasm: InstantiateWasm }) => Promise<LibyangWasm>;
interface CompiledLibyang { factory: ModuleFactory; module: WasmCompiledModule }

let compiling: Promise<CompiledLibyang> | undefined;
let loading: Promise<LibyangWasm> | undefined;

/** The emscripten factory and the compiled module, once per process (every instance shares the code). */
function compiledLibyang(): Promise<CompiledLibyang> {
  if (!compiling) {
    const dir = join(projectRoot(), 'yang', 'wasm');
    const require = createRequire(import.meta.url);
    const factory = require(join(dir, 'libyang.js')) as ModuleFactory;
    const started = WebAssembly.compile(readFileSync(join(dir, 'libyang.wasm'))).then((module) => ({ factory, module }));
    started.catch(() => { compiling = undefined; });
    compiling = started;
  }
  return compiling;
}

/**
 * A new libyang instance: its own linear memory (small again), the code V8 already compiled and
 * tiered up shared with every other instance. WebAssembly memory never shrinks, so this is how a
 * heap grown by a large configuration is given back (see YangContext.renew).
 */
export async function newLibyangInstance(): Promise<LibyangWasm> {
  const { factory, module } = await compiledLibyang();
  // emscripten 3.1.6 would fetch() the .wasm by path on Node 20; instantiate the compiled module instead.
  let failed: (err: unknown) => void = () => undefined;
  const failure = new Promise<never>((_resolve, reject) => { failed = reject; });
  const ready = factory({
    instantiateWasm: (imports, receive) => {
      WebAssembly.instantiate(module, imports).then((instance) => receive(instance, module), failed);
      return {};
    },
  });
  return Promise.race([ready, failure]);
}

/** The process-wide libyang instance that new contexts use. */
export function libyangWasm(): Promise<LibyangWasm> {
  if (!loading) {
    const started = newLibyangInstance();
    started.then((m) => { if (loading === started) shared = m; }, () => { if (loading === started) loading = undefined; });
    loading = started;
  }
  return loading;
}

/** What `loading` resolved to (to recognise it synchronously in replaceSharedInstance). */
let shared: LibyangWasm | undefined;

/**
 * A context moved from `old` to `fresh` (YangContext.renew): if `old` was the process-wide instance,
 * `fresh` becomes it. Otherwise this module would keep the old instance, and the whole linear memory
 * the renewal was meant to give back, reachable for the life of the process. Contexts still living
 * in `old` keep it alive themselves as long as they need it.
 */
export function replaceSharedInstance(old: LibyangWasm, fresh: LibyangWasm): void {
  if (shared !== old) return;
  shared = fresh;
  loading = Promise.resolve(fresh);
}

/** Allocates NUL-terminated UTF-8 copies of strings for one call and frees them afterwards. */
export class CallArena {
  private readonly ptrs: Ptr[] = [];
  constructor(private readonly m: LibyangWasm) {}

  /** A C string, or NULL for undefined. */
  str(s: string | undefined): Ptr {
    if (s === undefined) return 0;
    const size = this.m.lengthBytesUTF8(s) + 1;
    const p = this.m._malloc(size);
    if (!p) throw new Error('wasm heap exhausted');
    this.m.stringToUTF8(s, p, size);
    this.ptrs.push(p);
    return p;
  }

  /** A pointer-sized out-parameter slot, initialised to value. */
  slot(value: Ptr = 0): Ptr {
    const p = this.m._malloc(4);
    if (!p) throw new Error('wasm heap exhausted');
    this.m.setValue(p, value, 'i32');
    this.ptrs.push(p);
    return p;
  }

  read(slot: Ptr): Ptr {
    return this.m.getValue(slot, 'i32') >>> 0;
  }

  free(): void {
    for (const p of this.ptrs) this.m._free(p);
    this.ptrs.length = 0;
  }
}

/** Runs fn with an arena that is always freed. */
export function withArena<T>(m: LibyangWasm, fn: (a: CallArena) => T): T {
  const arena = new CallArena(m);
  try {
    return fn(arena);
  } finally {
    arena.free();
  }
}

/** Takes ownership of a malloc'd C string from the shim: returns it (undefined for NULL) and frees it. */
export function takeString(m: LibyangWasm, p: Ptr): string | undefined {
  if (!p) return undefined;
  try {
    return m.UTF8ToString(p);
  } finally {
    m._tdm_free(p);
  }
}
