// The tandem modules as YIN element trees (printed by yanglint, read with saxes), so tests can check
// modelling rules statement by statement instead of grepping YANG text.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { SaxesParser } from 'saxes';
import { yanglintSearchArgs } from './yang-validators.js';

export interface YinElement {
  name: string; // statement keyword, e.g. 'leaf'
  attrs: Record<string, string>;
  children: YinElement[];
  text: string; // character data (for <value>, <text>)
}

export function loadYin(moduleFile: string): YinElement {
  const r = spawnSync('yanglint', [...yanglintSearchArgs, '-f', 'yin', moduleFile], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`yanglint -f yin ${path.basename(moduleFile)}: ${r.stderr}`);
  return parseYin(r.stdout);
}

export function parseYin(xml: string): YinElement {
  const parser = new SaxesParser({ xmlns: true });
  const stack: YinElement[] = [];
  let root: YinElement | undefined;
  parser.on('opentag', (tag) => {
    const attrs: Record<string, string> = {};
    for (const [k, v] of Object.entries(tag.attributes)) attrs[k] = typeof v === 'string' ? v : v.value;
    const el: YinElement = { name: tag.local ?? tag.name, attrs, children: [], text: '' };
    if (stack.length > 0) stack[stack.length - 1].children.push(el);
    else root = el;
    stack.push(el);
  });
  parser.on('text', (t) => {
    if (stack.length > 0) stack[stack.length - 1].text += t;
  });
  parser.on('closetag', () => {
    stack.pop();
  });
  parser.write(xml).close();
  if (!root) throw new Error('empty YIN document');
  return root;
}

/** Every element of the tree, depth first, with its ancestors (nearest last). */
export function* walk(el: YinElement, ancestors: YinElement[] = []): Generator<[YinElement, YinElement[]]> {
  yield [el, ancestors];
  for (const c of el.children) yield* walk(c, [...ancestors, el]);
}

export function child(el: YinElement, name: string): YinElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** A readable location for messages: module:leaf/...; */
export function locate(el: YinElement, ancestors: YinElement[]): string {
  return [...ancestors, el].map((e) => (e.attrs.name ? `${e.name} ${e.attrs.name}` : e.attrs['target-node'] ? `augment ${e.attrs['target-node']}` : e.name)).join(' / ');
}

/** error-message text -> error-app-tag of every `must` of the modules. */
export function mustTags(modules: YinElement[]): Map<string, string | undefined> {
  const tags = new Map<string, string | undefined>();
  for (const m of modules) {
    for (const [el] of walk(m)) {
      if (el.name !== 'must') continue;
      const message = child(el, 'error-message');
      const value = message && child(message, 'value');
      if (value) tags.set(value.text.trim(), child(el, 'error-app-tag')?.attrs.value);
    }
  }
  return tags;
}
