// Netfilter sockets are configured through an fd found by their netlink port (netlink-socket-
// options.ts). Ports are per network namespace, and each thread's copy of the netlink module picks
// ports from the same start: a socket in another namespace or thread could share the port, and the
// options (NETLINK_NO_ENOBUFS, the large receive buffer) went to the wrong socket. Ours then
// reported an overrun as a socket error, which the netlink addon turns into a process abort (seen
// in the sync pair benchmark: two engines, two namespaces, writer threads on both). Root only.
import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import { RawNetlinkSocket } from 'netlink';
import { openNetfilterSocket } from '../../fastpath/linux/conntrack-netlink.js';
import { inNamespace } from '../../fastpath/linux/network-namespace.js';
import { findNetlinkFds, receiveBufferBytes } from '../../fastpath/linux/netlink-socket-options.js';
import { NamespaceFixture, ROOT_SKIP_REASON, isRoot } from '../../lab/namespace-fixture.js';

const NETLINK_NETFILTER = 12;

describe('linux: netfilter sockets get their own options when another namespace or thread holds the same port', function () {
  this.timeout(60_000);
  let fx: NamespaceFixture | undefined;
  const sockets: RawNetlinkSocket[] = [];

  before(function () {
    if (!isRoot()) {
      console.log(`    (skipped: ${ROOT_SKIP_REASON})`);
      this.skip();
    }
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    await fx?.cleanup();
    fx = undefined;
  });

  it('a worker thread opening a socket in another namespace configures its own socket, not ours on the same port', async () => {
    fx = new NamespaceFixture('np');
    const nsA = fx.add('a');
    const nsB = fx.add('b');
    // The port a fresh thread's netlink module tries first: (32 << 22) | pid.
    const first = (32 << 22) | (process.pid & 0x3fffff);
    const ours = inNamespace(nsA, () => new RawNetlinkSocket(NETLINK_NETFILTER, { localPort: first, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 }));
    sockets.push(ours);
    const ourFds = findNetlinkFds(NETLINK_NETFILTER, first);
    expect(ourFds).to.have.length(1);
    const ourFd = ourFds[0] as number;
    const ourBuffer = receiveBufferBytes(ourFd);

    const worker = new Worker(new URL('./netlink-port-worker.js', import.meta.url), { workerData: { namespace: nsB } });
    try {
      const theirs = await new Promise<{ port: number; fd: number }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      expect(theirs.fd, 'the worker configured our socket').to.not.equal(ourFd);
      expect(receiveBufferBytes(ourFd), 'our receive buffer was changed by the worker').to.equal(ourBuffer);
      expect(receiveBufferBytes(theirs.fd), 'the worker\'s socket has the buffer it asked for').to.be.at.least(4 << 20);
      expect(findNetlinkFds(NETLINK_NETFILTER, theirs.port)).to.deep.equal([theirs.fd]);
      // The main thread's own sockets too: one more in nsB while ours holds `first` in nsA.
      const again = openNetfilterSocket(nsB, 2 << 20);
      sockets.push(again.socket);
      expect(findNetlinkFds(NETLINK_NETFILTER, again.socket.address().port)).to.deep.equal([again.fd]);
    } finally {
      worker.postMessage('close');
      await new Promise((r) => worker.once('exit', r));
    }
  });
});
