// `npm run demo`: two nodes on loopback (ha1 on 127.0.0.1, ha2 on 127.0.0.2), each a soft engine
// plus its sync; traffic on ha1, synchronisation, a manual synchronisation, a planned failover,
// and a summary. JSON logs (stdout, pino) only at error level unless TANDEM_LOG_LEVEL says otherwise.
process.env.TANDEM_LOG_LEVEL ??= 'error';
const { runDemo } = await import('./demo-run.js');
try {
  await runDemo((line) => process.stdout.write(`${line}\n`));
  process.exit(0);
} catch (err) {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
}
