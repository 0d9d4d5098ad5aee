// An rpc-error as RFC 6241 Appendix A defines it. Every failure that reaches a client is one of these.

export type ErrorType = 'transport' | 'rpc' | 'protocol' | 'application';
export type ErrorTag =
  | 'in-use' | 'invalid-value' | 'too-big' | 'missing-attribute' | 'bad-attribute' | 'unknown-attribute'
  | 'missing-element' | 'bad-element' | 'unknown-element' | 'unknown-namespace' | 'access-denied'
  | 'lock-denied' | 'resource-denied' | 'rollback-failed' | 'data-exists' | 'data-missing'
  | 'operation-not-supported' | 'operation-failed' | 'partial-operation' | 'malformed-message';

export interface ErrorInfo {
  /** Name of the element in error-info (bad-element, bad-attribute, bad-namespace, session-id, ...). */
  name: string;
  value: string;
  /** Namespace of the element; the NETCONF base namespace when omitted. */
  ns?: string;
}

export class NetconfError extends Error {
  constructor(
    public readonly tag: ErrorTag,
    public readonly type: ErrorType,
    message: string,
    public readonly extra: { appTag?: string; path?: string; info?: ErrorInfo[]; severity?: 'error' | 'warning' } = {},
  ) {
    super(message);
    this.name = 'NetconfError';
  }
}
