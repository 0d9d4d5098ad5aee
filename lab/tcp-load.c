/*
 * The C twin of lab/tcp-load.ts (same arguments, same stdin commands, same JSON lines), for the
 * takeover benchmark at tens of thousands of flows: one epoll loop, no allocation per packet, so
 * the client and the echo server are not what the measurement measures (node.js processes sent
 * the kill wave's retransmissions up to 4 s late on the shared 2-core machine). A benchmark and
 * lab tool, built by lab/tcp-load-binary.ts with the system C compiler; not part of the agent.
 *
 *   tcp-load server <address> <port>
 *   tcp-load client <address> <port> <count> [connectTimeoutMs] [source,source...]
 *
 * Client commands: ping <timeoutMs> | wave <spreadMs> <timeoutMs> | close.
 * Server commands: stats | peers | retrans.
 *
 * A wave also says, per connection, when its send left the process (`sendAt`, ms after
 * startedAt) and how many segments TCP retransmitted on it during the wave (`retrans`, from
 * TCP_INFO), and the process's CPU time and involuntary context switches while it issued the sends:
 * the takeover benchmark tells from them a client that sent late from a packet lost on the way.
 * `retrans` on the server: the segments its sockets retransmitted so far (lost echoes).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define STDIN_TAG UINT64_MAX
#define LISTEN_TAG (UINT64_MAX - 1)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Buffered stdout: the answers of a wave are one long line. */
static char *out_buf;
static size_t out_len, out_cap;
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(out_buf + out_len, out_cap - out_len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < out_cap - out_len) { out_len += (size_t)n; return; }
    out_cap = out_cap * 2 + (size_t)(n > 0 ? n : 0) + 4096;
    out_buf = realloc(out_buf, out_cap);
    if (!out_buf) { perror("realloc"); exit(1); }
  }
}
static void flush_out(void) {
  size_t off = 0;
  while (off < out_len) {
    ssize_t w = write(1, out_buf + off, out_len - off);
    if (w < 0) { if (errno == EINTR) continue; exit(1); }
    off += (size_t)w;
  }
  out_len = 0;
}

/* stdin, read by the epoll loop; complete lines are handed to the command handler. */
static char in_buf[4096];
static size_t in_len;
static int stdin_closed;
static int read_stdin_line(char *line, size_t cap) {
  for (;;) {
    char *nl = memchr(in_buf, '\n', in_len);
    if (nl) {
      size_t n = (size_t)(nl - in_buf);
      if (n >= cap) n = cap - 1;
      memcpy(line, in_buf, n);
      line[n] = 0;
      in_len -= (size_t)(nl - in_buf) + 1;
      memmove(in_buf, nl + 1, in_len);
      return 1;
    }
    if (stdin_closed) return 0;
    ssize_t r = read(0, in_buf + in_len, sizeof in_buf - in_len);
    if (r > 0) { in_len += (size_t)r; continue; }
    if (r == 0) { stdin_closed = 1; return 0; }
    if (errno == EINTR) continue;
    return 0; /* EAGAIN */
  }
}

/* ---------------------------------------------------------------- server */

static int server(const char *address, int port) {
  int ep = epoll_create1(0);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  if (inet_pton(AF_INET, address, &sa.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", address); return 2; }
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 65535) != 0) { perror("listen"); return 1; }
  struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LISTEN_TAG };
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  set_nonblock(0);
  ev.data.u64 = STDIN_TAG;
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
  /* Open sockets by descriptor number (descriptors are small integers). */
  size_t cap = 1024;
  char *open_fd = calloc(cap, 1);
  size_t open_count = 0;
  out("{\"ready\":true,\"port\":%d}\n", port);
  flush_out();
  struct epoll_event evs[512];
  char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, evs, 512, -1);
    if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      if (tag == LISTEN_TAG) {
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if ((size_t)fd >= cap) {
            size_t ncap = cap;
            while ((size_t)fd >= ncap) ncap *= 2;
            open_fd = realloc(open_fd, ncap);
            memset(open_fd + cap, 0, ncap - cap);
            cap = ncap;
          }
          open_fd[fd] = 1;
          open_count++;
          struct epoll_event cev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)fd };
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
      } else if (tag == STDIN_TAG) {
        char line[256];
        while (read_stdin_line(line, sizeof line)) {
          if (strcmp(line, "stats") == 0) out("{\"connections\":%zu}\n", open_count);
          else if (strcmp(line, "retrans") == 0) {
            unsigned long long total = 0;
            for (size_t fd = 0; fd < cap; fd++) {
              struct tcp_info ti;
              socklen_t tl = sizeof ti;
              if (open_fd[fd] && getsockopt((int)fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0) total += ti.tcpi_total_retrans;
            }
            out("{\"retrans\":%llu,\"connections\":%zu}\n", total, open_count);
          }
          else if (strcmp(line, "peers") == 0) {
            out("{\"peers\":[");
            int first = 1;
            for (size_t fd = 0; fd < cap; fd++) {
              if (!open_fd[fd]) continue;
              struct sockaddr_in p, l;
              socklen_t pl = sizeof p, ll = sizeof l;
              if (getpeername((int)fd, (struct sockaddr *)&p, &pl) != 0 || getsockname((int)fd, (struct sockaddr *)&l, &ll) != 0) continue;
              char a[INET_ADDRSTRLEN];
              inet_ntop(AF_INET, &p.sin_addr, a, sizeof a);
              out("%s\"%s:%d>%d\"", first ? "" : ",", a, ntohs(p.sin_port), ntohs(l.sin_port));
              first = 0;
            }
            out("]}\n");
          }
        }
        flush_out();
        if (stdin_closed) return 0;
      } else {
        int fd = (int)tag;
        for (;;) {
          ssize_t r = read(fd, buf, sizeof buf);
          if (r > 0) {
            ssize_t off = 0;
            while (off < r) {
              ssize_t w = write(fd, buf + off, (size_t)(r - off));
              if (w <= 0) break; /* a full send buffer drops the echo: the client's wait says so */
              off += w;
            }
            /* A short read drained the socket: no second read() just to meet EAGAIN (epoll is
               level-triggered, so anything that arrived meanwhile is reported again). */
            if ((size_t)r < sizeof buf) break;
            continue;
          }
          if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
          close(fd);
          open_fd[fd] = 0;
          open_count--;
          break;
        }
      }
    }
  }
}

/* ---------------------------------------------------------------- client */

struct conn {
  int fd;
  uint32_t sent, received;
  uint32_t retrans_before;
  int64_t sent_at;
  uint8_t connected, reset, closed;
  int64_t answered_at;
  /* How long the echo waited in the socket before this process read it (answered_at is the kernel's arrival time). */
  int64_t read_lag;
  int64_t connect_deadline;
};

static struct conn *conns;
static size_t nconns;
static int ep;
/* Connections with bytes sent and not yet echoed (open ones): a wave is over when it is 0, with
   no walk over every connection at each return of epoll_wait. */
static size_t outstanding;

static void conn_closed(struct conn *c, int err) {
  if (c->closed) return;
  if (c->received < c->sent) outstanding--;
  if (err == ECONNRESET) c->reset = 1;
  c->closed = 1;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
}

static void conn_event(struct conn *c, uint32_t events) {
  if (c->closed) return;
  if (!c->connected) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) { conn_closed(c, err); return; }
    if (events & EPOLLOUT) {
      c->connected = 1;
      struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
      epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return;
  }
  if (events & EPOLLIN) {
    char buf[4096];
    for (;;) {
      /* With SO_TIMESTAMPNS the kernel says when the data reached the host's stack (stamped as it
         entered the input backlog): an answer's time is its arrival, not when a starved client
         process got round to reading it. */
      union { char b[CMSG_SPACE(sizeof(struct timespec))]; struct cmsghdr align; } ctl;
      struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
      struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
      ssize_t r = recvmsg(c->fd, &msg, 0);
      if (r > 0) {
        int waiting = c->received < c->sent;
        c->received += (uint32_t)r;
        if (waiting && c->received >= c->sent) outstanding--;
        if (c->received >= c->sent && c->answered_at == 0) {
          int64_t read_at = now_ms(), arrived = 0;
          for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
              struct timespec ts;
              memcpy(&ts, CMSG_DATA(cm), sizeof ts);
              arrived = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
            }
          }
          c->answered_at = arrived > 0 && arrived <= read_at ? arrived : read_at;
          c->read_lag = read_at - c->answered_at;
        }
        if ((size_t)r < sizeof buf) break; /* drained (see the server) */
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
      conn_closed(c, r < 0 ? errno : 0);
      return;
    }
  }
  if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    conn_closed(c, err);
  }
}

/* Runs the epoll loop once, waiting at most timeout_ms (0: only what is ready). */
static void poll_once(int timeout_ms) {
  struct epoll_event evs[1024];
  int n = epoll_wait(ep, evs, 1024, timeout_ms);
  for (int i = 0; i < n; i++) {
    if (evs[i].data.u64 == STDIN_TAG) continue; /* lines are read between commands */
    conn_event((struct conn *)evs[i].data.ptr, evs[i].events);
  }
}

static uint32_t total_retrans(const struct conn *c) {
  struct tcp_info ti;
  socklen_t tl = sizeof ti;
  if (c->closed || getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) return 0;
  return ti.tcpi_total_retrans;
}

static int64_t cpu_ms(const struct rusage *r) {
  return ((int64_t)r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1000 + (r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1000;
}

static int cmp_i64(const void *x, const void *y) {
  int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
  return a < b ? -1 : a > b;
}

static int all_answered(void) { return outstanding == 0; }

static void send_payload(struct conn *c, char fill) {
  char payload[16];
  memset(payload, fill, sizeof payload);
  if (!c->connected || c->closed) return;
  int waiting = c->received < c->sent;
  ssize_t w = write(c->fd, payload, sizeof payload);
  if (w == (ssize_t)sizeof payload) {
    c->sent += sizeof payload;
    if (!waiting) outstanding++;
  }
  else if (w < 0 && errno != EAGAIN) conn_closed(c, errno);
}

static void wait_answers(int64_t deadline) {
  while (!all_answered()) {
    int64_t left = deadline - now_ms();
    if (left <= 0) break;
    poll_once(left > 20 ? 20 : (int)left);
  }
}

static int client(const char *address, int port, size_t count, int connect_timeout_ms, char *sources) {
  raise_nofile();
  ep = epoll_create1(0);
  struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  if (inet_pton(AF_INET, address, &dst.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", address); return 2; }
  struct in_addr src[256];
  size_t nsrc = 0;
  for (char *s = sources ? strtok(sources, ",") : NULL; s && nsrc < 256; s = strtok(NULL, ",")) {
    if (inet_pton(AF_INET, s, &src[nsrc]) == 1) nsrc++;
  }
  conns = calloc(count, sizeof *conns);
  size_t failed = 0;
  int one = 1;
  /* At most 256 connects in flight, as the node client does. */
  for (size_t start = 0; start < count; start += 256) {
    size_t end = start + 256 < count ? start + 256 : count;
    int64_t deadline = now_ms() + connect_timeout_ms;
    for (size_t i = start; i < end; i++) {
      struct conn *c = &conns[i];
      c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (c->fd < 0) { perror("socket"); return 1; }
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
      if (nsrc > 0) {
        /* Spread over the source addresses: one address has only ~28,000 ephemeral ports. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = src[i % nsrc] };
        if (bind(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) { conn_closed(c, errno); continue; }
      }
      int r = connect(c->fd, (struct sockaddr *)&dst, sizeof dst);
      if (r != 0 && errno != EINPROGRESS) { conn_closed(c, errno); continue; }
      struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c };
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    for (;;) {
      int pending = 0;
      for (size_t i = start; i < end; i++) if (!conns[i].connected && !conns[i].closed) pending = 1;
      if (!pending) break;
      int64_t left = deadline - now_ms();
      if (left <= 0) {
        for (size_t i = start; i < end; i++) if (!conns[i].connected) conn_closed(&conns[i], ETIMEDOUT);
        break;
      }
      poll_once(left > 50 ? 50 : (int)left);
    }
  }
  /* The node client keeps only connected sockets; so do the figures here. */
  size_t kept = 0;
  for (size_t i = 0; i < count; i++) {
    if (conns[i].connected) conns[kept++] = conns[i];
    else failed++;
  }
  nconns = kept;
  for (size_t i = 0; i < nconns; i++) {
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &conns[i] };
    epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
  }
  out("{\"ready\":true,\"connected\":%zu,\"failed\":%zu}\n", nconns, failed);
  flush_out();

  set_nonblock(0);
  struct epoll_event sev = { .events = EPOLLIN, .data.u64 = STDIN_TAG };
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
  char line[256];
  for (;;) {
    while (!read_stdin_line(line, sizeof line)) {
      if (stdin_closed) return 0;
      poll_once(100);
    }
    char cmd[32] = "";
    double a1 = -1, a2 = -1;
    sscanf(line, "%31s %lf %lf", cmd, &a1, &a2);
    if (strcmp(cmd, "ping") == 0) {
      int64_t timeout = a1 >= 0 ? (int64_t)a1 : 10000;
      int64_t started = now_ms();
      for (size_t i = 0; i < nconns; i++) { conns[i].answered_at = 0; send_payload(&conns[i], 'a'); }
      wait_answers(started + timeout);
      int64_t *delays = malloc(sizeof(int64_t) * (nconns + 1));
      size_t nd = 0, ok = 0, fail = 0, reset = 0, closed = 0;
      for (size_t i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (!c->closed && c->received >= c->sent) { ok++; delays[nd++] = c->answered_at - started; } else fail++;
        if (c->reset) reset++;
        if (c->closed) closed++;
      }
      qsort(delays, nd, sizeof *delays, cmp_i64);
      out("{\"ping\":true,\"firstMs\":%lld,\"medianMs\":%lld,\"lastMs\":%lld,\"ok\":%zu,\"failed\":%zu,\"reset\":%zu,\"closed\":%zu}\n",
          (long long)(nd ? delays[0] : -1), (long long)(nd ? delays[nd / 2] : -1), (long long)(nd ? delays[nd - 1] : -1), ok, fail, reset, closed);
      free(delays);
      flush_out();
    } else if (strcmp(cmd, "wave") == 0) {
      int64_t spread = a1 >= 0 ? (int64_t)a1 : 100;
      int64_t timeout = a2 >= 0 ? (int64_t)a2 : 10000;
      for (size_t i = 0; i < nconns; i++) { conns[i].answered_at = 0; conns[i].read_lag = 0; conns[i].sent_at = -1; conns[i].retrans_before = total_retrans(&conns[i]); }
      struct rusage ru0, ru1;
      getrusage(RUSAGE_SELF, &ru0);
      int64_t started = now_ms();
      size_t n = nconns;
      for (size_t i = 0; i < n;) {
        int64_t now = now_ms();
        for (; i < n && started + (int64_t)((i * (size_t)spread) / n) <= now; i++) {
          uint32_t before = conns[i].sent;
          /* Stamped before the call: on veths the echo can arrive (kernel-stamped) before a
             preempted client gets back from send(), and an answer must never precede its send. */
          int64_t issued = now_ms();
          send_payload(&conns[i], 'b');
          if (conns[i].sent != before) conns[i].sent_at = issued - started;
        }
        if (i < n) {
          int64_t wait = started + (int64_t)((i * (size_t)spread) / n) - now_ms();
          poll_once(wait > 0 ? (int)wait : 0);
        }
      }
      int64_t send_ms = now_ms() - started;
      getrusage(RUSAGE_SELF, &ru1);
      wait_answers(started + timeout);
      size_t reset = 0, closed = 0;
      int64_t *lags = malloc(sizeof(int64_t) * (n + 1));
      size_t nl = 0;
      for (size_t i = 0; i < n; i++) if (conns[i].answered_at > 0) lags[nl++] = conns[i].read_lag;
      qsort(lags, nl, sizeof *lags, cmp_i64);
      out("{\"wave\":true,\"startedAt\":%lld,\"sendMs\":%lld,\"sendCpuMs\":%lld,\"sendInvoluntarySwitches\":%ld,\"readLagMedianMs\":%lld,\"readLagMaxMs\":%lld,\"sendAt\":[",
          (long long)started, (long long)send_ms, (long long)(cpu_ms(&ru1) - cpu_ms(&ru0)), ru1.ru_nivcsw - ru0.ru_nivcsw,
          (long long)(nl ? lags[nl / 2] : -1), (long long)(nl ? lags[nl - 1] : -1));
      free(lags);
      for (size_t i = 0; i < n; i++) out(i ? ",%lld" : "%lld", (long long)conns[i].sent_at);
      out("],\"retrans\":[");
      for (size_t i = 0; i < n; i++) out(i ? ",%u" : "%u", conns[i].closed ? 0 : total_retrans(&conns[i]) - conns[i].retrans_before);
      out("],\"answers\":[");
      for (size_t i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        long long a = (!c->closed && c->received >= c->sent && c->answered_at > 0) ? (long long)(c->answered_at - started) : -1;
        out(i ? ",%lld" : "%lld", a);
        if (c->reset) reset++;
        if (c->closed) closed++;
      }
      out("],\"reset\":%zu,\"closed\":%zu}\n", reset, closed);
      flush_out();
    } else if (strcmp(cmd, "close") == 0) {
      for (size_t i = 0; i < nconns; i++) if (!conns[i].closed) close(conns[i].fd);
      out("{\"closed\":%zu}\n", nconns);
      flush_out();
      return 0;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: tcp-load server|client <address> <port> [count]\n"); return 2; }
  int port = atoi(argv[3]);
  if (port <= 0 || port > 65535) { fprintf(stderr, "bad port %s\n", argv[3]); return 2; }
  if (strcmp(argv[1], "server") == 0) return server(argv[2], port);
  if (strcmp(argv[1], "client") == 0) {
    size_t count = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 1;
    int timeout = argc > 5 ? atoi(argv[5]) : 10000;
    return client(argv[2], port, count, timeout, argc > 6 ? argv[6] : NULL);
  }
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
