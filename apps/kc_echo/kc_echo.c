/* kc_echo: a TCP echo server with one kcoro coroutine per connection.
 *
 *   kc_echo [--host ADDR] [--port N] [--max-conns N] [--threads N] [--stack BYTES]
 *
 * Every connection gets a coroutine that reads and writes back through the
 * netpoller (kc_read/kc_write park it while the socket is not ready), so
 * 10,000 connections cost 10,000 small stacks and a few worker threads.
 * Prints "kc_echo: listening on HOST:PORT" once ready (port 0 = pick one);
 * SIGINT/SIGTERM stop it cleanly. The soft RLIMIT_NOFILE is raised to what
 * --max-conns needs; if the hard limit is lower it says so and exits 1.
 * Exit status: 0 after a signal, 1 on an error, 2 on bad usage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kcoro/kcoro.h"

#define FD_RESERVE 64          /* fds beyond the connections: listener, stdio, epoll... */
#define BUF_SIZE 4096          /* bytes read per call                         */
#define IDLE_MS (10 * 60 * 1000) /* a connection silent this long is closed   */

static struct {
    int lfd;                   /* listening socket                            */
    long max_conns;            /* connections served at once                  */
    kc_cancel_t *stop;         /* triggered by a signal: every coroutine ends */
    kc_coro_opts_t copts;      /* stack size of the coroutines                */
    _Atomic long conns;        /* connections open now                        */
    _Atomic long peak;         /* most at once                                */
    _Atomic unsigned long long total; /* connections accepted                 */
} g;

static void usage(FILE *to)
{
    fputs("usage: kc_echo [--host ADDR] [--port N] [--max-conns N] [--threads N] [--stack BYTES]\n"
          "TCP echo server, one kcoro coroutine per connection.\n"
          "  --host ADDR      IPv4 address to listen on (default 127.0.0.1)\n"
          "  --port N         port (default 7007; 0 picks a free one)\n"
          "  --max-conns N    connections served at once (default 10000); raises the\n"
          "                   soft RLIMIT_NOFILE to N + 64, fails if the hard limit is lower\n"
          "  --threads N      worker threads (default KCORO_THREADS or one per CPU)\n"
          "  --stack BYTES    stack per coroutine (default 32768)\n"
          "Prints \"kc_echo: listening on HOST:PORT\" when ready; SIGINT/SIGTERM stop it.\n",
          to);
}

static long parse_long(const char *what, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "kc_echo: bad %s '%s' (%ld..%ld)\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

static int raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("kc_echo: getrlimit");
        return -1;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (rlim_t)need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need) {
        fprintf(stderr,
                "kc_echo: --max-conns %ld needs %ld file descriptors but the hard limit "
                "(ulimit -Hn) is %llu; raise it (limits.conf, systemd LimitNOFILE=, or "
                "run as root) or lower --max-conns\n",
                need - FD_RESERVE, need, (unsigned long long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = (rlim_t)need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("kc_echo: setrlimit(RLIMIT_NOFILE)");
        return -1;
    }
    return 0;
}

static void serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[BUF_SIZE];
    /* In the netpoller once (as Go's netFD): the waits of this long-lived
     * connection make no epoll_ctl each. If it fails, they still work. */
    (void)kc_fd_register(fd);
    for (;;) {
        ssize_t n = kc_read(fd, buf, sizeof buf, IDLE_MS, g.stop);
        if (n <= 0)
            break; /* EOF, idle, stop, or an error: the connection ends */
        if (kc_write(fd, buf, (size_t)n, IDLE_MS, g.stop) != n)
            break;
    }
    kc_close(fd); /* not close(2): it forgets the registration */
    atomic_fetch_sub(&g.conns, 1);
}

static void acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = kc_accept(g.lfd, NULL, NULL, -1, g.stop);
        if (fd == -ECANCELED)
            return;
        if (fd < 0) {
            /* Out of fds or memory: let connections finish, then retry. */
            fprintf(stderr, "kc_echo: accept: %s\n", kc_strerror(fd));
            if (kc_sleep_ms_c(100, g.stop) == -ECANCELED)
                return;
            continue;
        }
        long now = atomic_fetch_add(&g.conns, 1) + 1;
        if (now > g.max_conns) {
            atomic_fetch_sub(&g.conns, 1);
            close(fd); /* over the limit: refuse rather than starve the others */
            continue;
        }
        long peak = atomic_load(&g.peak);
        while (now > peak && !atomic_compare_exchange_weak(&g.peak, &peak, now)) {
        }
        atomic_fetch_add(&g.total, 1);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = kc_go(serve_conn, (void *)(intptr_t)fd, &g.copts);
        if (r < 0) {
            fprintf(stderr, "kc_echo: kc_go: %s\n", kc_strerror(r));
            close(fd);
            atomic_fetch_sub(&g.conns, 1);
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"max-conns", required_argument, NULL, 'm'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"stack", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *host = "127.0.0.1";
    long port = 7007, threads = 0;
    g.max_conns = 10000;
    g.copts.stack_size = 32 * 1024;
    int o;
    while ((o = getopt_long(argc, argv, "H:p:m:t:s:h", opts, NULL)) != -1) {
        switch (o) {
        case 'H': host = optarg; break;
        case 'p': port = parse_long("--port", optarg, 0, 65535); break;
        case 'm': g.max_conns = parse_long("--max-conns", optarg, 1, 10000000); break;
        case 't': threads = parse_long("--threads", optarg, 1, KC_THREADS_MAX); break;
        case 's':
            g.copts.stack_size = (size_t)parse_long("--stack", optarg, KC_STACK_MIN, KC_STACK_MAX);
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "kc_echo: --host '%s' is not an IPv4 address\n", host);
        return 2;
    }
    if (raise_nofile(g.max_conns + FD_RESERVE) < 0)
        return 1;

    /* Signals go to sigwait in main; block them before threads exist. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    g.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (g.lfd < 0 || setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(g.lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(g.lfd, 4096) < 0) {
        fprintf(stderr, "kc_echo: listening on %s:%ld: %s\n", host, port, strerror(errno));
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(g.lfd, (struct sockaddr *)&addr, &alen);
    int r = kc_cancel_create(&g.stop, NULL);
    kc_sched_opts_t so = {.threads = (int)threads};
    if (r == 0)
        r = kc_sched_start(&so);
    kc_coro_t *acc = NULL;
    if (r == 0)
        r = kc_spawn(&acc, acceptor, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "kc_echo: starting the runtime: %s\n", kc_strerror(r));
        return 1;
    }
    printf("kc_echo: listening on %s:%d\n", host, (int)ntohs(addr.sin_port));
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    kc_cancel_trigger(g.stop);
    kc_coro_join(acc);
    kc_sched_stop(); /* every connection coroutine sees the token and ends */
    close(g.lfd);
    kc_cancel_destroy(g.stop);
    kc_netpoll_stats_t ns;
    kc_netpoll_stats(&ns);
    fprintf(stderr, "kc_echo: stopped by signal %d: %llu connections served, %ld at most at once; "
            "netpoller: %llu waits, %llu events in %llu polls\n",
            sig, (unsigned long long)atomic_load(&g.total), atomic_load(&g.peak),
            (unsigned long long)ns.waits, (unsigned long long)ns.events,
            (unsigned long long)ns.polls);
    return 0;
}
