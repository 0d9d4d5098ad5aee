// The range, length and patterns that restrict a leaf's type, read from the YIN form of the modules
// (the binding's schemaText): libyang's own messages ("Unsatisfied range - value "86401" is out of
// the allowed range.") do not say what is allowed, and its compiled types are not exposed.
// A leaf is found by its schema path: the leaf statements of its module with that name, the one
// whose data-node ancestors (through groupings and augments) best match the path; its type is
// followed through typedefs (local or imported). The most derived restriction of each kind wins.
import type { YangContext } from '../../yang/libyang/api.js';
import { parseXml } from '../netconf/xml-parser.js';
import type { XmlElement } from '../netconf/xml-element.js';

export interface TypeRestriction {
  /** The type as written (e.g. 'tt:timeout-seconds', 'uint32'). */
  type: string;
  range?: string;
  length?: string;
  patterns: string[];
}

const BUILTIN_RANGES: Record<string, string> = {
  int8: '-128..127', int16: '-32768..32767', int32: '-2147483648..2147483647', int64: '-9223372036854775808..9223372036854775807',
  uint8: '0..255', uint16: '0..65535', uint32: '0..4294967295', uint64: '0..18446744073709551615',
};
const DATA_NODES = new Set(['container', 'list', 'leaf', 'leaf-list', 'anydata', 'anyxml', 'notification', 'rpc', 'action', 'input', 'output']);

const arg = (el: XmlElement, name: string) => el.attrs.find((a) => a.name === name)?.value;

/** Local names of the data nodes along a schema path or augment target ('/a:x/b:y' -> ['x', 'y']). */
export function pathNames(path: string): string[] {
  return path.replace(/\[[^\]]*\]/g, '').split('/').filter(Boolean).map((s) => s.slice(s.indexOf(':') + 1));
}

export class YangRestrictions {
  private readonly yin = new Map<string, XmlElement | undefined>();
  private readonly cache = new Map<string, TypeRestriction | undefined>();

  constructor(private readonly yang: YangContext) {}

  private module(name: string): XmlElement | undefined {
    if (!this.yin.has(name)) {
      let root: XmlElement | undefined;
      try {
        root = parseXml(this.yang.schemaText(name, undefined, 'yin'));
      } catch {
        root = undefined;
      }
      this.yin.set(name, root);
    }
    return this.yin.get(name);
  }

  /** The restrictions of the leaf at a data or schema path such as "/m:a[k='1']/b/c"; undefined if not found. */
  ofPath(path: string): TypeRestriction | undefined {
    const key = path.replace(/\[[^\]]*\]/g, '');
    if (!this.cache.has(key)) this.cache.set(key, this.resolve(key));
    return this.cache.get(key);
  }

  private resolve(schemaPath: string): TypeRestriction | undefined {
    const prefixed = schemaPath.split('/').filter(Boolean).filter((s) => s.includes(':'));
    const moduleName = prefixed.at(-1)?.split(':')[0];
    const names = pathNames(schemaPath);
    const leafName = names.at(-1);
    if (!moduleName || !leafName) return undefined;
    const mod = this.module(moduleName);
    if (!mod) return undefined;
    // Every leaf statement with that name, scored by how many of the path's names its ancestors match.
    let best: { el: XmlElement; score: number } | undefined;
    let tie = false;
    const walk = (el: XmlElement, chain: string[]) => {
      for (const c of el.children) {
        let next = chain;
        if (c.name === 'augment') next = pathNames(arg(c, 'target-node') ?? '');
        else if (c.name === 'grouping') next = [];
        else if (DATA_NODES.has(c.name) && c.name !== 'input' && c.name !== 'output') next = [...chain, arg(c, 'name') ?? ''];
        if ((c.name === 'leaf' || c.name === 'leaf-list') && arg(c, 'name') === leafName) {
          let score = 0;
          while (score < next.length && next[next.length - 1 - score] === names[names.length - 1 - score]) score++;
          if (!best || score > best.score) {
            best = { el: c, score };
            tie = false;
          } else if (score === best.score) tie = true;
        }
        walk(c, next);
      }
    };
    walk(mod, []);
    if (!best || tie) return undefined;
    const type = (best as { el: XmlElement }).el.children.find((c) => c.name === 'type');
    return type ? this.restrictionOf(type, moduleName, 0) : undefined;
  }

  /** Restrictions of a `type` statement of `moduleName`, following its typedef chain. */
  private restrictionOf(type: XmlElement, moduleName: string, depth: number): TypeRestriction {
    const name = arg(type, 'name') ?? '';
    const sub = (kind: string) => {
      const el = type.children.find((c) => c.name === kind);
      return el && arg(el, 'value');
    };
    const patterns = type.children.filter((c) => c.name === 'pattern').map((c) => arg(c, 'value') ?? '');
    let base: TypeRestriction | undefined;
    const def = depth < 8 ? this.typedef(name, moduleName) : undefined;
    if (def) base = this.restrictionOf(def.type, def.module, depth + 1);
    else if (BUILTIN_RANGES[name]) base = { type: name, range: BUILTIN_RANGES[name], patterns: [] };
    return {
      type: name,
      range: sub('range') ?? base?.range,
      length: sub('length') ?? base?.length,
      // Patterns of a derived type add to those of its base: a value must match them all.
      patterns: [...(base?.patterns ?? []), ...patterns],
    };
  }

  private typedef(name: string, moduleName: string): { type: XmlElement; module: string } | undefined {
    const mod = this.module(moduleName);
    if (!mod) return undefined;
    let target = moduleName;
    let local = name;
    const colon = name.indexOf(':');
    if (colon >= 0) {
      const prefix = name.slice(0, colon);
      local = name.slice(colon + 1);
      const own = mod.children.find((c) => c.name === 'prefix');
      if (arg(own ?? mod, 'value') !== prefix) {
        const imp = mod.children.find((c) => c.name === 'import' && c.children.some((p) => p.name === 'prefix' && arg(p, 'value') === prefix));
        if (!imp) return undefined;
        target = arg(imp, 'module') ?? '';
      }
    }
    const find = (el: XmlElement): XmlElement | undefined => {
      for (const c of el.children) {
        if (c.name === 'typedef' && arg(c, 'name') === local) return c;
        const inner = find(c);
        if (inner) return inner;
      }
      return undefined;
    };
    const root = this.module(target);
    const def = root && find(root);
    const type = def?.children.find((c) => c.name === 'type');
    return type ? { type, module: target } : undefined;
  }
}
