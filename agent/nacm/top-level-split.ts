// Top-level elements of printed data (libyang's output, or tandem's own XML writers: no comments,
// CDATA or processing instructions), found without parsing: the read check parses only the
// subtrees where something may be unreadable, since parsing a large reply costs far more than
// pruning it.

export interface TopLevelChunk {
  /** The element's text, start to end tag. */
  text: string;
  /** Local name and default namespace of the start tag; undefined when it is prefixed or has none. */
  name?: string;
  ns?: string;
}

/** Split `text` into its top-level elements; undefined when it is not the plain form expected. */
export function splitTopLevel(text: string): TopLevelChunk[] | undefined {
  const out: TopLevelChunk[] = [];
  let depth = 0;
  let start = -1;
  let head = '';
  let i = text.indexOf('<');
  if (text.slice(0, i < 0 ? text.length : i).trim() !== '') return undefined;
  while (i >= 0 && i < text.length) {
    const next = text[i + 1];
    if (next === '!' || next === '?') return undefined;
    // The end of the tag, minding quoted attribute values (which may hold '>').
    let j = i + 1;
    let quote = '';
    for (; j < text.length; j++) {
      const c = text[j];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") {
        quote = c;
      } else if (c === '>') {
        break;
      }
    }
    if (j >= text.length) return undefined;
    const tag = text.slice(i, j + 1);
    if (next === '/') {
      depth -= 1;
      if (depth < 0) return undefined;
    } else {
      if (depth === 0) {
        start = i;
        head = tag;
      }
      if (!tag.endsWith('/>')) depth += 1;
    }
    if (depth === 0 && start >= 0) {
      const m = /^<([A-Za-z_][\w.-]*)(?=[\s/>])/.exec(head);
      const ns = /\sxmlns\s*=\s*(?:"([^"]*)"|'([^']*)')/.exec(head);
      out.push({ text: text.slice(start, j + 1), name: m?.[1], ns: ns ? ns[1] ?? ns[2] : undefined });
      start = -1;
    }
    const k = text.indexOf('<', j + 1);
    if (depth === 0 && text.slice(j + 1, k < 0 ? text.length : k).trim() !== '') return undefined;
    i = k;
  }
  return depth === 0 ? out : undefined;
}
