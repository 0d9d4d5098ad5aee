// Worker of test/linux/netlink-port.test.ts: opens a netfilter socket in the namespace it is given
// (its copy of the netlink module counts ports from the start again) and says which port and fd.
import { parentPort, workerData } from 'node:worker_threads';
import { openNetfilterSocket } from '../../fastpath/linux/conntrack-netlink.js';

const { namespace } = workerData as { namespace: string };
const { socket, fd } = openNetfilterSocket(namespace, 4 << 20);
parentPort?.postMessage({ port: socket.address().port, fd });
parentPort?.once('message', () => {
  socket.close();
  parentPort?.close();
});
