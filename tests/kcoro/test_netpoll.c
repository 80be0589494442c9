/* The netpoller: kc_read/kc_write/kc_accept/kc_connect park a coroutine (or
 * a thread) until the fd is ready, time out, honour cancellation, report a
 * closed peer, and serve many connections at once. "Parked" is observed
 * (kc_coro_is_parked, /proc state), never guessed from a sleep. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "kt.h"

static void start(int threads)
{
    kc_sched_opts_t o = {.threads = threads};
    cr_assert_eq(kc_sched_start(&o), 0);
}

static void stop(void) { cr_assert_eq(kc_sched_stop(), 0); }

static void nb_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* A listening TCP socket on 127.0.0.1, port chosen by the kernel. */
static int tcp_listener(struct sockaddr_in *addr, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    cr_assert_eq(listen(fd, backlog), 0);
    socklen_t len = sizeof *addr;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

/* Waits until coroutine c is parked (several samples in a row). */
static void wait_parked(kc_coro_t *c)
{
    uint64_t deadline = kt_now_ms() + 10000;
    int seen = 0;
    while (seen < 5) {
        cr_assert_lt(kt_now_ms(), deadline, "coroutine never parked");
        seen = kc_coro_is_parked(c) ? seen + 1 : 0;
        kt_sleep_ms(2);
    }
}

/* ---- one blocked operation ---------------------------------------------- */

struct io_op {
    int fd;                     /* fd of the call                           */
    char *buf;                  /* read: destination; write: source         */
    size_t n;                   /* bytes                                    */
    long timeout_ms;            /* timeout of the call                      */
    const kc_cancel_t *cancel;  /* token or NULL                            */
    ssize_t rc;                 /* result                                   */
    struct kt_park park;        /* for threads: blocked/done                */
};

static void read_fn(void *arg)
{
    struct io_op *o = arg;
    kt_park_enter(&o->park);
    o->rc = kc_read(o->fd, o->buf, o->n, o->timeout_ms, o->cancel);
    atomic_store(&o->park.done, true);
}

static void write_fn(void *arg)
{
    struct io_op *o = arg;
    kt_park_enter(&o->park);
    o->rc = kc_write(o->fd, o->buf, o->n, o->timeout_ms, o->cancel);
    atomic_store(&o->park.done, true);
}

static void *read_thread(void *arg)
{
    read_fn(arg);
    return NULL;
}

Test(netpoll, read_parks_coroutine_until_data_arrives)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    char got[16] = {0};
    struct io_op o = {.fd = sv[0], .buf = got, .n = sizeof got, .timeout_ms = -1, .rc = 99};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, read_fn, &o, NULL), 0);
    wait_parked(c);
    cr_assert_not(atomic_load(&o.park.done), "kc_read returned with no data");
    kc_netpoll_stats_t st;
    kc_netpoll_stats(&st);
    cr_assert_geq(st.waits, 1, "the read went through the poller");
    cr_assert_eq(write(sv[1], "hello", 5), 5);
    cr_assert_eq(kc_coro_join_ms(c, KT_PROMPT_MS), 0);
    cr_assert_eq(o.rc, 5);
    cr_assert_str_eq(got, "hello");
    close(sv[0]);
    close(sv[1]);
    stop();
}

Test(netpoll, read_from_a_plain_thread_blocks_the_thread)
{
    int sv[2];
    nb_pair(sv);
    char got[8] = {0};
    struct io_op o = {.fd = sv[0], .buf = got, .n = sizeof got, .timeout_ms = -1, .rc = 99};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_thread, &o), 0);
    kt_wait_parked(&o.park);
    cr_assert_not(atomic_load(&o.park.done));
    cr_assert_eq(write(sv[1], "abc", 3), 3);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(o.rc, 3);
    cr_assert_str_eq(got, "abc");
    close(sv[0]);
    close(sv[1]);
}

Test(netpoll, write_parks_while_the_buffer_is_full)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    /* Fill the socket buffer until the kernel refuses more. */
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    size_t filled = 0;
    while (send(sv[0], chunk, sizeof chunk, MSG_DONTWAIT) > 0)
        filled += sizeof chunk;
    cr_assert_eq(kc_write(sv[0], "y", 1, 0, NULL), -EAGAIN, "timeout 0 on a full buffer");
    size_t big = 256 * 1024;
    char *src = malloc(big);
    cr_assert_not_null(src);
    for (size_t i = 0; i < big; i++)
        src[i] = (char)(i * 7);
    struct io_op o = {.fd = sv[0], .buf = src, .n = big, .timeout_ms = -1, .rc = 99};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, write_fn, &o, NULL), 0);
    wait_parked(c);
    cr_assert_not(atomic_load(&o.park.done));
    /* Drain: first the filler, then the coroutine's bytes, which must
     * arrive complete and in order. */
    char *dst = malloc(filled + big);
    cr_assert_not_null(dst);
    size_t got = 0;
    uint64_t deadline = kt_now_ms() + 20000;
    while (got < filled + big) {
        cr_assert_lt(kt_now_ms(), deadline, "writer stalled after %zu bytes", got);
        ssize_t r = kc_read(sv[1], dst + got, filled + big - got, 5000, NULL);
        cr_assert_gt(r, 0, "read: %zd", r);
        got += (size_t)r;
    }
    cr_assert_eq(kc_coro_join_ms(c, KT_PROMPT_MS), 0);
    cr_assert_eq(o.rc, (ssize_t)big);
    cr_assert_eq(memcmp(dst + filled, src, big), 0);
    free(src);
    free(dst);
    close(sv[0]);
    close(sv[1]);
    stop();
}

/* ---- accept and connect ------------------------------------------------- */

struct acc {
    int lfd;                    /* listener                                 */
    int rc;                     /* accepted fd or error                     */
};

static void accept_fn(void *arg)
{
    struct acc *a = arg;
    a->rc = kc_accept(a->lfd, NULL, NULL, -1, NULL);
}

struct con {
    struct sockaddr_in addr;    /* where to connect                         */
    int fd;                     /* the socket                               */
    int rc;                     /* result                                   */
};

static void connect_fn(void *arg)
{
    struct con *c = arg;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->rc = c->fd < 0 ? -errno
                      : kc_connect(c->fd, (struct sockaddr *)&c->addr, sizeof c->addr, 5000, NULL);
}

Test(netpoll, accept_parks_until_a_client_connects_via_kc_connect)
{
    start(2);
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr, 16);
    struct acc a = {.lfd = lfd, .rc = 99};
    kc_coro_t *ca;
    cr_assert_eq(kc_spawn(&ca, accept_fn, &a, NULL), 0);
    wait_parked(ca);
    struct con cn = {.addr = addr, .rc = 99};
    kc_coro_t *cc;
    cr_assert_eq(kc_spawn(&cc, connect_fn, &cn, NULL), 0);
    cr_assert_eq(kc_coro_join_ms(cc, KT_PROMPT_MS), 0);
    cr_assert_eq(kc_coro_join_ms(ca, KT_PROMPT_MS), 0);
    cr_assert_eq(cn.rc, 0, "connect: %s", kc_strerror(cn.rc));
    cr_assert_geq(a.rc, 0, "accept: %s", kc_strerror(a.rc));
    cr_assert(fcntl(a.rc, F_GETFL) & O_NONBLOCK, "accepted fd is non-blocking");
    /* The pair works both ways. */
    cr_assert_eq(kc_write(cn.fd, "ping", 4, 5000, NULL), 4);
    char b[4];
    cr_assert_eq(kc_read(a.rc, b, 4, 5000, NULL), 4);
    cr_assert_eq(memcmp(b, "ping", 4), 0);
    close(a.rc);
    close(cn.fd);
    close(lfd);
    stop();
}

Test(netpoll, connect_to_a_closed_port_is_refused)
{
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr, 1);
    close(lfd); /* the port is now (very likely) closed: nobody else binds it */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    int rc = kc_connect(fd, (struct sockaddr *)&addr, sizeof addr, 5000, NULL);
    cr_assert_eq(rc, -ECONNREFUSED, "got %s", kc_strerror(rc));
    close(fd);
}

/* ---- timeouts, cancellation, closed peers -------------------------------- */

Test(netpoll, timeouts_fire_in_coroutines_and_threads)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    char b[4];
    cr_assert_eq(kc_read(sv[0], b, sizeof b, 0, NULL), -EAGAIN);
    cr_assert_eq(kc_read(sv[0], b, sizeof b, 30, NULL), -ETIMEDOUT, "thread");
    struct io_op o = {.fd = sv[0], .buf = b, .n = sizeof b, .timeout_ms = 30, .rc = 99};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, read_fn, &o, NULL), 0);
    cr_assert_eq(kc_coro_join_ms(c, KT_PROMPT_MS), 0);
    cr_assert_eq(o.rc, -ETIMEDOUT, "coroutine");
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr, 4);
    cr_assert_eq(kc_accept(lfd, NULL, NULL, 30, NULL), -ETIMEDOUT);
    cr_assert_eq(kc_accept(lfd, NULL, NULL, 0, NULL), -EAGAIN);
    /* After timing out, the fd still works. */
    cr_assert_eq(write(sv[1], "ok", 2), 2);
    cr_assert_eq(kc_read(sv[0], b, sizeof b, 5000, NULL), 2);
    close(lfd);
    close(sv[0]);
    close(sv[1]);
    stop();
}

Test(netpoll, cancel_wakes_a_coroutine_blocked_in_read)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    kc_cancel_t *tok;
    cr_assert_eq(kc_cancel_create(&tok, NULL), 0);
    char b[4];
    struct io_op o = {.fd = sv[0], .buf = b, .n = sizeof b, .timeout_ms = -1, .cancel = tok,
                      .rc = 99};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, read_fn, &o, NULL), 0);
    wait_parked(c);
    cr_assert_not(atomic_load(&o.park.done));
    kc_cancel_trigger(tok);
    cr_assert_eq(kc_coro_join_ms(c, KT_PROMPT_MS), 0);
    cr_assert_eq(o.rc, -ECANCELED);
    /* A triggered token refuses at once, even with data waiting. */
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_assert_eq(kc_read(sv[0], b, sizeof b, -1, tok), -ECANCELED);
    cr_assert_eq(kc_read(sv[0], b, sizeof b, -1, NULL), 1, "the byte is still there");
    kc_cancel_destroy(tok);
    close(sv[0]);
    close(sv[1]);
    stop();
}

Test(netpoll, peer_close_gives_eof_and_epipe)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    char b[4];
    struct io_op o = {.fd = sv[0], .buf = b, .n = sizeof b, .timeout_ms = -1, .rc = 99};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, read_fn, &o, NULL), 0);
    wait_parked(c);
    close(sv[1]);
    cr_assert_eq(kc_coro_join_ms(c, KT_PROMPT_MS), 0);
    cr_assert_eq(o.rc, 0, "a blocked read sees end of file");
    /* Writing to a closed peer: -EPIPE, and no SIGPIPE kills us. */
    cr_assert_eq(kc_write(sv[0], "x", 1, 1000, NULL), -EPIPE);
    cr_assert_eq(kc_read(-1, b, 1, 0, NULL), -EBADF);
    close(sv[0]);
    stop();
}

/* ---- kc_fd_register / kc_close ------------------------------------------- */

/* One coroutine read on fd that parks, is fed through `peer`, and returns. */
static void park_then_feed(int fd, int peer)
{
    char got[8] = {0};
    struct io_op o = {.fd = fd, .buf = got, .n = sizeof got, .timeout_ms = KT_PROMPT_MS,
                      .rc = 99};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, read_fn, &o, NULL), 0);
    wait_parked(c);
    cr_assert_eq(write(peer, "ping", 4), 4);
    cr_assert_eq(kc_coro_join_ms(c, 2 * KT_PROMPT_MS), 0);
    cr_assert_eq(o.rc, 4, "the parked read was woken with the data (rc %zd)", o.rc);
    cr_assert_str_eq(got, "ping");
}

Test(netpoll, registered_fd_waits_make_no_epoll_ctl)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    kc_netpoll_stats_t a, b;
    /* Not kept: every park adds the fd again (EEXIST after the first). */
    kc_netpoll_stats(&a);
    park_then_feed(sv[0], sv[1]);
    park_then_feed(sv[0], sv[1]);
    kc_netpoll_stats(&b);
    cr_assert_eq(b.ctls - a.ctls, 2, "one epoll_ctl per park (got %llu)",
                 (unsigned long long)(b.ctls - a.ctls));
    /* Kept: one epoll_ctl when registered, none per park. */
    cr_assert_eq(kc_fd_register(sv[1]), 0);
    kc_netpoll_stats(&a);
    for (int i = 0; i < 3; i++)
        park_then_feed(sv[1], sv[0]);
    kc_netpoll_stats(&b);
    cr_assert_eq(b.ctls, a.ctls, "no epoll_ctl per park (got %llu)",
                 (unsigned long long)(b.ctls - a.ctls));
    cr_assert_geq(b.waits - a.waits, 3, "the reads did park");
    cr_assert_eq(kc_close(sv[1]), 0);
    cr_assert_eq(kc_close(sv[0]), 0, "kc_close of an fd never registered");
    cr_assert_eq(kc_close(sv[0]), -EBADF);
    cr_assert_eq(kc_fd_register(-1), -EBADF);
    stop();
}

/* A number kc_close freed and a new file took (here by dup2, no kcoro call
 * involved) is not in the epoll set: its waits must add it. If kc_close
 * kept the flag, this read would wait for an edge that never comes. */
Test(netpoll, kc_close_forgets_the_registration)
{
    start(2);
    int a[2], b[2];
    nb_pair(a);
    nb_pair(b);
    int n = a[0];
    cr_assert_eq(kc_fd_register(n), 0);
    park_then_feed(n, a[1]);
    cr_assert_eq(kc_close(n), 0);
    close(a[1]);
    cr_assert_eq(dup2(b[0], n), n);
    park_then_feed(n, b[1]);
    close(n);
    close(b[0]);
    close(b[1]);
    stop();
}

/* A kept fd closed with close(2) by mistake, its number then handed out by
 * kc_accept: the accepted socket's waits still add it (kc_accept forgets
 * the stale flag). */
struct acc_once { int lfd; int fd; };
static void acc_once_fn(void *arg)
{
    struct acc_once *x = arg;
    x->fd = kc_accept(x->lfd, NULL, NULL, KT_PROMPT_MS, NULL);
}

Test(netpoll, accept_forgets_a_stale_registration)
{
    start(2);
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr, 16);
    int sv[2];
    nb_pair(sv);
    int n = sv[0];
    cr_assert_eq(kc_fd_register(n), 0);
    close(n); /* the mistake: the flag stays */
    close(sv[1]);
    /* The client's socket must not take number n: hold n (and any lower
     * free number, which accept4 would take first) with dummies. */
    int held[64], nheld = 0, hold;
    while ((hold = dup(lfd)) != n) {
        cr_assert(hold >= 0 && hold < n && nheld < 64, "dup gave %d", hold);
        held[nheld++] = hold;
    }
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(cfd, 0);
    int rc = connect(cfd, (struct sockaddr *)&addr, sizeof addr);
    cr_assert(rc == 0 || errno == EINPROGRESS);
    close(hold); /* the lowest free number again: accept4 gets n */
    struct acc_once x = {.lfd = lfd, .fd = -100};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, acc_once_fn, &x, NULL), 0);
    cr_assert_eq(kc_coro_join_ms(c, 2 * KT_PROMPT_MS), 0);
    cr_assert_eq(x.fd, n, "accept4 took the freed number (got %d)", x.fd);
    park_then_feed(x.fd, cfd);
    while (nheld)
        close(held[--nheld]);
    close(x.fd);
    close(cfd);
    close(lfd);
    stop();
}

/* ---- timers of ended parks -------------------------------------------------- */

#define PINGS 4000

struct pinger { int fd; bool first; _Atomic int errors; };

/* Sends a byte and waits for one, PINGS times (first) or the other way
 * round; each read carries a 60 s timeout, so each park adds a timer that
 * the data ends long before its deadline. */
static void pinger_fn(void *arg)
{
    struct pinger *p = arg;
    char b = 'p';
    for (int i = 0; i < PINGS; i++) {
        if (p->first && kc_write(p->fd, &b, 1, 60000, NULL) != 1)
            atomic_fetch_add(&p->errors, 1);
        if (kc_read(p->fd, &b, 1, 60000, NULL) != 1)
            atomic_fetch_add(&p->errors, 1);
        if (!p->first && kc_write(p->fd, &b, 1, 60000, NULL) != 1)
            atomic_fetch_add(&p->errors, 1);
    }
}

/* A timer stays in its worker's heap after the park it bounds has ended;
 * the heap must drop such timers instead of growing by one per park (a
 * server's reads with a long idle timeout grew it without bound). */
Test(netpoll, ended_parks_do_not_pile_up_timers)
{
    start(2);
    int sv[2];
    nb_pair(sv);
    struct pinger a = {.fd = sv[0], .first = true}, b = {.fd = sv[1], .first = false};
    kc_netpoll_stats_t n0, n1;
    kc_netpoll_stats(&n0);
    kc_coro_t *ca, *cb;
    cr_assert_eq(kc_spawn(&cb, pinger_fn, &b, NULL), 0);
    cr_assert_eq(kc_spawn(&ca, pinger_fn, &a, NULL), 0);
    cr_assert_eq(kc_coro_join_ms(ca, 60000), 0);
    cr_assert_eq(kc_coro_join_ms(cb, 60000), 0);
    cr_assert_eq(atomic_load(&a.errors) + atomic_load(&b.errors), 0);
    kc_netpoll_stats(&n1);
    kc_sched_stats_t st;
    kc_sched_stats(&st);
    /* Without the clean-up the heaps hold one timer per park. */
    cr_assert_geq(n1.waits - n0.waits, PINGS / 2, "the reads parked (%llu times)",
                  (unsigned long long)(n1.waits - n0.waits));
    cr_assert_lt(st.timers, 1000, "%llu timers left after %llu parks",
                 (unsigned long long)st.timers, (unsigned long long)(n1.waits - n0.waits));
    close(sv[0]);
    close(sv[1]);
    stop();
}

/* ---- many connections ----------------------------------------------------- */

#define MANY_ROUNDS 5

struct many {
    struct sockaddr_in addr;    /* server address                           */
    int lfd;                    /* listener                                 */
    int n;                      /* connections                              */
    _Atomic int ok;             /* clients that finished every round        */
    _Atomic int served;         /* server coroutines that saw EOF           */
    _Atomic int errors;         /* unexpected results                       */
};

struct conn_arg { struct many *m; int fd; int idx; };

static void echo_conn(void *arg)
{
    struct conn_arg *ca = arg;
    char buf[64];
    for (;;) {
        ssize_t r = kc_read(ca->fd, buf, sizeof buf, 60000, NULL);
        if (r <= 0) {
            if (r == 0)
                atomic_fetch_add(&ca->m->served, 1);
            else
                atomic_fetch_add(&ca->m->errors, 1);
            break;
        }
        if (kc_write(ca->fd, buf, (size_t)r, 60000, NULL) != r) {
            atomic_fetch_add(&ca->m->errors, 1);
            break;
        }
    }
    close(ca->fd);
    free(ca);
}

static void acceptor(void *arg)
{
    struct many *m = arg;
    for (int i = 0; i < m->n; i++) {
        int fd = kc_accept(m->lfd, NULL, NULL, 60000, NULL);
        if (fd < 0) {
            atomic_fetch_add(&m->errors, 1);
            return;
        }
        struct conn_arg *ca = malloc(sizeof *ca);
        if (!ca || kc_go(echo_conn, ca, NULL) < 0) {
            atomic_fetch_add(&m->errors, 1);
            close(fd);
            free(ca);
            return;
        }
        *ca = (struct conn_arg){.m = m, .fd = fd};
    }
}

static void client(void *arg)
{
    struct conn_arg *ca = arg;
    struct many *m = ca->m;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || kc_connect(fd, (struct sockaddr *)&m->addr, sizeof m->addr, 60000, NULL) < 0) {
        atomic_fetch_add(&m->errors, 1);
        if (fd >= 0)
            close(fd);
        free(ca);
        return;
    }
    bool good = true;
    for (int r = 0; r < MANY_ROUNDS && good; r++) {
        char msg[32], back[32];
        int len = snprintf(msg, sizeof msg, "c%d r%d", ca->idx, r);
        good = kc_write(fd, msg, (size_t)len, 60000, NULL) == len;
        size_t got = 0;
        while (good && got < (size_t)len) {
            ssize_t k = kc_read(fd, back + got, (size_t)len - got, 60000, NULL);
            good = k > 0;
            got += good ? (size_t)k : 0;
        }
        good = good && memcmp(msg, back, (size_t)len) == 0;
    }
    if (good)
        atomic_fetch_add(&m->ok, 1);
    else
        atomic_fetch_add(&m->errors, 1);
    close(fd);
    free(ca);
}

Test(netpoll, thousand_connections_one_coroutine_each, .timeout = 240)
{
    const int n = 1000;
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < (rlim_t)(2 * n + 64)) {
        cr_assert_geq(rl.rlim_max, (rlim_t)(2 * n + 64), "hard fd limit too low for the test");
        rl.rlim_cur = (rlim_t)(2 * n + 64);
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    start(2);
    struct many m = {.n = n};
    m.lfd = tcp_listener(&m.addr, 1024);
    kc_coro_t *acc;
    cr_assert_eq(kc_spawn(&acc, acceptor, &m, NULL), 0);
    kc_coro_t **cs = calloc((size_t)n, sizeof *cs);
    cr_assert_not_null(cs);
    for (int i = 0; i < n; i++) {
        struct conn_arg *ca = malloc(sizeof *ca);
        cr_assert_not_null(ca);
        *ca = (struct conn_arg){.m = &m, .idx = i};
        cr_assert_eq(kc_spawn(&cs[i], client, ca, NULL), 0);
    }
    for (int i = 0; i < n; i++)
        cr_assert_eq(kc_coro_join_ms(cs[i], 180000), 0);
    cr_assert_eq(kc_coro_join_ms(acc, 60000), 0);
    /* The server coroutines end when they see their client's EOF. */
    uint64_t deadline = kt_now_ms() + 60000;
    while (atomic_load(&m.served) + atomic_load(&m.errors) < n && kt_now_ms() < deadline)
        kt_sleep_ms(5);
    cr_assert_eq(atomic_load(&m.errors), 0);
    cr_assert_eq(atomic_load(&m.ok), n);
    cr_assert_eq(atomic_load(&m.served), n);
    free(cs);
    close(m.lfd);
    stop();
}
