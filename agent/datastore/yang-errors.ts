// libyang's errors as RFC 6241 rpc-errors: the tag follows RFC 7950 section 15 (must, unique,
// min/max-elements, leafref, mandatory choice). libyang's generic messages are rewritten to say what
// is allowed (range, length, pattern) and lose their "(line N)", which means nothing over NETCONF;
// the path of a missing mandatory node gets the keys of the list entry it is missing from.
import { NetconfError, type ErrorTag } from '../../core/netconf-error.js';
import { YangException, type YangError } from '../../yang/libyang/api.js';
import type { ConfigNode, ConfigRoot } from './config-tree.js';
import type { YangRestrictions } from './yang-restrictions.js';

const TAG_BY_APP_TAG: Record<string, ErrorTag> = {
  'must-violation': 'operation-failed',
  'data-not-unique': 'operation-failed',
  'too-many-elements': 'operation-failed',
  'too-few-elements': 'operation-failed',
  'instance-required': 'data-missing',
  'missing-choice': 'data-missing',
  'missing-instance': 'bad-attribute',
};

const VALUE_PROBLEM = /unsatisfied (range|length|pattern)|invalid|out of|does not satisfy|not a valid|allowed (range|length)|does not match the pattern/i;

function tagOf(e: YangError): ErrorTag {
  if (e.appTag && TAG_BY_APP_TAG[e.appTag]) return TAG_BY_APP_TAG[e.appTag];
  // Any other app-tag comes from a YANG error-app-tag: on a must (operation-failed) unless the
  // message says it is a range, length or pattern restriction of a value.
  if (e.appTag) return VALUE_PROBLEM.test(e.message) ? 'invalid-value' : 'operation-failed';
  if (e.type === 'syntax') return 'invalid-value';
  if (/mandatory/i.test(e.message)) return 'data-missing';
  if (/required instance|instance-required/i.test(e.message)) return 'data-missing';
  if (/must condition|unique|too many|too few/i.test(e.message)) return 'operation-failed';
  if (e.type === 'validation' || VALUE_PROBLEM.test(e.message)) return 'invalid-value';
  return 'operation-failed';
}

/** libyang's message without its "(line N)" and, for range/length/pattern, saying what is allowed. */
export function describeYangError(e: YangError, restrictions?: YangRestrictions): string {
  const message = e.message.replace(/\s*\(line \d+\)\s*$/, '').replace(/\s*\(line \d+\)/g, '');
  const allowed = () => (e.path ? restrictions?.ofPath(e.path) : undefined);
  let m = /^Unsatisfied range - value "(.*)" is out of the allowed range\.?$/s.exec(message);
  if (m) {
    const range = allowed()?.range;
    return `value "${m[1]}" is out of the allowed range${range ? ` ${range}` : ''}`;
  }
  m = /^Unsatisfied length - string "(.*)" length is not allowed\.?$/s.exec(message);
  if (m) {
    const length = allowed()?.length;
    return `string "${m[1]}" has length ${[...m[1]!].length}${length ? `, outside the allowed length ${length}` : ', which is not allowed'}`;
  }
  m = /^Unsatisfied pattern - "(.*)" does not conform to "(.*)"\.?$/s.exec(message);
  if (m) return `value "${m[1]}" does not match the pattern ${m[2]}`;
  m = /^Unsatisfied pattern - "(.*)" does not conform to inverted "(.*)"\.?$/s.exec(message);
  if (m) return `value "${m[1]}" matches the pattern ${m[2]}, which it must not`;
  return message;
}

function quoteKey(v: string): string {
  return v.includes("'") ? `"${v}"` : `'${v}'`;
}

function keyed(node: ConfigNode): string {
  const s = node.schema;
  if (s.kind !== 'list') return '';
  return s.keys.map((k) => `[${k}=${quoteKey(node.children.find((c) => c.schema.name === k)?.value ?? '')}]`).join('');
}

/**
 * The data path, with list keys, of the first entry in `root` that lacks the mandatory node at
 * `path` (libyang gives it without keys: "/m:list/leaf"); undefined when there is none to key.
 */
export function keyedMissingPath(path: string, root: ConfigRoot): string | undefined {
  if (path.includes('[')) return undefined;
  const segments = path.split('/').filter(Boolean);
  if (segments.length < 2) return undefined;
  const missing = segments.at(-1)!.replace(/^[^:]*:/, '');
  const search = (parents: { node: ConfigNode | ConfigRoot; path: string }[], i: number): string | undefined => {
    if (i === segments.length - 1) {
      const lacking = parents.find((p) => !p.node.children.some((c) => c.schema.name === missing));
      return lacking && `${lacking.path}/${segments.at(-1)}`;
    }
    const seg = segments[i]!;
    const colon = seg.indexOf(':');
    const name = colon >= 0 ? seg.slice(colon + 1) : seg;
    const module = colon >= 0 ? seg.slice(0, colon) : undefined;
    const next = parents.flatMap((p) => p.node.children
      .filter((c) => c.schema.name === name && (module === undefined || c.schema.module === module))
      .map((c) => ({ node: c, path: `${p.path}/${seg}${keyed(c)}` })));
    return next.length ? search(next, i + 1) : undefined;
  };
  return search([{ node: root, path: '' }], 0);
}

/** The errors of a YangException raised while validating `root` (if known): messages that say what is allowed, keyed paths. */
export function refineYangException(err: unknown, root: ConfigRoot | undefined, restrictions?: YangRestrictions): unknown {
  if (!(err instanceof YangException)) return err;
  return new YangException(err.errors.map((e) => {
    const refined: YangError = { ...e, message: describeYangError(e, restrictions) };
    if (root && e.path && /^Mandatory node /.test(e.message)) refined.path = keyedMissingPath(e.path, root) ?? e.path;
    return refined;
  }));
}

export function yangErrorToNetconf(e: YangError): NetconfError {
  const appTag = e.appTag ?? (/must condition/i.test(e.message) ? 'must-violation' : undefined);
  return new NetconfError(tagOf(e), 'application', describeYangError(e), { appTag, path: e.path });
}

/** Convert a thrown YangException (or anything) into NetconfErrors; rethrow what is neither. */
export function toNetconfErrors(err: unknown): NetconfError[] {
  if (err instanceof NetconfError) return [err];
  if (err instanceof YangException) return err.errors.length ? err.errors.map(yangErrorToNetconf) : [new NetconfError('operation-failed', 'application', err.message)];
  throw err;
}
