// Schema lookups that the edit and filter code needs, cached: namespace <-> module, and the data
// children of a schema node with choice/case made transparent (they never appear in XML data).
import type { ModuleInfo, SchemaNodeInfo, YangContext } from '../../yang/libyang/api.js';

/** A data node's schema, plus the choice/case chain it sits under (for case exclusion). */
export interface DataSchemaNode extends SchemaNodeInfo {
  /** Pairs of (choice path, case path) from the outermost choice inward. */
  choiceCases: { choice: string; caseName: string }[];
}

export class SchemaIndex {
  private readonly byNs = new Map<string, ModuleInfo>();
  private readonly byName = new Map<string, ModuleInfo>();
  private readonly childCache = new Map<string, DataSchemaNode[]>();

  constructor(private readonly yang: YangContext) {
    this.refreshModules();
  }

  refreshModules(): void {
    this.byNs.clear();
    this.byName.clear();
    for (const m of this.yang.modules()) {
      this.byName.set(m.name, m);
      if (!this.byNs.has(m.namespace) || m.implemented) this.byNs.set(m.namespace, m);
    }
    this.childCache.clear();
  }

  moduleByNamespace(ns: string): ModuleInfo | undefined {
    return this.byNs.get(ns);
  }

  module(name: string): ModuleInfo | undefined {
    return this.byName.get(name);
  }

  namespaceOf(moduleName: string): string {
    const m = this.byName.get(moduleName);
    if (!m) throw new Error(`unknown module ${moduleName}`);
    return m.namespace;
  }

  /** Data children of a schema node ('/' for the top level), choices and choiceCases flattened. */
  dataChildren(schemaPath: string): DataSchemaNode[] {
    let cached = this.childCache.get(schemaPath);
    if (!cached) {
      cached = [];
      this.collect(schemaPath, [], cached);
      this.childCache.set(schemaPath, cached);
    }
    return cached;
  }

  /** The data child called `name` in namespace `ns` under `schemaPath`. */
  findChild(schemaPath: string, ns: string, name: string): DataSchemaNode | undefined {
    const mod = this.byNs.get(ns);
    if (!mod) return undefined;
    return this.dataChildren(schemaPath).find((c) => c.name === name && c.module === mod.name);
  }

  private collect(path: string, choiceCases: DataSchemaNode['choiceCases'], out: DataSchemaNode[]): void {
    for (const c of this.yang.schemaChildren(path)) {
      if (c.kind === 'choice') {
        for (const cs of this.yang.schemaChildren(c.path)) {
          if (cs.kind === 'case') this.collect(cs.path, [...choiceCases, { choice: c.path, caseName: cs.name }], out);
          // A shorthand case (a data node directly under the choice) is its own case.
          else out.push({ ...cs, choiceCases: [...choiceCases, { choice: c.path, caseName: cs.name }] });
        }
      } else if (c.kind === 'case') {
        this.collect(c.path, choiceCases, out);
      } else if (c.kind !== 'rpc' && c.kind !== 'action' && c.kind !== 'notification') {
        // The binding may flatten choices itself and say which cases a node sits in.
        const own = (c as { cases?: { choice: string; caseName: string }[] }).cases ?? [];
        out.push({ ...c, choiceCases: [...choiceCases, ...own] });
      }
    }
  }
}
