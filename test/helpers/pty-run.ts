// Run a command on a real pseudo-terminal (Python's pty module, Debian's /usr/bin/python3), as a
// person at a terminal would: wait for output matching a pattern, then type or send a signal.
// Everything the terminal shows (the echo included) is returned. Bounded by timeoutMs; the child is
// killed by PID when time is up.
import { existsSync } from 'node:fs';
import { DEBIAN_PYTHON, runPython } from './python-client.js';

export interface PtyStep {
  /** A regular expression the terminal's output must match (searched after the previous step's match). */
  expect: string;
  /** Then type this text... */
  send?: string;
  /** ...or send this signal (e.g. 15 for SIGTERM) to the command. */
  signal?: number;
}

export interface PtyResult {
  /** Everything the terminal showed, decoded as UTF-8. */
  output: string;
  /** Exit status, or -signal. */
  status: number;
  /** Steps whose pattern was seen. */
  stepsDone: number;
  timedOut: boolean;
}

export const PTY_AVAILABLE = existsSync(DEBIAN_PYTHON);

const SCRIPT = `
import json, os, pty, re, select, signal, sys, time
inp = json.load(sys.stdin)
pid, fd = pty.fork()
if pid == 0:
    os.execvpe(inp['argv'][0], inp['argv'], inp['env'])
out = b''
pos = 0
i = 0
steps = inp['steps']
deadline = time.time() + inp['timeoutMs'] / 1000
timed_out = False
while True:
    if i < len(steps):
        m = re.compile(steps[i]['expect']).search(out.decode('utf8', 'replace'), pos)
        if m:
            pos = m.end()
            if steps[i].get('send') is not None:
                os.write(fd, steps[i]['send'].encode())
            if steps[i].get('signal') is not None:
                os.kill(pid, steps[i]['signal'])
            i += 1
            continue
    if time.time() > deadline:
        timed_out = True
        os.kill(pid, signal.SIGKILL)
        break
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            d = os.read(fd, 65536)
        except OSError:
            d = b''
        if not d:
            break
        out += d
_, st = os.waitpid(pid, 0)
status = os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)
print(json.dumps({'output': out.decode('utf8', 'replace'), 'status': status, 'stepsDone': i, 'timedOut': timed_out}))
`;

export async function runOnPty(argv: string[], steps: PtyStep[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<PtyResult> {
  const timeoutMs = opts.timeoutMs ?? 30000;
  const env = { ...process.env, ...opts.env };
  const { result } = await runPython<PtyResult>(SCRIPT, { argv, steps, env, timeoutMs }, timeoutMs + 10000);
  return result;
}
