// YangContext over a libyang context in wasm: module loading, schema queries and parsing into DataTrees.
// Modules are read from the search directories through emscripten's NODERAWFS (the wasm sees the real
// filesystem), so libyang resolves imports/includes itself exactly as yanglint would.
import {
  YangException, type DataKind, type DataTree, type ModuleInfo, type ParseOptions, type SchemaNodeInfo, type YangContext,
} from './api.js';
import { WasmDataTree, type TreeCell, type TreeOwner } from './data-tree.js';
import { failure, LY } from './errors.js';
import { takeString, withArena, type LibyangWasm, type Ptr } from './wasm-module.js';

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

export class WasmYangContext implements YangContext, TreeOwner {
  private ctx: Ptr;
  private readonly liveTrees = new Set<TreeCell>();
  // Frees trees dropped without free(); the held value is the cell, never the tree object itself.
  private readonly finalizer = new FinalizationRegistry<TreeCell>((cell) => {
    if (!cell.freed && this.ctx) this.release(cell);
  });

  constructor(readonly wasm: LibyangWasm, ctx: Ptr) {
    this.ctx = ctx;
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
    const json = withArena(m, (a) => takeString(m, m._tdm_load_module(ctx, a.str(name), a.str(opts?.revision),
      a.str(features && features.length ? features.join(',') : undefined))));
    if (!json) throw failure(m, ctx, LY.ENOTFOUND, 'schema', `loading module ${name}${opts?.revision ? `@${opts.revision}` : ''}`);
    return moduleInfo(JSON.parse(json) as RawModuleInfo);
  }

  modules(): ModuleInfo[] {
    const json = takeString(this.wasm, this.wasm._tdm_modules(this.ctxPtr()));
    return (JSON.parse(json ?? '[]') as RawModuleInfo[]).map(moduleInfo);
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

  free(): void {
    if (!this.ctx) return;
    for (const cell of [...this.liveTrees]) this.release(cell);
    this.wasm._tdm_ctx_free(this.ctx);
    this.ctx = 0;
  }
}
