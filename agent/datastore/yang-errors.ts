// libyang's errors as RFC 6241 rpc-errors: the tag follows RFC 7950 section 15 (must, unique,
// min/max-elements, leafref, mandatory choice) and libyang's message and error-path are kept.
import { NetconfError, type ErrorTag } from '../../core/netconf-error.js';
import { YangException, type YangError } from '../../yang/libyang/api.js';

const TAG_BY_APP_TAG: Record<string, ErrorTag> = {
  'must-violation': 'operation-failed',
  'data-not-unique': 'operation-failed',
  'too-many-elements': 'operation-failed',
  'too-few-elements': 'operation-failed',
  'instance-required': 'data-missing',
  'missing-choice': 'data-missing',
  'missing-instance': 'bad-attribute',
};

const VALUE_PROBLEM = /unsatisfied (range|length|pattern)|invalid|out of|does not satisfy|not a valid/i;

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

export function yangErrorToNetconf(e: YangError): NetconfError {
  const appTag = e.appTag ?? (/must condition/i.test(e.message) ? 'must-violation' : undefined);
  return new NetconfError(tagOf(e), 'application', e.message, { appTag, path: e.path });
}

/** Convert a thrown YangException (or anything) into NetconfErrors; rethrow what is neither. */
export function toNetconfErrors(err: unknown): NetconfError[] {
  if (err instanceof NetconfError) return [err];
  if (err instanceof YangException) return err.errors.length ? err.errors.map(yangErrorToNetconf) : [new NetconfError('operation-failed', 'application', err.message)];
  throw err;
}
