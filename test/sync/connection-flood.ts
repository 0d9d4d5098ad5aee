// A host flooding a sync listener, in its own process (as an attacker's host would be): keeps
// `parallel` connections from `from` to host:port open, reopening each as soon as it is closed,
// until `total` were opened or `maxMs` passed. Prints {opened, closedByServer} as JSON and exits.
//   node connection-flood.js HOST PORT FROM PARALLEL TOTAL MAX_MS
import { connect } from 'node:net';

const [host = '127.0.0.2', port = '0', from = '127.0.0.3', parallel = '600', total = '3000', maxMs = '5000'] = process.argv.slice(2);
let opened = 0;
let closedByServer = 0;
const end = Date.now() + Number(maxMs);

function one(): Promise<void> {
  return new Promise((resolve) => {
    opened++;
    const s = connect({ host, port: Number(port), localAddress: from });
    const t = setTimeout(() => s.destroy(), Math.max(1, end - Date.now()));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      if (Date.now() < end) closedByServer++;
      resolve();
    });
  });
}

async function worker(): Promise<void> {
  while (opened < Number(total) && Date.now() < end) await one();
}

process.send?.({ ready: true });
await Promise.all(Array.from({ length: Number(parallel) }, worker));
process.send?.({ opened, closedByServer });
process.disconnect?.();
