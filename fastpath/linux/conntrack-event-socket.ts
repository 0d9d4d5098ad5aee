// The conntrack event socket of the event thread (conntrack-event-thread.ts), made with raw syscalls
// instead of the `netlink` addon: the addon reads on the event loop of the thread that made the
// socket (two recvmsg, a Buffer and a JS callback per datagram, i.e. per event), while this socket is
// opened and subscribed on the engine's thread (so no event after start() is missed) and read by a
// thread of its own with blocking recvfrom into one buffer. Options as conntrack-events.ts sets them:
// a large forced receive buffer, NETLINK_NO_ENOBUFS (an overrun is counted in SO_MEMINFO, never
// raised), NETLINK_BROADCAST_ERROR (reliable events), and a receive timeout so the reading thread
// sees a request to stop.
import sys from 'syscall-napi';
import { NETLINK_NETFILTER, NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE } from './ctnetlink-codec.js';
import { inNamespace } from './network-namespace.js';
import { NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, forceReceiveBuffer, setNetlinkFlag } from './netlink-socket-options.js';

const AF_NETLINK = 16n;
const SOCK_RAW = 3n;
const SOCK_CLOEXEC = 0o2000000n;
const SOL_SOCKET = 1n;
const SO_RCVTIMEO = 20n;
const SOL_NETLINK = 270n;
const NETLINK_ADD_MEMBERSHIP = 1n;
const MSG_DONTWAIT = 0x40n;
const MSG_TRUNC = 0x20n;

const nr = (name: string): bigint => {
  const n = (sys as Record<string, unknown>)[`__NR_${name}`];
  if (typeof n !== 'bigint') throw new Error(`syscall ${name} unknown on this architecture`);
  return n;
};

/**
 * A NETLINK_NETFILTER socket in `namespace` subscribed to the conntrack new/update/destroy groups;
 * returns its fd (close it with closeEventSocket). `timeoutMs`: how long a blocking read waits.
 */
export function openEventSocket(namespace: string | undefined, receiveBuffer: number, timeoutMs: number): number {
  const fd = inNamespace(namespace, () => Number(sys.syscall.sync(nr('socket'), AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, BigInt(NETLINK_NETFILTER))));
  try {
    setNetlinkFlag(fd, NETLINK_NO_ENOBUFS);
    setNetlinkFlag(fd, NETLINK_BROADCAST_ERROR);
    forceReceiveBuffer(fd, receiveBuffer);
    const tv = Buffer.alloc(16); // struct timeval
    tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
    tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
    sys.syscall.sync(nr('setsockopt'), BigInt(fd), SOL_SOCKET, SO_RCVTIMEO, tv, 16n);
    const address = Buffer.alloc(12); // struct sockaddr_nl: the kernel picks the port
    address.writeUInt16LE(Number(AF_NETLINK), 0);
    sys.syscall.sync(nr('bind'), BigInt(fd), address, 12n);
    for (const group of [NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY]) {
      const g = Buffer.alloc(4);
      g.writeUInt32LE(group);
      sys.syscall.sync(nr('setsockopt'), BigInt(fd), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g, 4n);
    }
    return fd;
  } catch (err) {
    closeEventSocket(fd);
    throw err;
  }
}

const RECVFROM = (() => {
  try {
    return nr('recvfrom');
  } catch {
    return -1n;
  }
})();

/**
 * One datagram into `buf`; its length, or -1 when none came (timeout, or none waiting with
 * `wait` false). A datagram longer than `buf` returns its full length (the caller sees it was cut).
 */
export function receiveDatagram(fd: number, buf: Buffer, wait: boolean): number {
  try {
    return Number(sys.syscall.sync(RECVFROM, BigInt(fd), buf, BigInt(buf.length), wait ? MSG_TRUNC : MSG_TRUNC | MSG_DONTWAIT, 0n, 0n));
  } catch (err) {
    // syscall-napi gives only strerror's text: EAGAIN (nothing waiting, or the timeout) and EINTR.
    const text = (err as Error).message;
    if (text === 'Resource temporarily unavailable' || text === 'Interrupted system call') return -1;
    throw err;
  }
}

export function closeEventSocket(fd: number): void {
  sys.syscall.sync(nr('close'), BigInt(fd));
}

/** The calling thread's kernel thread id (gettid), 0 when it cannot be had. */
export function threadKernelId(): number {
  try {
    return Number(sys.syscall.sync(nr('gettid')));
  } catch {
    return 0;
  }
}
