// Messages between YangWorker (main thread) and yang-worker-thread.ts.
import type { DataKind, YangError } from './api.js';

export type YangWorkerRequest =
  /** Parse a document (and validate it when asked); only whether it is acceptable comes back. */
  | { id: number; op: 'check'; text: string; kind: DataKind; validate: boolean }
  /**
   * Validate `nextText` as a whole configuration datastore and diff it against `prevText` (both XML,
   * as ConfigStore prints them): libyang's diff (JSON) and the new configuration's JSON (report-all).
   */
  | { id: number; op: 'commit'; prevText: string; nextText: string }
  /** Drop the configuration kept from the last commit request (it was not committed). */
  | { id: number; op: 'forget' };

export type YangWorkerReply =
  | { id: number; ok: true; diff?: string; json?: string }
  /** libyang refused the document: its errors, exactly as the binding reports them. */
  | { id: number; ok: false; yangErrors: YangError[] }
  | { id: number; ok: false; message: string };
