/* kcoro distributed channels: a channel served by one process over a Unix
 * socket and opened by id from others, with the local channel's semantics.
 *
 * Wire format (docs/kcoro.md, "Distributed channels"), all integers
 * little-endian, every length checked before use:
 *
 *   frame  = magic u32 "KCI1" | body length u32 (<= KC_IPC_FRAME_MAX) | body
 *   body   = TLV*   with TLV = type u16 | length u32 | value
 *
 * One request, one reply, in order, per connection; a client never sends a
 * second request before the reply to the first. The server answers every
 * frame it could delimit (a RESULT TLV, < 0 on error); a frame it cannot
 * delimit (bad magic, body over the limit) gets an error reply and the
 * connection is closed, since the stream can no longer be trusted.
 *
 * Server side: an accept coroutine and one coroutine per connection, on the
 * kcoro scheduler, doing socket I/O through the netpoller. A request that
 * must wait on the channel (a recv on an empty one, ...) waits with the
 * client's timeout; meanwhile a watcher coroutine reads the connection, so
 * a client that goes away (or breaks the protocol by sending) cancels the
 * wait at once instead of leaving a coroutine blocked for good.
 *
 * Peers must run under our uid (SO_PEERCRED), the socket file is 0600.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kc_internal.h"
#include "kc_sched.h"
#include "kcoro/kcoro.h"

#define IPC_MAGIC 0x3149434Bu     /* "KCI1" read as little-endian u32        */
#define IPC_VERSION 1u            /* protocol version carried by OPEN        */
#define IPC_HDR 8u                /* magic + body length                     */
#define TLV_HDR 6u                /* type + length                           */
/* Grace on top of a request's own timeout for its reply to come back. */
#define IPC_REPLY_GRACE_MS 5000
/* How long the server waits for the rest of a frame that has begun, and
 * for a reply to go out (a client that stops reading is dropped). */
#define IPC_IO_MS 10000
/* How long a cancelled client call waits for the reply to its cancelled
 * request (a live server answers at once; a hung one breaks the handle). */
#define IPC_CANCEL_GRACE_MS 1000
/* Largest body of a frame the server's watcher reads (a CANCEL is 10 B). */
#define IPC_NOTICE_MAX 64u

/* OP_CANCEL is a notice, not a request: it is never answered. A client
 * whose wait for a reply was cancelled sends it (just the OP TLV); the
 * server cancels the request that waits on the channel, if any, and answers
 * that request as usual (-ECANCELED, or its result if it completed first);
 * a CANCEL that finds no waiting request (it came after the reply left) is
 * dropped. */
enum ipc_op { OP_OPEN = 1, OP_SEND = 2, OP_RECV = 3, OP_CLOSE = 4, OP_CANCEL = 5 };
enum ipc_tlv {
    T_OP = 1,        /* u32 enum ipc_op                    */
    T_CHAN = 2,      /* u32 channel id                     */
    T_TIMEOUT = 3,   /* i64 milliseconds (kcoro meaning)   */
    T_DATA = 4,      /* element bytes                      */
    T_RESULT = 5,    /* i32: 0 or a negative errno         */
    T_ELEM = 6,      /* u32 element size                   */
    T_KIND = 7,      /* u32 enum kc_chan_kind              */
    T_VERSION = 8,   /* u32 protocol version               */
    T_MAX = 8
};

/* ---- encoding ----------------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A frame being built: header space first, then TLVs. */
typedef struct frame {
    unsigned char *buf;  /* IPC_HDR + KC_IPC_FRAME_MAX bytes               */
    size_t len;          /* bytes used, header included                    */
} frame_t;

static void frame_begin(frame_t *f) { f->len = IPC_HDR; }

static int tlv_put(frame_t *f, uint16_t type, const void *val, uint32_t n)
{
    if (f->len - IPC_HDR + TLV_HDR + (size_t)n > KC_IPC_FRAME_MAX)
        return -EMSGSIZE;
    put16(f->buf + f->len, type);
    put32(f->buf + f->len + 2, n);
    if (n)
        memcpy(f->buf + f->len + TLV_HDR, val, n);
    f->len += TLV_HDR + n;
    return 0;
}

static int tlv_u32(frame_t *f, uint16_t type, uint32_t v)
{
    unsigned char b[4];
    put32(b, v);
    return tlv_put(f, type, b, 4);
}

static int tlv_i64(frame_t *f, uint16_t type, int64_t v)
{
    unsigned char b[8];
    put64(b, (uint64_t)v);
    return tlv_put(f, type, b, 8);
}

static void frame_end(frame_t *f)
{
    put32(f->buf, IPC_MAGIC);
    put32(f->buf + 4, (uint32_t)(f->len - IPC_HDR));
}

/* A parsed message: which TLVs were present and their values. */
typedef struct msg {
    uint32_t have;             /* bit (1 << type) per TLV present           */
    uint32_t op, chan, elem, kind, version; /* u32 fields                   */
    int64_t timeout;           /* T_TIMEOUT                                 */
    int32_t result;            /* T_RESULT                                  */
    const unsigned char *data; /* T_DATA value (points into the frame)      */
    uint32_t data_len;         /* its length                                */
} msg_t;

/* Parses a body of n bytes. Every TLV must fit in what is left, be known,
 * appear at most once and have its type's exact size. -EPROTO otherwise. */
static int msg_parse(const unsigned char *b, size_t n, msg_t *m)
{
    memset(m, 0, sizeof *m);
    size_t off = 0;
    while (off < n) {
        if (n - off < TLV_HDR)
            return -EPROTO;
        uint16_t type = get16(b + off);
        uint32_t len = get32(b + off + 2);
        off += TLV_HDR;
        if (len > n - off || type == 0 || type > T_MAX || (m->have & (1u << type)))
            return -EPROTO;
        const unsigned char *v = b + off;
        off += len;
        m->have |= 1u << type;
        size_t want = type == T_DATA ? len : type == T_TIMEOUT ? 8 : 4;
        if (len != want)
            return -EPROTO;
        switch (type) {
        case T_OP: m->op = get32(v); break;
        case T_CHAN: m->chan = get32(v); break;
        case T_TIMEOUT: m->timeout = (int64_t)get64(v); break;
        case T_DATA: m->data = v; m->data_len = len; break;
        case T_RESULT: m->result = (int32_t)get32(v); break;
        case T_ELEM: m->elem = get32(v); break;
        case T_KIND: m->kind = get32(v); break;
        case T_VERSION: m->version = get32(v); break;
        }
    }
    return 0;
}

static bool has(const msg_t *m, int type) { return m->have & (1u << type); }

/* ---- frame I/O ------------------------------------------------------------ */

/* Reads exactly n bytes. -ECONNRESET at end of file. */
static int read_full(int fd, unsigned char *p, size_t n, long timeout_ms,
                     const kc_cancel_t *cancel)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = kc_read(fd, p + got, n - got, timeout_ms, cancel);
        if (r == 0)
            return -ECONNRESET;
        if (r < 0)
            return (int)r;
        got += (size_t)r;
    }
    return 0;
}

/* Reads one frame into f->buf; *body_len gets the body's length.
 * -EPROTO (bad magic) and -EMSGSIZE (too long) leave the stream unusable.
 * The first byte waits up to first_ms (cancelled by `cancel`: then nothing
 * was read), the rest of the frame IPC_IO_MS (cancelled by rest_cancel: a
 * frame cut in the middle leaves the stream unusable). */
static int frame_read(int fd, frame_t *f, size_t *body_len, long first_ms,
                      const kc_cancel_t *cancel, const kc_cancel_t *rest_cancel)
{
    ssize_t r = kc_read(fd, f->buf, IPC_HDR, first_ms, cancel);
    if (r == 0)
        return -ECONNRESET;
    if (r < 0)
        return (int)r;
    long rest_ms = first_ms < 0 ? -1 : IPC_IO_MS;
    int e = read_full(fd, f->buf + r, IPC_HDR - (size_t)r, rest_ms, rest_cancel);
    if (e < 0)
        return e;
    if (get32(f->buf) != IPC_MAGIC)
        return -EPROTO;
    uint32_t n = get32(f->buf + 4);
    if (n > KC_IPC_FRAME_MAX)
        return -EMSGSIZE;
    e = read_full(fd, f->buf + IPC_HDR, n, rest_ms, rest_cancel);
    if (e < 0)
        return e;
    *body_len = n;
    return 0;
}

static int frame_write(int fd, frame_t *f, long timeout_ms, const kc_cancel_t *cancel)
{
    frame_end(f);
    ssize_t w = kc_write(fd, f->buf, f->len, timeout_ms, cancel);
    if (w == (ssize_t)f->len)
        return 0;
    if (w >= 0 || w == -EPIPE)
        return -ECONNRESET; /* short: the peer went away (or the timeout hit) */
    return (int)w;
}

static int sun_fill(struct sockaddr_un *a, const char *path)
{
    if (!path || !*path)
        return -EINVAL;
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof a->sun_path)
        return -ENAMETOOLONG;
    memcpy(a->sun_path, path, n + 1);
    return 0;
}

static pthread_once_t g_dbg_once = PTHREAD_ONCE_INIT;

/* KCORO_DEBUG also for processes that use IPC without the scheduler. */
static void dbg_init(void)
{
    const char *d = getenv("KCORO_DEBUG");
    if (d && *d && *d != '0')
        kc__debug = 1;
}

/* ---- server ---------------------------------------------------------------- */

struct export {
    uint32_t id;               /* the id clients open                        */
    kc_chan_t *ch;             /* the served channel (not owned)             */
};

struct kc_ipc_server {
    int lfd;                   /* listening socket                           */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unlinked at destroy */
    kc_cancel_t *stop;         /* triggered by destroy: ends every coroutine */
    kc_coro_t *acceptor;       /* the accept loop (joined by destroy)        */
    kc_parker_t *acc_parker;   /* its parker: woken when the last conn ends  */
    _Atomic int nconn;         /* connection coroutines alive                */
    pthread_mutex_t mu;        /* guards the export table                    */
    struct export ex[KC_IPC_CHANS_MAX]; /* exported channels                 */
    size_t nex;                /* entries used                               */
    uid_t uid;                 /* the only uid allowed to connect            */
    _Atomic uint64_t requests, bad_frames; /* counters (debug log)           */
};

static kc_chan_t *export_find(kc_ipc_server_t *s, uint32_t id)
{
    kc_chan_t *ch = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nex; i++)
        if (s->ex[i].id == id)
            ch = s->ex[i].ch;
    pthread_mutex_unlock(&s->mu);
    return ch;
}

struct conn {
    kc_ipc_server_t *s;        /* owner                                      */
    int fd;                    /* the client                                 */
    frame_t f;                 /* request in, reply out (one buffer)         */
    unsigned char *elem;       /* element buffer (KC_IPC_ELEM_MAX bytes)     */
    kc_cancel_t *tok;          /* child of s->stop: per blocking request     */
    _Atomic bool peer_gone;    /* the watcher saw EOF, an error or a byte    */
};

/* Watches the connection while a request waits on the channel: the client
 * sends nothing until it has its reply but a CANCEL notice, so a CANCEL
 * cancels the wait (the request is answered), and anything else readable
 * (EOF, an error, other bytes) means the client is gone or broken: cancel
 * the wait and drop the connection. */
struct watch {
    struct conn *c;            /* the connection                             */
    kc_cancel_t *done;         /* triggered when the request finished        */
};

static void watcher(void *arg)
{
    struct watch *w = arg;
    struct conn *c = w->c;
    unsigned char b[IPC_HDR + IPC_NOTICE_MAX];
    /* Only the wait for the first byte ends with the request: a frame that
     * has begun is read whole, so the stream stays in step. */
    ssize_t r = kc_read(c->fd, b, IPC_HDR, -1, w->done);
    if (r == -ECANCELED)
        return;
    bool notice = false;
    if (r > 0 && read_full(c->fd, b + r, IPC_HDR - (size_t)r, IPC_IO_MS, c->s->stop) == 0 &&
        get32(b) == IPC_MAGIC) {
        uint32_t n = get32(b + 4);
        msg_t m;
        notice = n <= IPC_NOTICE_MAX &&
                 read_full(c->fd, b + IPC_HDR, n, IPC_IO_MS, c->s->stop) == 0 &&
                 msg_parse(b + IPC_HDR, n, &m) == 0 && has(&m, T_OP) && m.op == OP_CANCEL;
    }
    if (notice)
        kc__dbg("ipc server: fd %d client cancelled its request", c->fd);
    else
        atomic_store(&c->peer_gone, true);
    kc_cancel_trigger(c->tok);
}

/* Runs a channel operation that may block, watched (see above). */
static int chan_op_watched(struct conn *c, kc_chan_t *ch, bool send, long timeout_ms)
{
    int r = send ? kc_chan_send_c(ch, c->elem, 0, c->tok) : kc_chan_recv_c(ch, c->elem, 0, c->tok);
    if (r != -EAGAIN || timeout_ms == 0)
        return r;
    kc_cancel_t *done;
    if (kc_cancel_create(&done, c->tok) < 0)
        return -ENOMEM;
    struct watch w = {.c = c, .done = done};
    kc_coro_t *wc;
    r = kc_spawn(&wc, watcher, &w, NULL);
    if (r < 0) {
        kc_cancel_destroy(done);
        return r;
    }
    r = send ? kc_chan_send_c(ch, c->elem, timeout_ms, c->tok)
             : kc_chan_recv_c(ch, c->elem, timeout_ms, c->tok);
    kc_cancel_trigger(done);
    kc_coro_join(wc);
    kc_cancel_destroy(done);
    return r;
}

/* Executes one parsed request, building the reply in c->f. */
static void handle(struct conn *c, const msg_t *m)
{
    frame_t *f = &c->f;
    int res = 0;
    kc_chan_t *ch = NULL;
    bool reply_data = false;
    if (!has(m, T_OP) || !has(m, T_CHAN)) {
        res = -EPROTO;
        goto reply;
    }
    ch = export_find(c->s, m->chan);
    if (!ch) {
        res = -ENOENT;
        goto reply;
    }
    long timeout = has(m, T_TIMEOUT) ? (long)m->timeout : 0;
    switch (m->op) {
    case OP_OPEN:
        res = has(m, T_VERSION) && m->version == IPC_VERSION ? 0 : -EPROTONOSUPPORT;
        break;
    case OP_SEND:
        if (!has(m, T_DATA) || m->data_len != kc_chan_elem_size(ch) || !has(m, T_TIMEOUT)) {
            res = -EINVAL;
            break;
        }
        memcpy(c->elem, m->data, m->data_len);
        res = chan_op_watched(c, ch, true, timeout);
        break;
    case OP_RECV:
        if (!has(m, T_TIMEOUT)) {
            res = -EINVAL;
            break;
        }
        res = chan_op_watched(c, ch, false, timeout);
        reply_data = res == 0;
        break;
    case OP_CLOSE:
        kc_chan_close(ch);
        break;
    default:
        res = -EPROTO;
    }
    /* A wait cancelled because the server stops is reported as such. */
    if (res == -ECANCELED && kc_cancel_is_set(c->s->stop))
        res = -ESHUTDOWN;
reply:
    frame_begin(f);
    tlv_u32(f, T_RESULT, (uint32_t)res);
    if (res == 0 && m->op == OP_OPEN) {
        tlv_u32(f, T_ELEM, (uint32_t)kc_chan_elem_size(ch));
        tlv_u32(f, T_KIND, (uint32_t)kc_chan_kind(ch));
    }
    if (reply_data)
        tlv_put(f, T_DATA, c->elem, (uint32_t)kc_chan_elem_size(ch));
    kc__dbg("ipc server: fd %d op %u chan %u -> %d", c->fd, m->op, m->chan, res);
}

/* Replies with just a result (framing errors). */
static void reply_error(struct conn *c, int res)
{
    frame_begin(&c->f);
    tlv_u32(&c->f, T_RESULT, (uint32_t)res);
    frame_write(c->fd, &c->f, 0, NULL); /* best effort: we close next */
}

static void conn_main(void *arg)
{
    struct conn *c = arg;
    kc_ipc_server_t *s = c->s;
    kc__dbg("ipc server: connection fd %d opened", c->fd);
    for (;;) {
        size_t n = 0;
        int r = frame_read(c->fd, &c->f, &n, -1, s->stop, s->stop);
        if (r == -EPROTO || r == -EMSGSIZE) {
            atomic_fetch_add(&s->bad_frames, 1);
            kc__dbg("ipc server: fd %d bad frame (%s), closing", c->fd, kc_strerror(r));
            reply_error(c, r);
            break;
        }
        if (r < 0) {
            kc__dbg("ipc server: fd %d ends: %s", c->fd,
                    r == -ECONNRESET ? "closed by the client" : kc_strerror(r));
            break;
        }
        msg_t m;
        int pr = msg_parse(c->f.buf + IPC_HDR, n, &m);
        if (pr == 0 && has(&m, T_OP) && m.op == OP_CANCEL)
            continue; /* a notice that came after its request's reply */
        atomic_fetch_add(&s->requests, 1);
        if (pr < 0) {
            atomic_fetch_add(&s->bad_frames, 1);
            kc__dbg("ipc server: fd %d malformed TLVs", c->fd);
            frame_begin(&c->f);
            tlv_u32(&c->f, T_RESULT, (uint32_t)-EPROTO);
        } else {
            if (kc_cancel_create(&c->tok, s->stop) < 0) {
                frame_begin(&c->f);
                tlv_u32(&c->f, T_RESULT, (uint32_t)-ENOMEM);
            } else {
                handle(c, &m); /* m points into c->f.buf: copied before the reply overwrites it */
                kc_cancel_destroy(c->tok);
                c->tok = NULL;
            }
        }
        if (atomic_load(&c->peer_gone))
            break;
        if (frame_write(c->fd, &c->f, IPC_IO_MS, NULL) < 0)
            break;
    }
    close(c->fd);
    free(c->f.buf);
    free(c->elem);
    free(c);
    /* Read before the decrement: once the count is 0 the server may be
     * freed at any moment (parkers themselves are never freed). */
    kc_parker_t *acc = s->acc_parker;
    if (atomic_fetch_sub(&s->nconn, 1) == 1)
        kc__unpark(acc); /* maybe the last one destroy waits for */
}

static bool peer_allowed(kc_ipc_server_t *s, int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.uid == s->uid;
}

static void accept_main(void *arg)
{
    kc_ipc_server_t *s = arg;
    s->acc_parker = kc__parker_self();
    for (;;) {
        int fd = kc_accept(s->lfd, NULL, NULL, -1, s->stop);
        if (fd == -ECANCELED)
            break;
        if (fd < 0) {
            /* Out of fds or memory: give the others time to finish. */
            kc__dbg("ipc server: accept: %s", kc_strerror(fd));
            if (kc_sleep_ms_c(50, s->stop) == -ECANCELED)
                break;
            continue;
        }
        if (!peer_allowed(s, fd)) {
            kc__dbg("ipc server: refused a peer of another uid");
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c) {
            c->f.buf = malloc(IPC_HDR + KC_IPC_FRAME_MAX);
            c->elem = malloc(KC_IPC_ELEM_MAX);
        }
        if (!c || !c->f.buf || !c->elem) {
            if (c) {
                free(c->f.buf);
                free(c->elem);
            }
            free(c);
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        atomic_fetch_add(&s->nconn, 1);
        if (kc_go(conn_main, c, NULL) < 0) {
            atomic_fetch_sub(&s->nconn, 1);
            close(fd);
            free(c->f.buf);
            free(c->elem);
            free(c);
        }
    }
    /* Every connection coroutine sees the stop token; wait for them. */
    while (atomic_load(&s->nconn) > 0)
        kc__park(s->acc_parker, 0);
}

/* Binds path, replacing a stale socket file (nobody listening) but never
 * anything else. */
static int bind_path(int fd, const struct sockaddr_un *a)
{
    if (bind(fd, (const struct sockaddr *)a, sizeof *a) == 0)
        return 0;
    if (errno != EADDRINUSE)
        return -errno;
    struct stat st;
    if (lstat(a->sun_path, &st) < 0)
        return -EADDRINUSE;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -errno;
    int live = connect(probe, (const struct sockaddr *)a, sizeof *a) == 0;
    close(probe);
    if (live)
        return -EADDRINUSE;
    unlink(a->sun_path);
    return bind(fd, (const struct sockaddr *)a, sizeof *a) == 0 ? 0 : -errno;
}

/* What kc_ipc_serve and kc_ipc_chan_open both check first: an out pointer,
 * debug logging set up once, and a socket path that fits sun_path. */
static int call_begin(const void *out, const char *path, struct sockaddr_un *a)
{
    if (!out)
        return -EINVAL;
    pthread_once(&g_dbg_once, dbg_init);
    return sun_fill(a, path);
}

int kc_ipc_serve(kc_ipc_server_t **out, const char *path)
{
    struct sockaddr_un a;
    int r = call_begin(out, path, &a);
    if (r < 0)
        return r;
    kc_ipc_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->uid = geteuid();
    memcpy(s->path, a.sun_path, sizeof s->path);
    pthread_mutex_init(&s->mu, NULL);
    r = kc_cancel_create(&s->stop, NULL);
    if (r < 0)
        goto fail_tok;
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0) {
        r = -errno;
        goto fail_sock;
    }
    r = bind_path(s->lfd, &a);
    if (r < 0)
        goto fail_bind;
    /* 0600: the uid check on accept covers the moment before the chmod. */
    if (chmod(a.sun_path, 0600) < 0 || listen(s->lfd, 128) < 0) {
        r = -errno;
        goto fail_listen;
    }
    r = kc_spawn(&s->acceptor, accept_main, s, NULL);
    if (r < 0)
        goto fail_listen;
    kc__dbg("ipc server: serving on %s", s->path);
    *out = s;
    return 0;
fail_listen:
    unlink(a.sun_path);
fail_bind:
    close(s->lfd);
fail_sock:
    kc_cancel_destroy(s->stop);
fail_tok:
    pthread_mutex_destroy(&s->mu);
    free(s);
    return r;
}

int kc_ipc_export(kc_ipc_server_t *s, uint32_t id, kc_chan_t *ch)
{
    if (!s || !ch)
        return -EINVAL;
    if (kc_chan_elem_size(ch) > KC_IPC_ELEM_MAX)
        return -EMSGSIZE;
    int r = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nex; i++)
        if (s->ex[i].id == id)
            r = -EEXIST;
    if (!r && s->nex == KC_IPC_CHANS_MAX)
        r = -ENOSPC;
    if (!r)
        s->ex[s->nex++] = (struct export){.id = id, .ch = ch};
    pthread_mutex_unlock(&s->mu);
    return r;
}

void kc_ipc_server_destroy(kc_ipc_server_t *s)
{
    if (!s)
        return;
    kc_cancel_trigger(s->stop);
    kc_coro_join(s->acceptor);
    close(s->lfd);
    unlink(s->path);
    kc__dbg("ipc server: stopped (%llu requests, %llu bad frames)",
            (unsigned long long)atomic_load(&s->requests),
            (unsigned long long)atomic_load(&s->bad_frames));
    kc_cancel_destroy(s->stop);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- client ------------------------------------------------------------------ */

struct kc_ipc_chan {
    int fd;                    /* connection to the server                   */
    uint32_t id;               /* the channel's id                           */
    size_t elem;               /* its element size                           */
    int kind;                  /* its kind                                   */
    _Atomic bool busy;         /* a call is running (one at a time)          */
    bool broken;               /* the stream lost sync: every call fails     */
    frame_t f;                 /* request out, reply in                      */
};

/* The wait for a reply was cancelled: tells the server (a CANCEL notice)
 * and reads the reply, which then comes at once: -ECANCELED, or the
 * request's own result if it completed first (a received element is not
 * lost). -ECANCELED if no reply comes within IPC_CANCEL_GRACE_MS. */
static int cancel_call(kc_ipc_chan_t *c, size_t *n)
{
    unsigned char b[IPC_HDR + 16];
    frame_t f = {.buf = b};
    frame_begin(&f);
    tlv_u32(&f, T_OP, OP_CANCEL);
    int r = frame_write(c->fd, &f, IPC_CANCEL_GRACE_MS, NULL);
    if (r == 0)
        r = frame_read(c->fd, &c->f, n, IPC_CANCEL_GRACE_MS, NULL, NULL);
    return r == -ETIMEDOUT ? -ECANCELED : r;
}

/* One round trip. timeout_ms is the request's own; the reply may take that
 * plus a grace (forever if the request waits forever). On a transport
 * failure the handle is broken: later calls fail with -ECONNRESET. The
 * wait for the reply ends early when `cancel` fires (see cancel_call). */
static int call(kc_ipc_chan_t *c, msg_t *rep, long timeout_ms, const kc_cancel_t *cancel)
{
    long wait_ms = timeout_ms < 0 ? -1 : timeout_ms + IPC_REPLY_GRACE_MS;
    int r = frame_write(c->fd, &c->f, wait_ms, NULL);
    size_t n = 0;
    if (r == 0)
        r = frame_read(c->fd, &c->f, &n, wait_ms, cancel, NULL);
    if (r == -ECANCELED)
        r = cancel_call(c, &n);
    if (r == 0)
        r = msg_parse(c->f.buf + IPC_HDR, n, rep);
    if (r == 0 && !has(rep, T_RESULT))
        r = -EPROTO;
    if (r < 0) {
        c->broken = true;
        kc__dbg("ipc client: chan %u transport failed: %s", c->id, kc_strerror(r));
        return r == -EPIPE ? -ECONNRESET : r;
    }
    return 0;
}

static int enter(kc_ipc_chan_t *c)
{
    if (!c)
        return -EINVAL;
    if (atomic_exchange(&c->busy, true))
        return -EBUSY;
    if (c->broken) {
        atomic_store(&c->busy, false);
        return -ECONNRESET;
    }
    return 0;
}

static int leave(kc_ipc_chan_t *c, int r)
{
    atomic_store(&c->busy, false);
    return r;
}

int kc_ipc_chan_open(kc_ipc_chan_t **out, const char *path, uint32_t id, long timeout_ms)
{
    struct sockaddr_un a;
    int r = call_begin(out, path, &a);
    if (r < 0)
        return r;
    kc_ipc_chan_t *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->f.buf = malloc(IPC_HDR + KC_IPC_FRAME_MAX);
    c->id = id;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!c->f.buf || c->fd < 0) {
        r = c->fd < 0 ? -errno : -ENOMEM;
        goto fail;
    }
    r = kc_connect(c->fd, (struct sockaddr *)&a, sizeof a, timeout_ms, NULL);
    if (r < 0)
        goto fail;
    frame_begin(&c->f);
    tlv_u32(&c->f, T_OP, OP_OPEN);
    tlv_u32(&c->f, T_CHAN, id);
    tlv_u32(&c->f, T_VERSION, IPC_VERSION);
    msg_t rep;
    r = call(c, &rep, timeout_ms, NULL);
    if (r == 0)
        r = rep.result;
    if (r == 0 && (!has(&rep, T_ELEM) || !has(&rep, T_KIND) || rep.elem == 0 ||
                   rep.elem > KC_IPC_ELEM_MAX))
        r = -EPROTO;
    if (r < 0)
        goto fail;
    c->elem = rep.elem;
    c->kind = (int)rep.kind;
    kc__dbg("ipc client: opened chan %u on %s (elem %zu)", id, a.sun_path, c->elem);
    *out = c;
    return 0;
fail:
    if (c->fd >= 0)
        close(c->fd);
    free(c->f.buf);
    free(c);
    return r;
}

static int xfer(kc_ipc_chan_t *c, int op, const void *in, void *out, long timeout_ms,
                const kc_cancel_t *cancel)
{
    int r = enter(c);
    if (r < 0)
        return r;
    if (cancel && kc_cancel_is_set(cancel))
        return leave(c, -ECANCELED);
    frame_begin(&c->f);
    tlv_u32(&c->f, T_OP, (uint32_t)op);
    tlv_u32(&c->f, T_CHAN, c->id);
    tlv_i64(&c->f, T_TIMEOUT, timeout_ms);
    if (in)
        tlv_put(&c->f, T_DATA, in, (uint32_t)c->elem);
    msg_t rep;
    r = call(c, &rep, timeout_ms, cancel);
    if (r < 0)
        return leave(c, r);
    r = rep.result;
    if (out && r == 0) {
        if (!has(&rep, T_DATA) || rep.data_len != c->elem) {
            c->broken = true;
            return leave(c, -EPROTO);
        }
        memcpy(out, rep.data, c->elem);
    }
    return leave(c, r > 0 ? -EPROTO : r);
}

int kc_ipc_send_c(kc_ipc_chan_t *c, const void *msg, long timeout_ms, const kc_cancel_t *cancel)
{
    if (!msg)
        return -EINVAL;
    return xfer(c, OP_SEND, msg, NULL, timeout_ms, cancel);
}

int kc_ipc_recv_c(kc_ipc_chan_t *c, void *out, long timeout_ms, const kc_cancel_t *cancel)
{
    if (!out)
        return -EINVAL;
    return xfer(c, OP_RECV, NULL, out, timeout_ms, cancel);
}

int kc_ipc_send(kc_ipc_chan_t *c, const void *msg, long timeout_ms)
{
    return kc_ipc_send_c(c, msg, timeout_ms, NULL);
}

int kc_ipc_recv(kc_ipc_chan_t *c, void *out, long timeout_ms)
{
    return kc_ipc_recv_c(c, out, timeout_ms, NULL);
}

int kc_ipc_close(kc_ipc_chan_t *c) { return xfer(c, OP_CLOSE, NULL, NULL, 0, NULL); }

size_t kc_ipc_elem_size(const kc_ipc_chan_t *c) { return c ? c->elem : 0; }

int kc_ipc_kind(const kc_ipc_chan_t *c) { return c ? c->kind : -EINVAL; }

void kc_ipc_chan_release(kc_ipc_chan_t *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->f.buf);
    free(c);
}
