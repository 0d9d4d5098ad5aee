// A libyang data tree held in wasm memory. The TypeScript object owns the C tree: free() releases it, the
// owning context frees any still-live trees when it is freed, and a FinalizationRegistry frees trees that
// were dropped without free() (a safety net only: wasm memory is not seen by the JS GC, so rely on free()).
import { YangException, type DataFormat, type DataNodeView, type DataTree, type PrintOptions, type WithDefaults } from './api.js';
import { failure, LY } from './errors.js';
import { takeString, withArena, type LibyangWasm, type Ptr } from './wasm-module.js';

/** The C side of a tree: pointer to its first top-level node (0 when empty). Shared with the owner's registry. */
export interface TreeCell {
  ptr: Ptr;
  freed: boolean;
}

/** What a tree needs from its context. */
export interface TreeOwner {
  readonly wasm: LibyangWasm;
  /** The ly_ctx pointer; throws when the context was freed. */
  ctxPtr(): Ptr;
  adopt(ptr: Ptr): WasmDataTree;
  release(cell: TreeCell): void;
}

const WITH_DEFAULTS: Record<WithDefaults, number> = { explicit: 0, trim: 1, 'report-all': 2, 'report-all-tagged': 3 };
const FORMAT: Record<DataFormat, number> = { xml: 0, json: 1 };

function formatCode(format: DataFormat): number {
  const code = FORMAT[format];
  if (code === undefined) throw new TypeError(`unknown data format '${String(format)}' (xml or json)`);
  return code;
}

function requireString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

export class WasmDataTree implements DataTree {
  constructor(private readonly owner: TreeOwner, readonly cell: TreeCell) {}

  get empty(): boolean {
    return this.live() === 0;
  }

  /** The first top-level node; throws after free(). */
  private live(): Ptr {
    if (this.cell.freed) throw new Error('DataTree used after free()');
    this.owner.ctxPtr();
    return this.cell.ptr;
  }

  /** Runs a shim call that may replace the first node through a slot, keeping cell.ptr current. */
  private mutate(what: string, call: (slot: Ptr, m: LibyangWasm, ctx: Ptr, arena: { str(s: string | undefined): Ptr }) => number,
    allowNotFound = false): number {
    this.live();
    const m = this.owner.wasm;
    const ctx = this.owner.ctxPtr();
    return withArena(m, (arena) => {
      const slot = arena.slot(this.cell.ptr);
      const rc = call(slot, m, ctx, arena);
      this.cell.ptr = arena.read(slot);
      if (rc === LY.ENOTFOUND && allowNotFound) {
        m._tdm_free(m._tdm_errors(ctx)); // a miss is an answer here, not an error
        return rc;
      }
      if (rc !== LY.SUCCESS) throw failure(m, ctx, rc, 'data', what);
      return rc;
    });
  }

  validate(opts?: { configOnly?: boolean }): void {
    this.mutate('validation', (slot, m, ctx) => m._tdm_validate(ctx, slot, opts?.configOnly ? 1 : 0));
  }

  print(opts: PrintOptions): string {
    const ptr = this.live();
    const wd = WITH_DEFAULTS[opts.withDefaults ?? 'explicit'];
    if (wd === undefined) throw new TypeError(`unknown with-defaults mode '${String(opts.withDefaults)}'`);
    const m = this.owner.wasm;
    const text = takeString(m, m._tdm_print(ptr, formatCode(opts.format), wd, opts.pretty ? 1 : 0));
    if (text === undefined) throw failure(m, this.owner.ctxPtr(), LY.EOTHER, 'data', 'printing');
    return text;
  }

  duplicate(): DataTree {
    const ptr = this.live();
    const m = this.owner.wasm;
    return withArena(m, (arena) => {
      const out = arena.slot();
      const rc = m._tdm_dup(ptr, out);
      if (rc) throw failure(m, this.owner.ctxPtr(), rc, 'data', 'duplicating a tree');
      return this.owner.adopt(arena.read(out));
    });
  }

  merge(other: DataTree): void {
    const source = this.peer(other).live();
    this.mutate('merge', (slot, m) => m._tdm_merge(slot, source));
  }

  diff(other: DataTree, format: DataFormat): string {
    const first = this.live();
    const second = this.peer(other).live();
    const m = this.owner.wasm;
    return withArena(m, (arena) => {
      const out = arena.slot();
      const rc = m._tdm_diff(first, second, formatCode(format), out);
      const text = takeString(m, arena.read(out));
      if (rc) throw failure(m, this.owner.ctxPtr(), rc, 'data', 'diff');
      return text ?? '';
    });
  }

  xpath(expr: string): DataNodeView[] {
    requireString('XPath expression', expr);
    const ptr = this.live();
    const m = this.owner.wasm;
    return withArena(m, (arena) => {
      const out = arena.slot();
      const rc = m._tdm_xpath(ptr, arena.str(expr), out);
      const json = takeString(m, arena.read(out));
      if (rc) throw failure(m, this.owner.ctxPtr(), rc, 'data', `XPath '${expr}'`);
      const nodes = JSON.parse(json ?? '[]') as (DataNodeView & { value?: string | null })[];
      for (const n of nodes) if (n.value === null) delete n.value;
      return nodes;
    });
  }

  selectSubtrees(expr: string): DataTree {
    requireString('XPath expression', expr);
    const ptr = this.live();
    const m = this.owner.wasm;
    return withArena(m, (arena) => {
      const out = arena.slot();
      const rc = m._tdm_select(ptr, arena.str(expr), out);
      if (rc) throw failure(m, this.owner.ctxPtr(), rc, 'data', `XPath '${expr}'`);
      return this.owner.adopt(arena.read(out));
    });
  }

  setPath(path: string, value?: string): void {
    requireString('data path', path);
    this.mutate(`setting ${path}`, (slot, m, ctx, arena) => m._tdm_set_path(ctx, slot, arena.str(path), arena.str(value)));
  }

  removePath(path: string): boolean {
    requireString('data path', path);
    return this.mutate(`removing ${path}`, (slot, m, _ctx, arena) => m._tdm_remove_path(slot, arena.str(path)), true) === LY.SUCCESS;
  }

  exists(path: string): boolean {
    requireString('data path', path);
    const ptr = this.live();
    const m = this.owner.wasm;
    return withArena(m, (arena) => {
      const rc = m._tdm_exists(ptr, arena.str(path));
      if (rc === LY.SUCCESS) return true;
      const ctx = this.owner.ctxPtr();
      if (rc === LY.ENOTFOUND) {
        m._tdm_free(m._tdm_errors(ctx)); // lookups that miss may leave a record; not an error here
        return false;
      }
      throw failure(m, ctx, rc, 'data', `looking up ${path}`);
    });
  }

  free(): void {
    if (this.cell.freed) return;
    this.owner.release(this.cell);
  }

  private peer(other: DataTree): WasmDataTree {
    if (!(other instanceof WasmDataTree) || other.owner !== this.owner) {
      throw new YangException([{ message: 'the other tree belongs to a different YANG context', type: 'internal' }]);
    }
    return other;
  }
}
