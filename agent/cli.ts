#!/usr/bin/env node
// The `tandem` command. Subcommands are added by the subsystems' issues; each lives in its own file.
import { argv, exit, stderr, stdout } from 'node:process';

const usage = `usage: tandem <command> [options]

commands:
  start        start the agent (NETCONF over SSH)
  help         this text
`;

async function main(args: string[]): Promise<number> {
  const [command] = args;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
      stdout.write(usage);
      return 0;
    default:
      stderr.write(`tandem: unknown command '${command}'\n${usage}`);
      return 2;
  }
}

main(argv.slice(2)).then((code) => exit(code), (err: unknown) => {
  stderr.write(`tandem: ${err instanceof Error ? err.message : String(err)}\n`);
  exit(1);
});
