// The password of `tandem user add --password-stdin`. From a pipe: the first line, as
// `echo pw | tandem user add ...` sends it. On a terminal: a prompt on stderr, no echo (raw mode,
// the characters are read one by one), asked twice so that a typo is not stored.
import { stderr, stdin } from 'node:process';

/** The user pressed Ctrl-C or Ctrl-D, or the two entries differ: nothing is stored. */
export class PasswordPromptError extends Error {}

async function readAll(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** One line from the terminal without echo; Backspace edits, Ctrl-C / Ctrl-D abort. */
function readHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\x03') return finish(new PasswordPromptError('interrupted'));
        if (ch === '\x04') return finish(typed.length ? undefined : new PasswordPromptError('no password entered (end of input)'));
        if (ch === '\x7f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
        else if (ch === '\x15') typed = ''; // Ctrl-U: erase the line, as a terminal would
        else if (ch >= ' ') typed += ch;
      }
    };
    // Raw mode before the prompt: what is typed once the prompt shows is never echoed, and Ctrl-C
    // arrives as a character (we restore the terminal) rather than as SIGINT.
    stdin.setEncoding('utf8');
    stdin.setRawMode(true);
    stderr.write(prompt);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** The password for user `name`: prompted (twice, not echoed) on a terminal, else the first line of stdin. */
export async function readPassword(name: string): Promise<string> {
  if (!stdin.isTTY) return (await readAll()).replace(/\r?\n$/, '');
  const first = await readHidden(`Password for ${name}: `);
  if (first.length === 0) return first;
  const again = await readHidden(`Retype password for ${name}: `);
  if (again !== first) throw new PasswordPromptError('the two passwords differ; nothing stored');
  return first;
}
