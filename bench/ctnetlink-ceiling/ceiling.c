/*
 * The kernel's ceiling for conntrack creation over ctnetlink, as a reference for the agent's writer:
 * a minimal raw-netlink writer (no library) that creates N established TCP conntracks with an SNAT
 * binding (the same message tandem's linux engine sends: original tuple, un-translated reply tuple,
 * CTA_NAT_SRC with address and port, status, timeout, mark, TCP state with liberal window tracking),
 * BATCH messages per datagram, an ack requested only on the last message of each datagram.
 * Benchmark tool only (built by bench/linux-failover.ts with the system C compiler); not a runtime part.
 *
 *   ceiling N BATCH [nat=1]      run inside the namespace (ip netns exec NS ./ceiling ...)
 * Prints one JSON line: {"created":..,"errors":..,"seconds":..,"per_second":..,"first_errno":..,"cpu_seconds":..}
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (1 << 20)
static unsigned char buf[BUF_SIZE];
static size_t len;

static struct nlattr *attr_open(uint16_t type) {
  struct nlattr *a = (struct nlattr *)(buf + len);
  a->nla_type = type | NLA_F_NESTED;
  len += NLA_HDRLEN;
  return a;
}
static void attr_close(struct nlattr *a) { a->nla_len = (uint16_t)((buf + len) - (unsigned char *)a); }
static void attr_put(uint16_t type, const void *data, uint16_t size) {
  struct nlattr *a = (struct nlattr *)(buf + len);
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + size;
  memcpy(buf + len + NLA_HDRLEN, data, size);
  len += NLA_ALIGN(a->nla_len);
  memset(buf + len - (NLA_ALIGN(a->nla_len) - a->nla_len), 0, NLA_ALIGN(a->nla_len) - a->nla_len);
}
static void put_u8(uint16_t t, uint8_t v) { attr_put(t, &v, 1); }
static void put_be16(uint16_t t, uint16_t v) { v = htons(v); attr_put(t, &v, 2); }
static void put_be32(uint16_t t, uint32_t v) { v = htonl(v); attr_put(t, &v, 4); }
static void put_ip(uint16_t t, uint32_t host_order) { uint32_t v = htonl(host_order); attr_put(t, &v, 4); }

static void tuple(uint16_t type, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  struct nlattr *outer = attr_open(type);
  struct nlattr *ip = attr_open(CTA_TUPLE_IP);
  put_ip(CTA_IP_V4_SRC, src);
  put_ip(CTA_IP_V4_DST, dst);
  attr_close(ip);
  struct nlattr *proto = attr_open(CTA_TUPLE_PROTO);
  put_u8(CTA_PROTO_NUM, IPPROTO_TCP);
  put_be16(CTA_PROTO_SRC_PORT, sport);
  put_be16(CTA_PROTO_DST_PORT, dport);
  attr_close(proto);
  attr_close(outer);
}

static void create(uint32_t i, uint32_t seq, int ack, int nat) {
  struct nlmsghdr *h = (struct nlmsghdr *)(buf + len);
  h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (ack ? NLM_F_ACK : 0);
  h->nlmsg_seq = seq;
  h->nlmsg_pid = 0;
  len += NLMSG_HDRLEN;
  struct nfgenmsg *g = (struct nfgenmsg *)(buf + len);
  g->nfgen_family = AF_INET;
  g->version = NFNETLINK_V0;
  g->res_id = 0;
  len += NLMSG_ALIGN(sizeof(struct nfgenmsg));
  /* The same synthetic population as bench/linux-failover.ts: distinct subscribers 10.64.0.0/10, a
     server 198.51.100.10:443, SNAT to one of 16 pool addresses 192.0.2.0/28 with distinct ports. */
  uint32_t sub = (10u << 24) | ((64u + (i >> 16)) << 16) | (((i >> 8) & 255u) << 8) | (i & 255u);
  uint32_t server = (198u << 24) | (51u << 16) | (100u << 8) | 10u;
  uint16_t sport = (uint16_t)(1024 + (i % 50000));
  tuple(CTA_TUPLE_ORIG, sub, server, sport, 443);
  tuple(CTA_TUPLE_REPLY, server, sub, 443, sport);
  if (nat) {
    uint32_t pool = (192u << 24) | (0u << 16) | (2u << 8) | (i % 16);
    uint16_t port = (uint16_t)(1024 + (i / 16) % 64000);
    struct nlattr *n = attr_open(CTA_NAT_SRC);
    put_ip(CTA_NAT_V4_MINIP, pool);
    put_ip(CTA_NAT_V4_MAXIP, pool);
    struct nlattr *p = attr_open(CTA_NAT_PROTO);
    put_be16(CTA_PROTONAT_PORT_MIN, port);
    put_be16(CTA_PROTONAT_PORT_MAX, port);
    attr_close(p);
    attr_close(n);
  }
  put_be32(CTA_STATUS, 0x8 | 0x2 | 0x4); /* confirmed | seen-reply | assured */
  put_be32(CTA_TIMEOUT, 7200);
  put_be32(CTA_MARK, 1);
  struct nlattr *pi = attr_open(CTA_PROTOINFO);
  struct nlattr *t = attr_open(CTA_PROTOINFO_TCP);
  put_u8(CTA_PROTOINFO_TCP_STATE, 3 /* established */);
  uint8_t liberal[2] = {0x08, 0x08};
  attr_put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, liberal, 2);
  attr_put(CTA_PROTOINFO_TCP_FLAGS_REPLY, liberal, 2);
  attr_close(t);
  attr_close(pi);
  h->nlmsg_len = (uint32_t)((buf + len) - (unsigned char *)h);
  len = NLMSG_ALIGN(len);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ceiling N BATCH [nat=1]\n");
    return 2;
  }
  uint32_t n = (uint32_t)strtoul(argv[1], NULL, 10);
  uint32_t batch = (uint32_t)strtoul(argv[2], NULL, 10);
  int nat = argc > 3 ? atoi(argv[3]) : 1;
  if (batch < 1 || batch > 1024) batch = 64;
  int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
  if (fd < 0) { perror("socket"); return 1; }
  int rcv = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  struct timespec t0, t1;
  uint64_t errors = 0, created = 0;
  int first_errno = 0;
  static unsigned char rbuf[1 << 16];
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint32_t i = 0, seq = 1; i < n; ) {
    len = 0;
    uint32_t k = 0;
    for (; k < batch && i < n; k++, i++, seq++) create(i, seq, k + 1 == batch || i + 1 == n, nat);
    if (sendto(fd, buf, len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) { perror("sendto"); return 1; }
    /* Errors come for any message; the ack of the last message closes the datagram. */
    for (int done = 0; !done; ) {
      ssize_t r = recv(fd, rbuf, sizeof rbuf, 0);
      if (r < 0) { perror("recv"); return 1; }
      for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
        if (h->nlmsg_type != NLMSG_ERROR) continue;
        struct nlmsgerr *e = (struct nlmsgerr *)NLMSG_DATA(h);
        if (e->error != 0) { errors++; if (!first_errno) first_errno = -e->error; }
        if (h->nlmsg_seq == seq - 1) done = 1;
      }
    }
    created += k;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  getrusage(RUSAGE_SELF, &r1);
  /* CPU time (user + system: the kernel's work runs in this process) depends far less on the
     machine's load than wall time; the benchmark compares tandem's to it too. */
  double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec)
    + (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("{\"created\":%llu,\"errors\":%llu,\"seconds\":%.4f,\"per_second\":%.0f,\"first_errno\":%d,\"cpu_seconds\":%.4f}\n",
         (unsigned long long)(created - errors), (unsigned long long)errors, s, (double)(created - errors) / s, first_errno, cpu);
  close(fd);
  return 0;
}
