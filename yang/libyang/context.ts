// YangContext over a libyang context in wasm: module loading, schema queries and parsing into DataTrees.
// Modules are read from the search directories through emscripten's NODERAWFS (the wasm sees the real
// filesystem), so libyang resolves imports/includes itself exactly as yanglint would.
import {
  YangException, type DataKind, type YangContextRecipe, type DataTree, type LibyangRenewal, type ModuleInfo, type ParseOptions, type SchemaNodeInfo, type YangContext,
} from './api.js';
import { WasmDataTree, type TreeCell, type TreeOwner } from './data-tree.js';
import { failure, LY } from './errors.js';
import { newLibyangInstance, replaceSharedInstance, takeString, withArena, type LibyangWasm, type Ptr } from './wasm-module.js';

const KIND: Record<DataKind, number> = { config: 0, data: 1, rpc: 2, reply: 3, notification: 4 };

interface RawModuleInfo extends Omit<ModuleInfo, 'revision' | 'submodules'> {
  revision: string | null;
  submodules: { name: string; revision: string | null }[];
}

function moduleInfo(raw: RawModuleInfo): ModuleInfo {
  const info: ModuleInfo = {
    name: raw.name, namespace: raw.namespace, prefix: raw.prefix, implemented: raw.implemented, features: raw.features,
    submodules: raw.submodules.map((s) => (s.revision ? { name: s.name, revision: s.revision } : { name: s.name })),
  };
  if (raw.revision) info.revision = raw.revision;
  return info;
}

function checkName(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${what} must be a non-empty string`);
  return value;
}

/** Loads a module into a context of an instance; the shim's JSON module info, undefined when not found. */
function loadInto(m: LibyangWasm, ctx: Ptr, name: string, revision: string | undefined, features: string[] | undefined): string | undefined {
  return withArena(m, (a) => takeString(m, m._tdm_load_module(ctx, a.str(name), a.str(revision),
    a.str(features && features.length ? features.join(',') : undefined))));
}

/** Parses text into a context of an instance: the tree pointer, or the error code. */
function parseInto(m: LibyangWasm, ctx: Ptr, text: string, kind: number, validate: boolean): { ptr: Ptr } | { rc: number } {
  return withArena(m, (a) => {
    const out = a.slot();
    const rc = m._tdm_parse(ctx, a.str(text), 0, kind, 1, validate ? 1 : 0, 0, 0, out);
    if (rc) {
      m._tdm_free(m._tdm_errors(ctx));
      return { rc };
    }
    return { ptr: a.read(out) };
  });
}

/** A tree printed as XML, 0 being the empty tree. */
function printXml(m: LibyangWasm, ptr: Ptr, withDefaults: number): string {
  if (!ptr) return '';
  const text = takeString(m, m._tdm_print(ptr, 0, withDefaults, 0));
  if (text === undefined) throw new Error('printing a tree failed');
  return text;
}

const WD_EXPLICIT = 0;
const WD_REPORT_ALL = 2;

export class WasmYangContext implements YangContext, TreeOwner {
  private ctx: Ptr;
  private m: LibyangWasm;
  /** Every successful loadModule, in order: renew() repeats them in the fresh instance. */
  private readonly loads: { name: string; revision?: string; features?: string[] }[] = [];
  private readonly liveTrees = new Set<TreeCell>();
  /** modules() as last read: only loadModule changes the set (every NETCONF monitoring read asks). */
  private modulesMemo: ModuleInfo[] | undefined;
  // Frees trees dropped without free(); the held value is the cell, never the tree object itself.
  private readonly finalizer = new FinalizationRegistry<TreeCell>((cell) => {
    if (!cell.freed && this.ctx) this.release(cell);
  });

  constructor(wasm: LibyangWasm, ctx: Ptr, private readonly searchDirs = '') {
    this.m = wasm;
    this.ctx = ctx;
  }

  /** The instance the context lives in (renew() replaces it; trees look it up on every call). */
  get wasm(): LibyangWasm {
    return this.m;
  }

  ctxPtr(): Ptr {
    if (!this.ctx) throw new Error('YangContext used after free()');
    return this.ctx;
  }

  adopt(ptr: Ptr): WasmDataTree {
    const cell: TreeCell = { ptr, freed: false };
    const tree = new WasmDataTree(this, cell);
    this.liveTrees.add(cell);
    this.finalizer.register(tree, cell, cell);
    return tree;
  }

  release(cell: TreeCell): void {
    if (cell.freed) return;
    cell.freed = true;
    this.liveTrees.delete(cell);
    this.finalizer.unregister(cell);
    if (cell.ptr && this.ctx) this.wasm._tdm_free_tree(cell.ptr);
    cell.ptr = 0;
  }

  /** Is this tree one of ours (and not freed)? */
  owns(tree: WasmDataTree): boolean {
    return this.liveTrees.has(tree.cell);
  }

  /** How to build an equal context elsewhere (a worker thread's own instance): search dirs and module loads. */
  recipe(): YangContextRecipe {
    return { searchDirs: this.searchDirs, loads: this.loads.map((l) => ({ ...l, features: l.features && [...l.features] })) };
  }

  /** Number of trees not yet freed (for leak checks). */
  liveTreeCount(): number {
    return this.liveTrees.size;
  }

  loadModule(name: string, opts?: { revision?: string; features?: string[] }): ModuleInfo {
    checkName('module name', name);
    const m = this.wasm;
    const ctx = this.ctxPtr();
    const features = opts?.features;
    if (features?.some((f) => typeof f !== 'string' || f.length === 0 || f.includes(','))) {
      throw new TypeError(`invalid feature list for module ${name}: ${JSON.stringify(features)}`);
    }
    const json = loadInto(m, ctx, name, opts?.revision, features);
    if (!json) throw failure(m, ctx, LY.ENOTFOUND, 'schema', `loading module ${name}${opts?.revision ? `@${opts.revision}` : ''}`);
    this.loads.push({ name, revision: opts?.revision, features: features && [...features] });
    this.modulesMemo = undefined;
    return moduleInfo(JSON.parse(json) as RawModuleInfo);
  }

  /** The same array (and objects) until a module is loaded: callers must not change it. */
  modules(): ModuleInfo[] {
    if (!this.modulesMemo) {
      const json = takeString(this.wasm, this.wasm._tdm_modules(this.ctxPtr()));
      this.modulesMemo = Object.freeze((JSON.parse(json ?? '[]') as RawModuleInfo[]).map((r) => Object.freeze(moduleInfo(r)))) as ModuleInfo[];
    }
    return this.modulesMemo;
  }

  schemaText(name: string, revision: string | undefined, format: 'yang' | 'yin'): string {
    checkName('module name', name);
    if (format !== 'yang' && format !== 'yin') throw new TypeError(`unknown schema format '${String(format)}' (yang or yin)`);
    const m = this.wasm;
    const ctx = this.ctxPtr();
    const text = withArena(m, (a) => takeString(m, m._tdm_schema_text(ctx, a.str(name), a.str(revision), format === 'yin' ? 1 : 0)));
    if (text === undefined) {
      m._tdm_free(m._tdm_errors(ctx));
      throw new YangException([{ message: `no module or submodule ${name}${revision ? `@${revision}` : ''} in the context`, type: 'schema' }]);
    }
    return text;
  }

  schemaNode(schemaPath: string): SchemaNodeInfo | undefined {
    checkName('schema path', schemaPath);
    const m = this.wasm;
    const ctx = this.ctxPtr();
    const json = withArena(m, (a) => takeString(m, m._tdm_schema_node(ctx, a.str(schemaPath))));
    return json ? (JSON.parse(json) as SchemaNodeInfo) : undefined;
  }

  schemaChildren(schemaPath: string): SchemaNodeInfo[] {
    checkName('schema path', schemaPath);
    const m = this.wasm;
    const ctx = this.ctxPtr();
    const json = withArena(m, (a) => takeString(m, m._tdm_schema_children(ctx, a.str(schemaPath))));
    if (json === undefined) {
      throw new YangException([{ message: `unknown schema node ${schemaPath}`, path: schemaPath, type: 'schema' }]);
    }
    return JSON.parse(json) as SchemaNodeInfo[];
  }

  parse(text: string, opts: ParseOptions): DataTree {
    if (typeof text !== 'string') throw new TypeError('document text must be a string');
    const format = opts.format === 'xml' ? 0 : opts.format === 'json' ? 1 : -1;
    if (format < 0) throw new TypeError(`unknown data format '${String(opts.format)}' (xml or json)`);
    const kind = KIND[opts.kind];
    if (kind === undefined) throw new TypeError(`unknown document kind '${String(opts.kind)}'`);
    const m = this.wasm;
    const ctx = this.ctxPtr();
    let dependencies = 0;
    if (opts.dependencies !== undefined) {
      if (opts.dependencies instanceof WasmDataTree && opts.dependencies.cell.freed) throw new Error('DataTree used after free()');
      if (!(opts.dependencies instanceof WasmDataTree) || !this.owns(opts.dependencies)) {
        throw new YangException([{ message: 'the dependencies tree belongs to a different YANG context', type: 'internal' }]);
      }
      dependencies = opts.dependencies.cell.ptr;
    }
    return withArena(m, (a) => {
      const out = a.slot();
      const rc = m._tdm_parse(ctx, a.str(text), format, kind, opts.strict === false ? 0 : 1, opts.validate === false ? 0 : 1,
        a.str(opts.kind === 'reply' ? opts.rpcPath : undefined), dependencies, out);
      if (rc) {
        if (rc === LY.ENOT) {
          m._tdm_free(m._tdm_errors(ctx));
          throw new YangException([{ message: `the document holds no ${opts.kind === 'notification' ? 'notification' : 'RPC'} node`, type: 'validation' }]);
        }
        throw failure(m, ctx, rc, 'data', `parsing ${opts.format.toUpperCase()} ${opts.kind}`);
      }
      return this.adopt(a.read(out));
    });
  }

  newTree(): DataTree {
    this.ctxPtr();
    return this.adopt(0);
  }

  yangLibraryData(contentId?: string): DataTree {
    const m = this.wasm;
    const ctx = this.ctxPtr();
    return withArena(m, (a) => {
      const out = a.slot();
      const rc = m._tdm_yanglib(ctx, a.str(contentId), out);
      if (rc) throw failure(m, ctx, rc, 'data', 'building ietf-yang-library data');
      return this.adopt(a.read(out));
    });
  }

  heapUsed(): number {
    return this.wasm._tdm_heap_used() >>> 0;
  }

  /** Size of the whole wasm linear memory (it only grows), for leak tests. */
  wasmMemoryBytes(): number {
    return this.wasm.HEAPU8.length;
  }

  async renew(): Promise<LibyangRenewal> {
    const started = performance.now();
    this.ctxPtr();
    const fresh = await newLibyangInstance();
    // Everything below is synchronous: no other work sees a half-moved context.
    const old = this.m;
    const oldCtx = this.ctxPtr();
    const memoryBytesBefore = old.HEAPU8.length;
    const heapUsedBefore = old._tdm_heap_used() >>> 0;
    const ctx = withArena(fresh, (a) => fresh._tdm_ctx_new(a.str(this.searchDirs)));
    if (!ctx) throw new Error('renewing libyang: creating the context failed');
    const moved = new Map<TreeCell, Ptr>();
    try {
      for (const l of this.loads) {
        if (!loadInto(fresh, ctx, l.name, l.revision, l.features)) throw new Error(`renewing libyang: module ${l.name} did not load`);
      }
      const modules = (c: Ptr, m: LibyangWasm) => takeString(m, m._tdm_modules(c));
      if (modules(ctx, fresh) !== modules(oldCtx, old)) throw new Error('renewing libyang: the fresh context has other modules');
      for (const cell of this.liveTrees) {
        if (!cell.ptr) {
          moved.set(cell, 0);
          continue;
        }
        const explicit = printXml(old, cell.ptr, WD_EXPLICIT);
        const all = printXml(old, cell.ptr, WD_REPORT_ALL);
        // Parsed as it was stored; validated again only if that is what gave the old tree its defaults.
        let ptr: Ptr | undefined;
        for (const [kind, validate] of [[KIND.config, false], [KIND.config, true], [KIND.data, false], [KIND.data, true]] as const) {
          const r = parseInto(fresh, ctx, explicit, kind, validate);
          if (!('ptr' in r)) continue;
          if (printXml(fresh, r.ptr, WD_EXPLICIT) === explicit && printXml(fresh, r.ptr, WD_REPORT_ALL) === all) {
            ptr = r.ptr;
            break;
          }
          if (r.ptr) fresh._tdm_free_tree(r.ptr);
        }
        if (ptr === undefined) throw new Error('renewing libyang: a tree does not read back equal from its printed form');
        moved.set(cell, ptr);
      }
    } catch (err) {
      for (const ptr of moved.values()) if (ptr) fresh._tdm_free_tree(ptr);
      fresh._tdm_ctx_free(ctx);
      throw err;
    }
    for (const [cell, ptr] of moved) {
      if (cell.ptr) old._tdm_free_tree(cell.ptr);
      cell.ptr = ptr;
    }
    old._tdm_ctx_free(oldCtx);
    this.m = fresh;
    this.ctx = ctx;
    replaceSharedInstance(old, fresh);
    return {
      trees: moved.size, memoryBytesBefore, memoryBytesAfter: fresh.HEAPU8.length, heapUsedBefore, heapUsedAfter: fresh._tdm_heap_used() >>> 0,
      ms: Math.round(performance.now() - started),
    };
  }

  free(): void {
    if (!this.ctx) return;
    for (const cell of [...this.liveTrees]) this.release(cell);
    this.wasm._tdm_ctx_free(this.ctx);
    this.ctx = 0;
  }
}
