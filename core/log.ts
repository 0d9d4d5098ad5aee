// Structured logging (pino), one logger per component. On stdout: JSON lines, or human-readable
// lines when stdout is a terminal. TANDEM_LOG_FORMAT=json|pretty (or `tandem start --log-format`)
// forces either; TANDEM_LOG_LEVEL sets the level (default info).
import { isatty } from 'node:tty';
import { pino, type DestinationStream, type Logger } from 'pino';
import { formatPretty } from './log-pretty.js';

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

// fd 1 itself, not process.stdout: in a worker thread process.stdout is a pipe to the main thread,
// but this logger writes to fd 1 directly, as the main thread's does.
const STDOUT_IS_TERMINAL = isatty(1);

function formatFromEnv(): LogFormat {
  const f = process.env.TANDEM_LOG_FORMAT;
  if (f === 'json' || f === 'pretty') return f;
  return STDOUT_IS_TERMINAL ? 'pretty' : 'json';
}

let format: LogFormat = formatFromEnv();
// Synchronous writes to fd 1, as pino's default destination: nothing is lost at exit.
const out = pino.destination({ dest: 1, sync: true });
const sink: DestinationStream = {
  write(line: string) {
    out.write(format === 'json' ? line : formatPretty(line, STDOUT_IS_TERMINAL));
  },
};

const root: Logger = pino({
  level: process.env.TANDEM_LOG_LEVEL ?? 'info',
  base: { app: 'tandem' },
  timestamp: pino.stdTimeFunctions.isoTime,
}, sink);

export type { Logger };

/** A child logger whose every line carries `component`. */
export function logger(component: string): Logger {
  return root.child({ component });
}

/**
 * Switches every logger to `f` from the next line on. Also sets TANDEM_LOG_FORMAT so that worker
 * threads started afterwards (they have their own loggers) write the same format.
 */
export function setLogFormat(f: LogFormat): void {
  format = f;
  process.env.TANDEM_LOG_FORMAT = f;
}

export function logFormat(): LogFormat {
  return format;
}
