// Errors crossing the plane bridge keep their class: a SubsystemApplyError its data path, a
// NetconfError its tag, type and extra (app-tag, path, info), so the rpc-error a client sees is the
// one it would see with everything in one thread. Anything else becomes a plain Error with its message.
import { NetconfError } from '../../core/netconf-error.js';
import { SubsystemApplyError } from '../../core/subsystem.js';

export type WireError =
  | { cls: 'NetconfError'; message: string; tag: NetconfError['tag']; type: NetconfError['type']; extra: NetconfError['extra'] }
  | { cls: 'SubsystemApplyError'; message: string; path?: string }
  | { cls: 'Error'; message: string; name: string };

export function toWire(err: unknown): WireError {
  if (err instanceof NetconfError) return { cls: 'NetconfError', message: err.message, tag: err.tag, type: err.type, extra: { ...err.extra } };
  if (err instanceof SubsystemApplyError) return { cls: 'SubsystemApplyError', message: err.message, ...(err.path !== undefined ? { path: err.path } : {}) };
  if (err instanceof Error) return { cls: 'Error', message: err.message, name: err.name };
  return { cls: 'Error', message: String(err), name: 'Error' };
}

export function fromWire(w: WireError): Error {
  switch (w.cls) {
    case 'NetconfError':
      return new NetconfError(w.tag, w.type, w.message, w.extra);
    case 'SubsystemApplyError':
      return new SubsystemApplyError(w.message, w.path);
    default: {
      const e = new Error(w.message);
      if (w.name && w.name !== 'Error') e.name = w.name;
      return e;
    }
  }
}
