// Human-readable rendering of one pino JSON line for a terminal:
//   09:59:15.123 INFO  agent: NETCONF over SSH listening host=127.0.0.1 port=8830
// with an error's stack on the lines below. Colours only when asked (stdout is a terminal).

const LEVELS: Record<number, { name: string; colour: string }> = {
  10: { name: 'TRACE', colour: '\x1b[90m' },
  20: { name: 'DEBUG', colour: '\x1b[34m' },
  30: { name: 'INFO', colour: '\x1b[32m' },
  40: { name: 'WARN', colour: '\x1b[33m' },
  50: { name: 'ERROR', colour: '\x1b[31m' },
  60: { name: 'FATAL', colour: '\x1b[35m' },
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields shown in the line's head, not as key=value. */
const HEAD = new Set(['level', 'time', 'app', 'component', 'msg', 'pid', 'hostname']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** The pretty form of `line` (a JSON object and a newline); a line that is not JSON passes unchanged. */
export function formatPretty(line: string, colours: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (rec === null || typeof rec !== 'object') return line;
  const level = LEVELS[Number(rec.level)] ?? { name: String(rec.level).toUpperCase(), colour: '' };
  const time = typeof rec.time === 'string' ? (/T(\d\d:\d\d:\d\d(?:\.\d+)?)/.exec(rec.time)?.[1] ?? rec.time) : '';
  const paint = (s: string, c: string) => (colours && c ? `${c}${s}${RESET}` : s);
  const head = `${paint(time, DIM)} ${paint(level.name.padEnd(5), level.colour)} ${rec.component === undefined ? '' : `${String(rec.component)}: `}`;
  const fields: string[] = [];
  let stack = '';
  for (const [k, v] of Object.entries(rec)) {
    if (HEAD.has(k)) continue;
    if ((k === 'err' || k === 'error') && v && typeof v === 'object' && typeof (v as { stack?: unknown }).stack === 'string') {
      const e = v as { message?: string; stack: string };
      fields.push(`${k}=${value(e.message ?? '')}`);
      stack += `\n${e.stack.split('\n').map((l) => `    ${l}`).join('\n')}`;
      continue;
    }
    fields.push(paint(`${k}=`, DIM) + value(v));
  }
  return `${head}${typeof rec.msg === 'string' ? rec.msg : ''}${fields.length ? ` ${fields.join(' ')}` : ''}${stack}\n`;
}
