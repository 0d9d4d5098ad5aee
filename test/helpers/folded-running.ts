// running.xml once the agent has folded its journal into it. A small datastore's commits are saved
// as journal records first (one disk flush before <ok/>) and folded into running.xml when commits
// pause (agent/datastore/running-journal.ts); tests that read running.xml read it then.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Records in the state directory's running.journal (its first line is the header; a record is a JSON array, its answered marker an object). */
export function journalRecords(stateDir: string): number {
  const journal = path.join(stateDir, 'running.journal');
  if (!existsSync(journal)) return 0;
  return readFileSync(journal, 'utf8').split('\n').slice(1).filter((l) => l.startsWith('[')).length;
}

/** running.xml's text once the journal holds no record (polled; throws after `timeoutMs`). */
export async function foldedRunningXml(stateDir: string, timeoutMs = 10000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = journalRecords(stateDir);
    if (records === 0) return readFileSync(path.join(stateDir, 'running.xml'), 'utf8');
    if (Date.now() > deadline) throw new Error(`running.journal still holds ${records} record(s) after ${timeoutMs} ms: not folded into running.xml`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
