// The layer rule: imports only run down the stack (cli, demo, lab -> agent -> ha -> sync -> fastpath -> core -> yang).
// Tests and benchmarks sit above everything. A relative import whose target is a higher layer is an error.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const RANK = { yang: 0, core: 1, fastpath: 2, sync: 3, ha: 4, agent: 5, cli: 6, demo: 6, lab: 6 };
const root = path.dirname(fileURLToPath(import.meta.url));

function layerOf(file) {
  const top = path.relative(root, file).split(path.sep)[0];
  return top in RANK ? top : undefined;
}

const noUpwardImport = {
  meta: { type: 'problem', docs: { description: 'forbid imports that run back up the layer stack' }, schema: [] },
  create(context) {
    const from = layerOf(context.filename);
    if (from === undefined) return {};
    function check(node) {
      const spec = node.source && node.source.value;
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const to = layerOf(path.resolve(path.dirname(context.filename), spec));
      if (to !== undefined && RANK[to] > RANK[from]) {
        context.report({ node: node.source, message: `${from}/ must not import from ${to}/ (a higher layer): ${spec}` });
      }
    }
    return { ImportDeclaration: check, ExportNamedDeclaration: check, ExportAllDeclaration: check, ImportExpression: check };
  },
};

export const layersPlugin = { rules: { 'no-upward-import': noUpwardImport } };
