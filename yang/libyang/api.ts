// The contract of the libyang binding: what the rest of tandem may rely on. The WebAssembly-backed
// implementation lives beside this file; nothing outside yang/ touches wasm memory or pointers.

/** An error from libyang, as the NETCONF layer needs it for an rpc-error. */
export interface YangError {
  message: string;
  /** Data path of the offending node (parsed from libyang's "Data location ..." prose), if any. */
  path?: string;
  /** error-app-tag from a YANG `must`/`error-app-tag`, or libyang's own app-tag. */
  appTag?: string;
  /** Kind of failure: bad syntax of the document, data that breaks the schema, or a bug. */
  type: 'syntax' | 'validation' | 'schema' | 'xpath' | 'internal';
}

/** Thrown by every binding call that fails; `errors[0]` is libyang's first error. */
export class YangException extends Error {
  constructor(public readonly errors: YangError[]) {
    super(errors[0]?.message ?? 'libyang error');
    this.name = 'YangException';
  }
}

export type DataFormat = 'xml' | 'json';
/** RFC 6243 modes, plus 'explicit' (only what was set). */
export type WithDefaults = 'report-all' | 'trim' | 'explicit' | 'report-all-tagged';

/** What a document holds, which decides how libyang parses it. */
export type DataKind = 'config' | 'data' | 'rpc' | 'reply' | 'notification';

export interface ParseOptions {
  format: DataFormat;
  kind: DataKind;
  /** Validate after parsing (config/data only); default true. */
  validate?: boolean;
  /** Reject unknown elements (default true). */
  strict?: boolean;
  /** For kind 'reply': the RPC path the reply answers, e.g. '/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization'. */
  rpcPath?: string;
  /** For rpc/reply/notification: the datastore (e.g. running) that leafrefs, must and when of the operation
   *  refer to; without it such references to existing data fail validation. */
  dependencies?: DataTree;
}

export interface PrintOptions {
  format: DataFormat;
  withDefaults?: WithDefaults; // default 'explicit'
  /** Pretty-print (indentation); default false. */
  pretty?: boolean;
}

export interface ModuleInfo {
  name: string;
  revision?: string;
  namespace: string;
  prefix: string;
  implemented: boolean;
  features: string[];
  submodules: { name: string; revision?: string }[];
}

/** Schema facts about one data node, enough to apply NETCONF edit operations. */
export interface SchemaNodeInfo {
  /** Schema path with module prefixes, e.g. '/tandem-vrf:vrf/interface'. */
  path: string;
  module: string;
  name: string;
  kind: 'container' | 'leaf' | 'leaf-list' | 'list' | 'choice' | 'case' | 'anydata' | 'anyxml' | 'rpc' | 'action' | 'notification';
  config: boolean;
  keys: string[]; // list keys in order
  orderedByUser: boolean;
  presence: boolean;
  defaultValue?: string;
  /** Choices and cases the node sits in below its data parent, outermost first (absent when none). */
  cases?: { choice: string; caseName: string }[];
}

/** A data node of a tree, read-only view. */
export interface DataNodeView {
  path: string; // data path with predicates
  schemaPath: string;
  module: string;
  name: string;
  value?: string; // canonical value of a leaf / leaf-list
  isDefault: boolean;
  /** Metadata (XML attributes of a known annotation), keyed 'module:name', e.g. { 'ietf-netconf:operation': 'delete' }. */
  meta?: Record<string, string>;
}

/** A libyang data tree (possibly empty). Must be freed. */
export interface DataTree {
  /** True when the tree has no nodes. */
  readonly empty: boolean;
  /** Full validation of the datastore (config only when configOnly). Throws YangException. */
  validate(opts?: { configOnly?: boolean }): void;
  print(opts: PrintOptions): string;
  /** Deep copy. */
  duplicate(): DataTree;
  /** Merge `other` into this tree (other is left intact). */
  merge(other: DataTree): void;
  /** libyang diff from this tree to `other`, printed as XML/JSON with yang:operation metadata ('' if equal). */
  diff(other: DataTree, format: DataFormat): string;
  /** Nodes selected by an XPath 1.0 expression (prefixes are module names). */
  xpath(expr: string): DataNodeView[];
  /** A copy of the subtrees selected by XPath (with their parents), as a new tree; for filters. */
  selectSubtrees(expr: string): DataTree;
  /** Create or set a node by data path (lyd_new_path with update semantics). */
  setPath(path: string, value?: string): void;
  /** Remove the node at path (and its subtree). Returns false if absent. */
  removePath(path: string): boolean;
  /** Does a node exist at this data path? */
  exists(path: string): boolean;
  free(): void;
}

/** What a context was built from: enough to build an equal one in another thread. */
export interface YangContextRecipe {
  /** Search directories, ':'-separated. */
  searchDirs: string;
  /** Every module load, in order. */
  loads: { name: string; revision?: string; features?: string[] }[];
}

export interface YangContext {
  /** How to build an equal context in another libyang instance (a worker thread). */
  recipe?(): YangContextRecipe;
  /** Load (and implement) a module found in the search dirs. */
  loadModule(name: string, opts?: { revision?: string; features?: string[] }): ModuleInfo;
  modules(): ModuleInfo[];
  /** The module's source text (format yang or yin) for get-schema. */
  schemaText(name: string, revision: string | undefined, format: 'yang' | 'yin'): string;
  schemaNode(schemaPath: string): SchemaNodeInfo | undefined;
  /** Children of a schema node (top-level nodes of all modules when path is '/'). */
  schemaChildren(schemaPath: string): SchemaNodeInfo[];
  parse(text: string, opts: ParseOptions): DataTree;
  newTree(): DataTree;
  /** ietf-yang-library data (RFC 8525 yang-library plus RFC 7895 modules-state) describing this context's
   *  modules; contentId defaults to libyang's change counter. */
  yangLibraryData?(contentId?: string): DataTree;
  /** Bytes currently allocated on the wasm heap (for leak tests and benchmarks). */
  heapUsed(): number;
  /** Size of the wasm linear memory the context lives in (it only grows; renew() starts a small one). */
  wasmMemoryBytes?(): number;
  /**
   * Moves the context and every live tree into a fresh libyang instance (new, small linear memory),
   * each tree re-parsed from its printed form and checked equal; the trees keep their identity.
   * Nothing changes if any step fails (it throws). Never call it while a tree is being changed.
   */
  renew?(): Promise<LibyangRenewal>;
  free(): void;
}

/** What a renew() did. */
export interface LibyangRenewal {
  trees: number;
  memoryBytesBefore: number;
  memoryBytesAfter: number;
  heapUsedBefore: number;
  heapUsedAfter: number;
  ms: number;
}
