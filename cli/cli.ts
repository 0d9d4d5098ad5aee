#!/usr/bin/env node
// The `tandem` command. Subcommands are added by the subsystems' issues; each lives in its own file.
import { argv, exit, stderr, stdout } from 'node:process';
import { runStart, runUser, START_USAGE, USER_USAGE } from './cli-commands.js';
import { runTraffic, TRAFFIC_USAGE, TrafficUsageError } from './traffic-command.js';

const usage = `usage: tandem <command> [options]

commands:
  start        start the agent (NETCONF over SSH)
  user add     add a NETCONF user (password or SSH public key)
  traffic      start, replay, stop and follow traffic in a running agent (soft engine)
  help         this text

${START_USAGE}
${USER_USAGE}${TRAFFIC_USAGE}`;

async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
      stdout.write(usage);
      return 0;
    case 'start':
      return runStart(rest);
    case 'user':
      return runUser(rest);
    case 'traffic':
      try {
        return await runTraffic(rest);
      } catch (err) {
        if (err instanceof TrafficUsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
          stderr.write(`tandem: ${(err as Error).message}\nusage: ${TRAFFIC_USAGE}`);
          return 2;
        }
        throw err;
      }
    default:
      stderr.write(`tandem: unknown command '${command}'\n${usage}`);
      return 2;
  }
}

main(argv.slice(2)).then((code) => {
  // `start` keeps running until a signal; every other command exits with its status.
  if (code >= 0) exit(code);
}, (err: unknown) => {
  stderr.write(`tandem: ${err instanceof Error ? err.message : String(err)}\n`);
  exit(1);
});
