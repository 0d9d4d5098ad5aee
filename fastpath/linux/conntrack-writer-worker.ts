// A thread that writes encoded ctnetlink datagrams into one namespace's conntrack table through a
// socket of its own: the kernel's work for a create (conntrack + NAT binding) happens in the
// sending thread, so writer threads let bulk writes use more than one core (conntrack-writer-pool.ts).
// Datagrams arrive in slots of a SharedArrayBuffer (no copy, no transfer, no garbage per datagram).
import { parentPort, workerData } from 'node:worker_threads';
import { ConntrackNetlink } from './conntrack-netlink.js';
import { DATAGRAM_FIELDS, SLOT_BYTES, type WriterReply, type WriterRequest } from './conntrack-writer-protocol.js';

const port = parentPort;
if (!port) throw new Error('conntrack-writer-worker must run as a worker thread');
const { namespace, slots } = workerData as { namespace?: string; slots: SharedArrayBuffer };
let netlink: ConntrackNetlink;
try {
  netlink = new ConntrackNetlink({ namespace });
  port.postMessage({ ready: true, port: netlink.port });
} catch (err) {
  port.postMessage({ ready: false, error: (err as Error).message });
  throw err;
}

port.on('message', (req: WriterRequest | { close: true }) => {
  if ('close' in req) {
    // Closing the socket and the port leaves the thread nothing to do: it ends by itself
    // (terminate() from outside would tear the addon down under its open socket).
    netlink.close();
    port.close();
    return;
  }
  // Views on the slot: the pool does not reuse it before this request is answered. All datagrams
  // of the chunk go out at once (the first is sent now, the rest as soon as the socket takes them).
  const sends: Promise<{ index: number; errno: number }[]>[] = [];
  let index = 0;
  for (let k = 0; k < req.datagrams.length; k += DATAGRAM_FIELDS) {
    const [offset, length, firstSeq, count] = req.datagrams.slice(k, k + DATAGRAM_FIELDS) as [number, number, number, number];
    const base = index;
    const datagram = Buffer.from(slots, req.slot * SLOT_BYTES + offset, length);
    sends.push(netlink.sendDatagram(datagram, firstSeq, count).then((fs) => fs.map((f) => ({ index: base + f.index, errno: f.errno }))));
    index += count;
  }
  Promise.all(sends).then(
    (lists) => port.postMessage({ id: req.id, failures: lists.flat() } satisfies WriterReply),
    (err: Error) => port.postMessage({ id: req.id, error: err.message } satisfies WriterReply),
  );
});
