// The libyang tree of a large configuration built on the main thread in slices: the configuration
// is printed as XML pieces of at most `maxChars` (a list with 100,000 rules is cut between its
// entries, each piece wrapped in the entry's ancestors with their keys), each piece is parsed
// without validation and merged into the tree, and the event loop runs between two pieces. One
// parse of a 13 MB datastore blocks the thread for seconds; this blocks it for one piece at a
// time. The result is validated once at the end (which adds the defaults, as a whole parse does).
// Only for configurations already known valid (the libyang worker validated the same text): the
// errors of an invalid one are the whole parse's to give.
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { DataTree, YangContext } from '../../yang/libyang/api.js';
import { configToXml, nodeXml, startTag, type ConfigNode, type ConfigRoot } from './config-tree.js';

type NsOf = (module: string) => string;

/** Pieces of XML whose merge is the configuration; none longer than maxChars unless one leaf is. */
export function xmlSlices(root: ConfigRoot, nsOf: NsOf, maxChars: number): string[] {
  const out: string[] = [];
  sliceSiblings(root.children, undefined, nsOf, maxChars, '', '', out);
  return out;
}

function isInner(n: ConfigNode): boolean {
  return n.schema.kind === 'container' || n.schema.kind === 'list';
}

/** Siblings under a parent whose start (with its ancestors) is `head` and end is `tail`. */
function sliceSiblings(nodes: ConfigNode[], parentModule: string | undefined, nsOf: NsOf, max: number, head: string, tail: string, out: string[]): void {
  let group = '';
  for (const c of nodes) {
    const text = nodeXml(c, parentModule, nsOf);
    if (text.length > max && isInner(c)) {
      if (group) out.push(head + group + tail);
      group = '';
      sliceNode(c, parentModule, nsOf, max, head, tail, out);
      continue;
    }
    if (group && group.length + text.length > max) {
      out.push(head + group + tail);
      group = '';
    }
    group += text;
  }
  if (group) out.push(head + group + tail);
}

/** One container or list entry too large for a piece: its children are cut, it wraps each piece. */
function sliceNode(node: ConfigNode, parentModule: string | undefined, nsOf: NsOf, max: number, head: string, tail: string, out: string[]): void {
  const s = node.schema;
  const keys = s.kind === 'list' ? s.keys.map((k) => node.children.find((c) => c.schema.name === k)).filter((k): k is ConfigNode => !!k) : [];
  const rest = node.children.filter((c) => !keys.includes(c));
  if (rest.length === 0) {
    out.push(head + nodeXml(node, parentModule, nsOf) + tail);
    return;
  }
  const open = startTag(node, parentModule, nsOf) + keys.map((k) => nodeXml(k, s.module, nsOf)).join('');
  sliceSiblings(rest, s.module, nsOf, max, head + open, `</${s.name}>` + tail, out);
}

/** Nodes printed between two turns of the event loop by xmlInSlices. */
const XML_SLICE_NODES = 5000;

/** Post-order walk of the inner nodes (children before their parent), pausing every XML_SLICE_NODES. */
function* printInnerNodes(nodes: ConfigNode[], parentModule: string | undefined, nsOf: NsOf, count: { n: number }): Generator<void, void, void> {
  for (const node of nodes) {
    if (!isInner(node)) continue;
    yield* printInnerNodes(node.children, node.schema.module, nsOf, count);
    nodeXml(node, parentModule, nsOf); // cached: the parent's print concatenates it
    if (++count.n % XML_SLICE_NODES === 0) yield;
  }
}

/**
 * configToXml of a large configuration, the event loop running while it is printed: every inner
 * node is printed (and cached) bottom-up in slices, then the whole is the concatenation of cached
 * texts. Nodes printed before (unchanged subtrees of the previous configuration) cost nothing.
 */
export async function xmlInSlices(root: ConfigRoot, nsOf: NsOf): Promise<string> {
  const walk = printInnerNodes(root.children, undefined, nsOf, { n: 0 });
  while (!walk.next().done) await nextTurn();
  return configToXml(root, nsOf);
}

export interface SlicedTreeOptions {
  /** Largest piece, in characters (default 64 KiB: about 500 firewall rules, tens of ms of parse and merge). */
  maxChars?: number;
  /** Told how long the final validation took (ms) and how many pieces there were. */
  onValidated?: (ms: number, pieces: number) => void;
}

/**
 * The configuration's libyang tree, validated, built in pieces with the event loop running between
 * them. Throws YangException as libyang does; the partial tree is freed then.
 */
export async function slicedTree(yang: YangContext, root: ConfigRoot, nsOf: NsOf, opts: SlicedTreeOptions = {}): Promise<DataTree> {
  const slices = xmlSlices(root, nsOf, opts.maxChars ?? 64 * 1024);
  let tree: DataTree | undefined;
  try {
    for (const text of slices) {
      const piece = yang.parse(text, { format: 'xml', kind: 'config', validate: false });
      if (!tree) {
        tree = piece;
      } else {
        try {
          tree.merge(piece);
        } finally {
          piece.free();
        }
      }
      await nextTurn();
    }
    tree ??= yang.newTree();
    const started = performance.now();
    tree.validate({ configOnly: true });
    opts.onValidated?.(performance.now() - started, slices.length);
    return tree;
  } catch (err) {
    tree?.free();
    throw err;
  }
}
