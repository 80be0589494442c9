/* Distributed channels (kc_ipc_*): two and three processes exchanging over a
 * served channel, close semantics, the protocol's bounds (a fuzzer against
 * the server: every frame answered or the connection closed, never a crash,
 * the server still serving afterwards), long paths, a client that goes away,
 * and a server killed under its clients (they get an error, never a hang).
 * The peer processes are build/distributed_channels in its roles (DC_BIN). */
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "kt.h"

extern char **environ;

static void sock_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/kc-ipc-test-%d-%s.sock", (int)getpid(), tag);
    unlink(buf);
}

/* The example's element (distributed_channels main.c). */
struct dc_msg {
    uint32_t seq;
    char text[60];
};

/* Starts `distributed_channels server PATH` and waits for its ready line. */
static pid_t spawn_server(const char *path)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    pid_t pid;
    char *argv[] = {DC_BIN, "server", (char *)path, NULL};
    cr_assert_eq(posix_spawn(&pid, DC_BIN, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    char line[256];
    size_t got = 0;
    uint64_t deadline = kt_now_ms() + 20000;
    while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
        cr_assert_lt(kt_now_ms(), deadline, "server never got ready");
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(pfd[0], line + got, sizeof line - 1 - got);
        cr_assert_gt(r, 0, "server exited before it got ready");
        got += (size_t)r;
    }
    line[got] = '\0';
    cr_assert(strstr(line, "server: serving"), "unexpected: %s", line);
    close(pfd[0]);
    return pid;
}

static int wait_exit(pid_t pid, long ms)
{
    uint64_t deadline = kt_now_ms() + (uint64_t)ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        cr_assert_lt(kt_now_ms(), deadline, "process %d did not exit", (int)pid);
        kt_sleep_ms(10);
    }
}

/* ---- processes exchanging -------------------------------------------------- */

Test(ipc, two_processes_exchange_until_close, .timeout = 120)
{
    char path[108];
    sock_path(path, sizeof path, "two");
    pid_t srv = spawn_server(path);
    pid_t pro;
    char *argv[] = {DC_BIN, "producer", path, "200", NULL};
    cr_assert_eq(posix_spawn(&pro, DC_BIN, NULL, NULL, argv, environ), 0);
    /* We are the consumer: every message, in order, then -EPIPE. */
    kc_ipc_chan_t *c = NULL;
    int r = -ECONNREFUSED;
    for (int i = 0; i < 100 && r < 0; i++) {
        r = kc_ipc_chan_open(&c, path, 1, 5000);
        if (r < 0)
            kt_sleep_ms(20);
    }
    cr_assert_eq(r, 0, "open: %s", kc_strerror(r));
    cr_assert_eq(kc_ipc_elem_size(c), sizeof(struct dc_msg));
    cr_assert_eq(kc_ipc_kind(c), KC_BUFFERED);
    uint32_t want = 0;
    for (;;) {
        struct dc_msg m;
        r = kc_ipc_recv(c, &m, 20000);
        if (r == -EPIPE)
            break;
        cr_assert_eq(r, 0, "recv: %s", kc_strerror(r));
        cr_assert_eq(m.seq, want);
        want++;
    }
    cr_assert_eq(want, 200);
    cr_assert_eq(kc_ipc_recv(c, &(struct dc_msg){0}, 0), -EPIPE, "stays closed");
    int st = wait_exit(pro, 30000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer failed");
    kc_ipc_chan_release(c);
    kill(srv, SIGTERM);
    st = wait_exit(srv, 30000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server did not stop cleanly");
    cr_assert_neq(access(path, F_OK), 0, "socket file removed");
}

/* ---- semantics against an in-process server ---------------------------------- */

struct local {
    kc_chan_t *ch;          /* served channel                  */
    kc_ipc_server_t *s;     /* the server                      */
    char path[108];         /* its socket                      */
};

static void local_up(struct local *l, const char *tag, int kind, size_t cap)
{
    sock_path(l->path, sizeof l->path, tag);
    cr_assert_eq(kc_chan_make(&l->ch, kind, sizeof(int), cap), 0);
    cr_assert_eq(kc_ipc_serve(&l->s, l->path), 0);
    cr_assert_eq(kc_ipc_export(l->s, 7, l->ch), 0);
    cr_assert_eq(kc_ipc_export(l->s, 7, l->ch), -EEXIST);
}

static void local_down(struct local *l)
{
    kc_ipc_server_destroy(l->s);
    kc_chan_destroy(l->ch);
    cr_assert_eq(kc_sched_stop(), 0);
}

Test(ipc, close_and_timeouts_match_local_channels)
{
    struct local l;
    local_up(&l, "sem", KC_BUFFERED, 4);
    kc_ipc_chan_t *a, *b, *x;
    cr_assert_eq(kc_ipc_chan_open(&x, l.path, 99, 5000), -ENOENT, "unknown id");
    cr_assert_eq(kc_ipc_chan_open(&a, l.path, 7, 5000), 0);
    cr_assert_eq(kc_ipc_chan_open(&b, l.path, 7, 5000), 0);
    int v;
    cr_assert_eq(kc_ipc_recv(b, &v, 0), -EAGAIN);
    cr_assert_eq(kc_ipc_recv(b, &v, 30), -ETIME);
    for (int i = 1; i <= 4; i++)
        cr_assert_eq(kc_ipc_send(a, &i, 1000), 0);
    cr_assert_eq(kc_ipc_send(a, &(int){5}, 0), -EAGAIN, "full");
    cr_assert_eq(kc_chan_len(l.ch), 4, "the elements sit in the served channel");
    cr_assert_eq(kc_ipc_recv(b, &v, 1000), 0);
    cr_assert_eq(v, 1);
    /* Local and remote users share the channel. */
    cr_assert_eq(kc_chan_recv(l.ch, &v, 0), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(kc_ipc_close(a), 0);
    cr_assert_eq(kc_ipc_send(a, &(int){9}, 1000), -EPIPE);
    cr_assert_eq(kc_ipc_recv(b, &v, 1000), 0);
    cr_assert_eq(v, 3);
    cr_assert_eq(kc_ipc_recv(b, &v, 1000), 0);
    cr_assert_eq(v, 4);
    cr_assert_eq(kc_ipc_recv(b, &v, 1000), -EPIPE, "drained after close");
    cr_assert_eq(kc_ipc_recv(b, &v, -1), -EPIPE);
    cr_assert(kc_chan_is_closed(l.ch));
    kc_ipc_chan_release(a);
    kc_ipc_chan_release(b);
    kc_ipc_chan_release(NULL);
    local_down(&l);
}

/* A coroutine blocked in kc_ipc_recv on a rendezvous channel gets what a
 * thread sends through another handle. */
struct rv { const char *path; int got; int rc; };

static void rv_recv(void *arg)
{
    struct rv *r = arg;
    kc_ipc_chan_t *c;
    r->rc = kc_ipc_chan_open(&c, r->path, 7, 5000);
    if (r->rc == 0) {
        r->rc = kc_ipc_recv(c, &r->got, 20000);
        kc_ipc_chan_release(c);
    }
}

Test(ipc, rendezvous_between_a_coroutine_and_a_thread)
{
    struct local l;
    local_up(&l, "rv", KC_RENDEZVOUS, 0);
    struct rv r = {.path = l.path, .rc = 99};
    kc_coro_t *co;
    cr_assert_eq(kc_spawn(&co, rv_recv, &r, NULL), 0);
    kc_ipc_chan_t *a;
    cr_assert_eq(kc_ipc_chan_open(&a, l.path, 7, 5000), 0);
    cr_assert_eq(kc_ipc_send(a, &(int){42}, 20000), 0);
    cr_assert_eq(kc_coro_join_ms(co, 20000), 0);
    cr_assert_eq(r.rc, 0, "recv: %s", kc_strerror(r.rc));
    cr_assert_eq(r.got, 42);
    kc_ipc_chan_release(a);
    local_down(&l);
}

/* kc_ipc_recv_c: cancelling a thread or a coroutine blocked in a remote
 * receive ends it with -ECANCELED, ends the server's wait on the channel
 * too (no receiver is left behind to take an element nobody will read),
 * and leaves the handle usable and in step with the server. */
struct ipc_cancel {
    kc_ipc_chan_t *c;       /* handle                               */
    kc_cancel_t *tok;       /* the call's token                     */
    int got;                /* element (never written when cancelled) */
    int rc;                 /* result of the blocked recv           */
    struct kt_park park;    /* to see it block                      */
};

static void *ipc_cancel_recv(void *arg)
{
    struct ipc_cancel *x = arg;
    kt_park_enter(&x->park);
    x->rc = kc_ipc_recv_c(x->c, &x->got, -1, x->tok);
    atomic_store(&x->park.done, true);
    return NULL;
}

static void ipc_cancel_recv_coro(void *arg) { ipc_cancel_recv(arg); }

Test(ipc, cancel_ends_a_recv_blocked_in_a_thread_or_a_coroutine)
{
    struct local l;
    local_up(&l, "cancel", KC_RENDEZVOUS, 0);
    for (int as_coro = 0; as_coro < 2; as_coro++) {
        struct ipc_cancel x = {.rc = 99, .got = -1};
        cr_assert_eq(kc_ipc_chan_open(&x.c, l.path, 7, 5000), 0);
        cr_assert_eq(kc_cancel_create(&x.tok, NULL), 0);
        kc_chan_snapshot_t s0, s;
        kc_chan_snapshot(l.ch, &s0);
        pthread_t th;
        kc_coro_t *co = NULL;
        if (as_coro)
            cr_assert_eq(kc_spawn(&co, ipc_cancel_recv_coro, &x, NULL), 0);
        else
            cr_assert_eq(pthread_create(&th, NULL, ipc_cancel_recv, &x), 0);
        /* The server's try answered -EAGAIN: its receive now waits. */
        uint64_t deadline = kt_now_ms() + 20000;
        do {
            cr_assert_lt(kt_now_ms(), deadline, "the server never waited");
            kt_sleep_ms(5);
            kc_chan_snapshot(l.ch, &s);
        } while (s.fail_again == s0.fail_again);
        if (!as_coro)
            kt_wait_parked(&x.park);
        cr_assert_not(atomic_load(&x.park.done), "recv on an empty channel returned");
        kc_cancel_trigger(x.tok);
        if (as_coro)
            cr_assert_eq(kc_coro_join_ms(co, 20000), 0, "cancelled coroutine still blocked");
        else
            kt_join(th, 20000);
        cr_assert_eq(x.rc, -ECANCELED, "%s: %s", as_coro ? "coroutine" : "thread",
                     kc_strerror(x.rc));
        cr_assert_eq(x.got, -1, "nothing received");
        /* The reply came after the server's wait ended: counted, and no
         * stale receiver takes a local send. */
        kc_chan_snapshot(l.ch, &s);
        cr_assert_gt(s.fail_canceled, s0.fail_canceled, "the server's wait was not cancelled");
        cr_assert_eq(kc_chan_send(l.ch, &(int){1}, 0), -EAGAIN, "no stale receiver");
        /* The handle is in step: a set token fails at once, a try answers. */
        int v;
        cr_assert_eq(kc_ipc_recv_c(x.c, &v, -1, x.tok), -ECANCELED);
        cr_assert_eq(kc_ipc_send_c(x.c, &v, -1, x.tok), -ECANCELED);
        cr_assert_eq(kc_ipc_recv_c(x.c, &v, 0, NULL), -EAGAIN);
        cr_assert_eq(kc_ipc_recv(x.c, &v, 30), -ETIME);
        kc_ipc_chan_release(x.c);
        kc_cancel_destroy(x.tok);
    }
    local_down(&l);
}

Test(ipc, long_socket_path_is_refused)
{
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    kc_ipc_server_t *s;
    kc_ipc_chan_t *c;
    cr_assert_eq(kc_ipc_serve(&s, longp), -ENAMETOOLONG);
    cr_assert_eq(kc_ipc_chan_open(&c, longp, 1, 100), -ENAMETOOLONG);
    /* Exactly sizeof(sun_path) bytes leaves no room for the terminator. */
    char edge[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    memset(edge, 'b', sizeof edge - 1);
    edge[0] = '/';
    edge[sizeof edge - 1] = '\0';
    cr_assert_eq(kc_ipc_serve(&s, edge), -ENAMETOOLONG);
    cr_assert_eq(kc_ipc_serve(&s, ""), -EINVAL);
}

Test(ipc, path_holding_a_regular_file_is_not_replaced)
{
    char path[108];
    sock_path(path, sizeof path, "file");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    kc_ipc_server_t *s;
    cr_assert_eq(kc_ipc_serve(&s, path), -EEXIST);
    cr_assert_eq(access(path, F_OK), 0, "the file is still there");
    unlink(path);
}

/* ---- the protocol's bounds ----------------------------------------------------- */

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t tlv(unsigned char *p, uint16_t type, uint32_t len, const void *v)
{
    p[0] = (unsigned char)type;
    p[1] = (unsigned char)(type >> 8);
    le32(p + 2, len);
    if (len && v)
        memcpy(p + 6, v, len);
    return 6 + len;
}

static int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Reads replies until the server closes. Every reply must be a well-formed
 * frame whose first TLV is a RESULT; returns the replies seen, their results
 * in res[]. Fails on a timeout (the server must answer or close). */
static int read_replies(int fd, int32_t *res, int max)
{
    unsigned char buf[1 << 17];
    size_t have = 0;
    int n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            break;
        cr_assert_gt(r, 0, "server neither answered nor closed (%s)", strerror(errno));
        have += (size_t)r;
        while (have >= 8) {
            cr_assert_eq(rd32(buf), 0x3149434Bu, "reply magic");
            uint32_t len = rd32(buf + 4);
            cr_assert_leq(len, KC_IPC_FRAME_MAX, "reply length bounded");
            if (have < 8 + len)
                break;
            cr_assert_geq(len, 10, "a reply holds at least RESULT");
            cr_assert_eq(buf[8], 5, "RESULT first");
            cr_assert_eq(rd32(buf + 10), 4);
            if (n < max)
                res[n] = (int32_t)rd32(buf + 14);
            n++;
            memmove(buf, buf + 8 + len, have - 8 - len);
            have -= 8 + len;
        }
    }
    cr_assert_eq(have, 0, "no partial reply");
    return n;
}

Test(ipc, bad_frames_get_an_error_reply_or_a_close)
{
    struct local l;
    local_up(&l, "bad", KC_BUFFERED, 4);
    unsigned char f[1024];
    int32_t res[8];

    /* A body over the limit: -EMSGSIZE, then the connection closes. */
    int fd = raw_connect(l.path);
    le32(f, 0x3149434Bu);
    le32(f + 4, KC_IPC_FRAME_MAX + 1);
    cr_assert(send_all(fd, f, 8));
    cr_assert_eq(read_replies(fd, res, 8), 1);
    cr_assert_eq(res[0], -EMSGSIZE);
    close(fd);

    /* Bad magic: -EPROTO, closed. */
    fd = raw_connect(l.path);
    memcpy(f, "GET / HTTP/1.1\r\n\r\n", 18);
    cr_assert(send_all(fd, f, 18));
    cr_assert_eq(read_replies(fd, res, 8), 1);
    cr_assert_eq(res[0], -EPROTO);
    close(fd);

    /* Well delimited but bad TLVs: each answered -EPROTO, the connection
     * stays usable, and a valid OPEN after them succeeds. */
    fd = raw_connect(l.path);
    size_t k = 8;
    k += tlv(f + k, 1, 4, "\x01\0\0\0");
    k += tlv(f + k, 1, 4, "\x01\0\0\0"); /* duplicate */
    le32(f, 0x3149434Bu);
    le32(f + 4, (uint32_t)(k - 8));
    size_t k2 = k;
    k2 += 8;
    size_t b2 = k2;
    k2 += tlv(f + k2, 4, 1000, NULL) - 1000; /* claims 1000 bytes, has none */
    le32(f + k, 0x3149434Bu);
    le32(f + k + 4, (uint32_t)(k2 - b2));
    size_t k3 = k2 + 8, b3 = k3;
    k3 += tlv(f + k3, 1, 4, "\x01\0\0\0");
    k3 += tlv(f + k3, 2, 4, "\x07\0\0\0");
    k3 += tlv(f + k3, 8, 4, "\x01\0\0\0");
    le32(f + k2, 0x3149434Bu);
    le32(f + k2 + 4, (uint32_t)(k3 - b3));
    cr_assert(send_all(fd, f, k3));
    shutdown(fd, SHUT_WR);
    cr_assert_eq(read_replies(fd, res, 8), 3);
    cr_assert_eq(res[0], -EPROTO, "duplicate TLV");
    cr_assert_eq(res[1], -EPROTO, "TLV longer than its frame");
    cr_assert_eq(res[2], 0, "valid OPEN on the same connection");
    close(fd);

    /* A SEND whose element has the wrong size: -EINVAL, nothing enqueued. */
    fd = raw_connect(l.path);
    k = 8;
    int64_t zero = 0;
    k += tlv(f + k, 1, 4, "\x02\0\0\0");
    k += tlv(f + k, 2, 4, "\x07\0\0\0");
    k += tlv(f + k, 3, 8, &zero);
    k += tlv(f + k, 4, 3, "abc");
    le32(f, 0x3149434Bu);
    le32(f + 4, (uint32_t)(k - 8));
    cr_assert(send_all(fd, f, k));
    shutdown(fd, SHUT_WR);
    cr_assert_eq(read_replies(fd, res, 8), 1);
    cr_assert_eq(res[0], -EINVAL);
    cr_assert_eq(kc_chan_len(l.ch), 0);
    close(fd);
    local_down(&l);
}

Test(ipc, fuzzed_frames_never_crash_or_hang_the_server, .timeout = 240)
{
    struct local l;
    local_up(&l, "fuzz", KC_BUFFERED, 4);
    unsigned int seed = (unsigned)getpid();
    srand(seed);
    const int rounds = 2000 / KT_SCALE;
    unsigned char f[4096];
    int32_t res[64];
    int answered = 0, closed_only = 0;
    for (int i = 0; i < rounds; i++) {
        int fd = raw_connect(l.path);
        size_t n = 0;
        switch (i % 4) {
        case 0: /* raw random bytes */
            n = 1 + (size_t)rand() % 300;
            for (size_t j = 0; j < n; j++)
                f[j] = (unsigned char)rand();
            break;
        case 1: /* right magic, random length and body */
            n = 8 + (size_t)rand() % 300;
            le32(f, 0x3149434Bu);
            le32(f + 4, (uint32_t)rand() % 400);
            for (size_t j = 8; j < n; j++)
                f[j] = (unsigned char)rand();
            break;
        default: { /* well-framed TLV soup: plausible types, lying lengths */
            size_t k = 8;
            int ntlv = rand() % 6;
            for (int t = 0; t < ntlv && k < 3000; t++) {
                uint16_t type = (uint16_t)(rand() % 10);
                uint32_t real = (uint32_t)(rand() % 3 == 0 ? rand() % 16 : (type == 3 ? 8 : 4));
                if (type == 4 && rand() % 2)
                    real = 4; /* the element size of the channel */
                f[k] = (unsigned char)type;
                f[k + 1] = 0;
                le32(f + k + 2, rand() % 8 == 0 ? (uint32_t)rand() : real);
                for (uint32_t j = 0; j < real; j++)
                    f[k + 6 + j] = (unsigned char)(rand() % 4 == 0 ? rand() : (j == 0 ? 7 : 0));
                k += 6 + real;
            }
            le32(f, 0x3149434Bu);
            le32(f + 4, (uint32_t)(k - 8));
            n = k;
            break;
        }
        }
        send_all(fd, f, n); /* the server may already have closed: fine */
        shutdown(fd, SHUT_WR);
        int got = read_replies(fd, res, 64);
        if (got)
            answered++;
        else
            closed_only++;
        close(fd);
    }
    cr_log_info("fuzz seed %u: %d answered, %d closed without a reply", seed, answered,
                closed_only);
    cr_assert_gt(answered, 0, "the fuzzer reached the parser");
    /* Still serving, and the channel is intact and usable. */
    kc_ipc_chan_t *c;
    cr_assert_eq(kc_ipc_chan_open(&c, l.path, 7, 5000), 0);
    int v;
    while (kc_chan_recv(l.ch, &v, 0) == 0) {
    } /* the soup may have enqueued valid SENDs */
    cr_assert_eq(kc_ipc_send(c, &(int){77}, 1000), 0);
    cr_assert_eq(kc_chan_recv(l.ch, &v, 1000), 0);
    cr_assert_eq(v, 77);
    kc_ipc_chan_release(c);
    local_down(&l);
}

/* A CANCEL notice that reaches the server after its request was answered
 * (or with no request at all) is dropped: no reply, the stream stays in
 * step. */
Test(ipc, stray_cancel_notice_is_not_answered)
{
    struct local l;
    local_up(&l, "stray", KC_BUFFERED, 4);
    int fd = raw_connect(l.path);
    unsigned char f[128];
    size_t k = 8;
    k += tlv(f + k, 1, 4, "\x05\0\0\0"); /* CANCEL */
    le32(f, 0x3149434Bu);
    le32(f + 4, (uint32_t)(k - 8));
    cr_assert(send_all(fd, f, k));
    /* Then a request: its reply is the first thing to come back. */
    k = 8;
    int64_t zero = 0;
    k += tlv(f + k, 1, 4, "\x03\0\0\0"); /* RECV */
    k += tlv(f + k, 2, 4, "\x07\0\0\0");
    k += tlv(f + k, 3, 8, &zero);
    le32(f, 0x3149434Bu);
    le32(f + 4, (uint32_t)(k - 8));
    cr_assert(send_all(fd, f, k));
    shutdown(fd, SHUT_WR); /* the server closes once it has answered */
    int32_t res[4];
    cr_assert_eq(read_replies(fd, res, 4), 1, "one reply: the RECV's, none for the CANCEL");
    cr_assert_eq(res[0], -EAGAIN);
    close(fd);
    local_down(&l);
}

/* ---- peers going away ------------------------------------------------------------ */

Test(ipc, client_gone_cancels_the_servers_wait)
{
    struct local l;
    local_up(&l, "gone", KC_RENDEZVOUS, 0);
    int fd = raw_connect(l.path);
    unsigned char f[128];
    size_t k = 8;
    int64_t forever = -1;
    k += tlv(f + k, 1, 4, "\x03\0\0\0"); /* RECV */
    k += tlv(f + k, 2, 4, "\x07\0\0\0");
    k += tlv(f + k, 3, 8, &forever);
    le32(f, 0x3149434Bu);
    le32(f + 4, (uint32_t)(k - 8));
    cr_assert(send_all(fd, f, k));
    close(fd);
    /* The server's receive, which would wait forever, is cancelled: the
     * channel counts it, and a local send finds no receiver left. */
    uint64_t deadline = kt_now_ms() + 20000;
    kc_chan_snapshot_t s;
    do {
        cr_assert_lt(kt_now_ms(), deadline, "server kept waiting for a client that left");
        kt_sleep_ms(5);
        kc_chan_snapshot(l.ch, &s);
    } while (s.fail_canceled == 0);
    cr_assert_eq(kc_chan_send(l.ch, &(int){1}, 0), -EAGAIN, "no stale receiver");
    local_down(&l);
}

Test(ipc, server_destroy_answers_waiting_clients)
{
    struct local l;
    local_up(&l, "down", KC_BUFFERED, 2);
    kc_ipc_chan_t *c;
    cr_assert_eq(kc_ipc_chan_open(&c, l.path, 7, 5000), 0);
    struct rv r = {.path = l.path, .rc = 99};
    kc_coro_t *co;
    cr_assert_eq(kc_spawn(&co, rv_recv, &r, NULL), 0);
    /* Let it block on the empty channel (its first try answers -EAGAIN). */
    kc_chan_snapshot_t s;
    uint64_t deadline = kt_now_ms() + 20000;
    do {
        cr_assert_lt(kt_now_ms(), deadline);
        kt_sleep_ms(5);
        kc_chan_snapshot(l.ch, &s);
    } while (s.fail_again == 0);
    kc_ipc_server_destroy(l.s);
    cr_assert_eq(kc_coro_join_ms(co, 20000), 0);
    cr_assert(r.rc == -ESHUTDOWN || r.rc == -ECONNRESET, "got %s", kc_strerror(r.rc));
    cr_assert_eq(kc_ipc_recv(c, &(int){0}, 1000), -ECONNRESET);
    cr_assert_eq(kc_ipc_recv(c, &(int){0}, 1000), -ECONNRESET, "stays broken");
    kc_ipc_chan_release(c);
    kc_chan_destroy(l.ch);
    cr_assert_eq(kc_sched_stop(), 0);
}

struct blocked {
    kc_ipc_chan_t *c;       /* handle                           */
    int rc;                 /* result of the blocked recv       */
    struct kt_park park;    /* to see it block                  */
};

static void *blocked_recv(void *arg)
{
    struct blocked *b = arg;
    kt_park_enter(&b->park);
    struct dc_msg m;
    b->rc = kc_ipc_recv(b->c, &m, -1);
    atomic_store(&b->park.done, true);
    return NULL;
}

static void blocked_recv_coro(void *arg) { blocked_recv(arg); }

Test(ipc, server_killed_clients_error_out, .timeout = 120)
{
    char path[108];
    sock_path(path, sizeof path, "kill");
    pid_t srv = spawn_server(path);
    struct blocked t = {.rc = 99}, co = {.rc = 99};
    cr_assert_eq(kc_ipc_chan_open(&t.c, path, 1, 5000), 0);
    cr_assert_eq(kc_ipc_chan_open(&co.c, path, 1, 5000), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, blocked_recv, &t), 0);
    kc_coro_t *cc;
    cr_assert_eq(kc_spawn(&cc, blocked_recv_coro, &co, NULL), 0);
    kt_wait_parked(&t.park);
    kt_wait_parked(&co.park);
    cr_assert_not(atomic_load(&t.park.done), "recv on an empty channel returned");
    kill(srv, SIGKILL);
    wait_exit(srv, 20000);
    kt_join(th, 20000);
    cr_assert_eq(kc_coro_join_ms(cc, 20000), 0);
    cr_assert_eq(t.rc, -ECONNRESET, "thread: %s", kc_strerror(t.rc));
    cr_assert_eq(co.rc, -ECONNRESET, "coroutine: %s", kc_strerror(co.rc));
    cr_assert_eq(kc_ipc_send(t.c, &(struct dc_msg){0}, 1000), -ECONNRESET);
    kc_ipc_chan_release(t.c);
    kc_ipc_chan_release(co.c);
    kc_ipc_chan_t *c;
    int r = kc_ipc_chan_open(&c, path, 1, 1000);
    cr_assert(r == -ECONNREFUSED || r == -ENOENT, "open after death: %s", kc_strerror(r));
    /* A new server replaces the dead one's stale socket file. */
    srv = spawn_server(path);
    cr_assert_eq(kc_ipc_chan_open(&c, path, 1, 5000), 0);
    kc_ipc_chan_release(c);
    kill(srv, SIGTERM);
    wait_exit(srv, 20000);
    cr_assert_eq(kc_sched_stop(), 0);
}
