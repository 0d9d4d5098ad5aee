// Safe XML parsing of one NETCONF message into an XmlElement tree. saxes is namespace-aware and
// never fetches a DTD nor expands entities other than the five predefined ones; a DOCTYPE is refused
// outright, and size, nesting depth and element count are bounded so that a hostile peer cannot
// make one message cost more than the limits allow.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { NetconfError } from '../../core/netconf-error.js';
import type { XmlAttribute, XmlElement } from './xml-element.js';

export interface XmlLimits {
  /** Largest message accepted, in characters of the decoded text. */
  maxSize: number;
  /** Deepest element nesting (the root is depth 1). */
  maxDepth: number;
  /** Most elements in one message. */
  maxElements: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = {
  // Five times the largest configuration of the benchmarks (3.2 MB): a message is parsed on the
  // agent's one thread, and a 55 MB one held every session for 40 s before it was rejected.
  maxSize: 16 * 1024 * 1024,
  maxDepth: 128,
  maxElements: 2_000_000,
};

const XMLNS_URI = 'http://www.w3.org/2000/xmlns/';

/**
 * Why a message could not be parsed. `root` is the root element as far as it was read (name,
 * namespace and attributes, no children) so the caller can still echo the rpc's message-id.
 */
export class XmlParseError extends NetconfError {
  constructor(
    tag: 'malformed-message' | 'too-big',
    message: string,
    public readonly root: XmlElement | undefined,
  ) {
    super(tag, 'rpc', message);
    this.name = 'XmlParseError';
  }
}

interface TreeBuilder {
  parser: SaxesParser<{ xmlns: true; position: true }>;
  root: () => XmlElement | undefined;
  /** Ready for the next document, under these limits (after a document that parsed without error). */
  reset(lim: XmlLimits): void;
}

/** A saxes parser building the XmlElement tree of one document within limits. */
function treeBuilder(limits: XmlLimits): TreeBuilder {
  const parser = new SaxesParser({ xmlns: true, position: true });
  let lim = limits;
  let stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let elements = 0;
  let failure: XmlParseError | undefined;

  const fail = (tag: 'malformed-message' | 'too-big', message: string): never => {
    failure ??= new XmlParseError(tag, message, root);
    throw failure;
  };

  parser.on('doctype', () => fail('malformed-message', 'a DOCTYPE is not allowed in a NETCONF message'));
  parser.on('opentagstart', () => {
    elements += 1;
    if (elements > lim.maxElements) fail('too-big', `message has more than ${lim.maxElements} elements`);
    if (stack.length + 1 > lim.maxDepth) fail('too-big', `element nesting deeper than ${lim.maxDepth} levels`);
  });
  parser.on('opentag', (tag: SaxesTagNS) => {
    const parent = stack[stack.length - 1];
    // Elements that declare no namespace share their parent's scope object (read-only by contract).
    let nsScope: Record<string, string> = parent?.nsScope ?? {};
    let ownScope = !parent;
    const attrs: XmlAttribute[] = [];
    for (const name in tag.attributes) {
      const a = tag.attributes[name]!;
      if (a.uri === XMLNS_URI || a.name === 'xmlns') {
        if (!ownScope) {
          nsScope = { ...nsScope };
          ownScope = true;
        }
        nsScope[a.name === 'xmlns' ? '' : a.local] = a.value;
      } else {
        attrs.push({ name: a.local, ns: a.uri ?? '', prefix: a.prefix, value: a.value });
      }
    }
    const el: XmlElement = { name: tag.local, ns: tag.uri ?? '', prefix: tag.prefix, attrs, children: [], text: '', nsScope };
    if (parent) parent.children.push(el);
    else root = el;
    stack.push(el);
  });
  parser.on('closetag', () => {
    stack.pop();
  });
  const onText = (t: string) => {
    const top = stack[stack.length - 1];
    if (top) top.text += t;
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('error', (err: Error) => fail('malformed-message', `malformed XML: ${err.message}`));
  const reset = (next: XmlLimits) => {
    lim = next;
    stack = [];
    root = undefined;
    elements = 0;
    failure = undefined;
  };
  return { parser, root: () => root, reset };
}

/**
 * One builder kept for the next parseXml: setting up a saxes parser and its handlers costs about a
 * fifth of a small rpc's parse (5 of 21-26 µs, measured in a loop of 250,000 parses), and every RPC
 * is parsed. Only a builder whose document parsed cleanly comes back (saxes resets itself at
 * close); one that threw is dropped. One for the process, not per session: parseXml is
 * synchronous, so no two documents ever share it.
 */
let spareBuilder: TreeBuilder | undefined;

function takeBuilder(lim: XmlLimits): TreeBuilder {
  const b = spareBuilder;
  if (!b) return treeBuilder(lim);
  spareBuilder = undefined;
  b.reset(lim);
  return b;
}

function checkSize(text: string, lim: XmlLimits): void {
  if (text.length > lim.maxSize) {
    throw new XmlParseError('too-big', `message of ${text.length} characters exceeds the limit of ${lim.maxSize}`, undefined);
  }
}

/** Whitespace (or a BOM) left between framed messages is not part of the document. */
function documentText(text: string): string {
  return text.replace(/^[\uFEFF\s]+/, '');
}

function parseFailure(err: unknown, root: XmlElement | undefined): XmlParseError {
  if (err instanceof XmlParseError) return err;
  return new XmlParseError('malformed-message', `malformed XML: ${err instanceof Error ? err.message : String(err)}`, root);
}

function finished(root: XmlElement | undefined): XmlElement {
  if (!root) throw new XmlParseError('malformed-message', 'message has no root element', undefined);
  return root;
}

/** Parse one complete XML document. Throws XmlParseError (a NetconfError) when it is not acceptable. */
export function parseXml(text: string, limits: Partial<XmlLimits> = {}): XmlElement {
  const lim: XmlLimits = { ...DEFAULT_XML_LIMITS, ...limits };
  checkSize(text, lim);
  const b = takeBuilder(lim);
  try {
    b.parser.write(documentText(text)).close();
  } catch (err) {
    throw parseFailure(err, b.root());
  }
  const root = finished(b.root());
  b.reset(lim); // holds no reference to this document
  spareBuilder = b;
  return root;
}

/** Characters parsed between two turns of the event loop by parseXmlInSlices (a few ms of work). */
export const XML_SLICE_CHARS = 64 * 1024;

/**
 * parseXml for a large message: the same parse and the same errors, fed to saxes in slices with the
 * event loop running between them, so a 13 MB edit-config does not stop the other sessions (and
 * SSH) for the seconds its parse takes.
 */
export async function parseXmlInSlices(text: string, limits: Partial<XmlLimits> = {}, sliceChars = XML_SLICE_CHARS): Promise<XmlElement> {
  const lim: XmlLimits = { ...DEFAULT_XML_LIMITS, ...limits };
  checkSize(text, lim);
  const b = treeBuilder(lim);
  const doc = documentText(text);
  try {
    let at = 0;
    while (at < doc.length) {
      // A slice never ends inside a surrogate pair (saxes reads code points).
      let end = Math.min(doc.length, at + sliceChars);
      const last = doc.charCodeAt(end - 1);
      if (end < doc.length && last >= 0xd800 && last <= 0xdbff) end += 1;
      b.parser.write(doc.slice(at, end));
      at = end;
      if (at < doc.length) await nextTurn();
    }
    b.parser.close();
  } catch (err) {
    throw parseFailure(err, b.root());
  }
  return finished(b.root());
}

/**
 * The root element's start tag of a message that will not be parsed in full (oversized, or only
 * its head kept): enough to echo the rpc's attributes in an rpc-error. Undefined if unreadable.
 */
export function peekRoot(head: string): XmlElement | undefined {
  let root: XmlElement | undefined;
  try {
    parseXml(head, { maxElements: 1, maxSize: head.length + 1 });
  } catch (err) {
    if (err instanceof XmlParseError) root = err.root;
    return root ? { ...root, children: [], text: '' } : undefined;
  }
  return undefined;
}
