// Structured logging: JSON lines with levels (pino), one logger per component.
import { pino, type Logger } from 'pino';

const root: Logger = pino({
  level: process.env.TANDEM_LOG_LEVEL ?? 'info',
  base: { app: 'tandem' },
  timestamp: pino.stdTimeFunctions.isoTime,
});

export type { Logger };

/** A child logger whose every line carries `component`. */
export function logger(component: string): Logger {
  return root.child({ component });
}
