// A data node's instance path as NACM needs it: every step with its module, list entries with their
// key values. Printed with module names as prefixes (the form libyang and tandem's error-paths use).

export interface PathStep {
  module: string;
  name: string;
  /** List keys (name, value) of this entry, in key order. */
  keys?: [string, string][];
}

export type DataPath = readonly PathStep[];

function quoted(v: string): string {
  return v.includes("'") ? `"${v}"` : `'${v}'`;
}

/** "/tandem-vrf:vrf[name='main']/tandem-ha-fp-conntrack:ha-fp-conntrack/shared-secret" */
export function pathText(path: DataPath): string {
  let out = '';
  let module: string | undefined;
  for (const s of path) {
    out += `/${s.module !== module ? `${s.module}:` : ''}${s.name}`;
    for (const [k, v] of s.keys ?? []) out += `[${k}=${quoted(v)}]`;
    module = s.module;
  }
  return out || '/';
}

/** The schema identity of a path: "m:a/m:b" (no keys), the key of the default-deny index. */
export function schemaKey(path: DataPath): string {
  return path.map((s) => `${s.module}:${s.name}`).join('/');
}
