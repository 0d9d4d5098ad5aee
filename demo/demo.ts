// `npm run demo`: two `tandem start` processes on loopback (ha1 master, ha2 backup), configured and
// driven over NETCONF; traffic on ha1, conntracks and counters on ha2, a failover by editing the HA
// group, and a summary. Exits 1 when the connections did not continue through the new master.
// The agents log at warn level unless TANDEM_LOG_LEVEL says otherwise.
const { runDemo } = await import('./demo-run.js');
try {
  await runDemo((line) => process.stdout.write(`${line}\n`));
  process.exit(0);
} catch (err) {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
