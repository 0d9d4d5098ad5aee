// Socket options the `netlink` addon does not expose, set through raw syscalls on its socket's fd:
//  - NETLINK_NO_ENOBUFS: a receive-buffer overrun must not set the socket error. The addon reacts
//    to that error (POLLERR) by closing the socket and aborting the process; with the option the
//    kernel only counts the drop, and SO_MEMINFO tells us (see receiveDrops()).
//  - NETLINK_BROADCAST_ERROR: "reliable" conntrack events (as conntrackd's NetlinkEventsReliable):
//    the kernel learns that a listener missed an event and re-delivers it (destroy events are
//    retried, missed new/update bits ride on the next event of the conntrack).
//  - SO_RCVBUFFORCE: a receive buffer above net.core.rmem_max.
// The fd is found by its netlink port id among the process's sockets.
import { readdirSync, readlinkSync } from 'node:fs';
import sys from 'syscall-napi';

const SOL_SOCKET = 1n;
const SO_PROTOCOL = 38n;
const SO_DOMAIN = 39n;
const SO_RCVBUFFORCE = 33n;
const SO_MEMINFO = 55n;
const SK_MEMINFO_RMEM_ALLOC = 0;
const SK_MEMINFO_DROPS = 8;
const SOL_NETLINK = 270n;
export const NETLINK_BROADCAST_ERROR = 4n;
export const NETLINK_NO_ENOBUFS = 5n;
const AF_NETLINK = 16;

function getIntOption(fd: number, level: bigint, name: bigint): number {
  const value = Buffer.alloc(4);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(4);
  sys.syscall.sync(sys.__NR_getsockopt as bigint, BigInt(fd), level, name, value, length);
  return value.readInt32LE(0);
}

function setIntOption(fd: number, level: bigint, name: bigint, v: number): void {
  const value = Buffer.alloc(4);
  value.writeInt32LE(v);
  sys.syscall.sync(sys.__NR_setsockopt as bigint, BigInt(fd), level, name, value, 4n);
}

function netlinkPort(fd: number): number | undefined {
  const address = Buffer.alloc(12); // struct sockaddr_nl
  const length = Buffer.alloc(4);
  length.writeUInt32LE(12);
  sys.syscall.sync(sys.__NR_getsockname as bigint, BigInt(fd), address, length);
  return address.readUInt16LE(0) === AF_NETLINK ? address.readUInt32LE(4) : undefined;
}

/** The fd of this process's netlink socket of `protocol` bound to port id `port`. */
export function findNetlinkFd(protocol: number, port: number): number {
  const [fd] = findNetlinkFds(protocol, port);
  if (fd === undefined) throw new Error(`netlink socket (protocol ${protocol}, port ${port}) not found among the process's fds`);
  return fd;
}

/**
 * Every fd of the process holding a netlink socket of `protocol` bound to `port`. More than one:
 * sockets in different network namespaces (or threads: each thread's copy of the netlink module
 * counts ports from the same start) share the port, and the port alone does not say which is which.
 */
export function findNetlinkFds(protocol: number, port: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc/self/fd')) {
    const fd = Number(entry);
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${entry}`);
    } catch {
      continue; // closed meanwhile (the directory's own fd)
    }
    if (!target.startsWith('socket:')) continue;
    try {
      if (getIntOption(fd, SOL_SOCKET, SO_DOMAIN) !== AF_NETLINK) continue;
      if (getIntOption(fd, SOL_SOCKET, SO_PROTOCOL) !== protocol) continue;
      if (netlinkPort(fd) === port) found.push(fd);
    } catch {
      continue;
    }
  }
  return found;
}

export function setNetlinkFlag(fd: number, option: bigint): void {
  setIntOption(fd, SOL_NETLINK, option, 1);
}

/** The socket's receive buffer in bytes (SO_RCVBUF: what the kernel granted, twice what was asked). */
export function receiveBufferBytes(fd: number): number {
  return getIntOption(fd, SOL_SOCKET, 8n /* SO_RCVBUF */);
}

/** Sets the receive buffer regardless of net.core.rmem_max (needs CAP_NET_ADMIN); returns the size the kernel granted. */
export function forceReceiveBuffer(fd: number, bytes: number): number {
  setIntOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes);
  return getIntOption(fd, SOL_SOCKET, 8n /* SO_RCVBUF */);
}

function memInfo(fd: number, index: number): number {
  const info = Buffer.alloc(4 * 9); // u32 meminfo[SK_MEMINFO_VARS]
  const length = Buffer.alloc(4);
  length.writeUInt32LE(info.length);
  sys.syscall.sync(sys.__NR_getsockopt as bigint, BigInt(fd), SOL_SOCKET, SO_MEMINFO, info, length);
  return info.readUInt32LE(index * 4);
}

/** Messages the kernel dropped for lack of receive-buffer room since the socket was created. */
export function receiveDrops(fd: number): number {
  return memInfo(fd, SK_MEMINFO_DROPS);
}

/** Bytes the kernel holds in the socket's receive queue now (messages not yet read). */
export function receiveQueueBytes(fd: number): number {
  return memInfo(fd, SK_MEMINFO_RMEM_ALLOC);
}
