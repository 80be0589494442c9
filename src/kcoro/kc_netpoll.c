/* kcoro netpoller: blocking-style I/O on non-blocking fds that parks the
 * caller (a coroutine switches away, a thread sleeps) until the fd is ready.
 *
 * Workload: many sockets (thousands), each with one reader and maybe one
 * writer, where most operations complete at once (data is there, the send
 * buffer has room). So every operation first simply tries the system call;
 * only EAGAIN takes the slow path:
 *
 *   1. read the fd's readiness sequence for that direction (before the try);
 *   2. try the call; EAGAIN:
 *   3. make sure the fd is in the epoll set (edge-triggered, both
 *      directions; EPOLL_CTL_ADD answers EEXIST when it already is);
 *   4. under the fd's lock: if the sequence moved since step 1, an edge came
 *      in between, retry; else queue a waiter and park.
 *
 * Who polls (kc__netpoll, called by the scheduler, kc_sched.c): a worker
 * that runs out of coroutines polls without blocking and takes every
 * coroutine of the batch onto its own run queue (one wake-up of another
 * worker at most, which steals from it); the last worker to go idle blocks
 * in the poll, its timeout the nearest timer of its heap; a busy worker
 * polls without blocking every so often so that I/O never waits for the
 * run queues to drain. Ready coroutines thus move from the epoll batch to
 * a run queue on the same thread, without a lock or a futex per wake-up.
 * The blocked worker waits on a second epoll set holding the fd set and an
 * eventfd (`wfd`), so the scheduler can break the wait when work arrives
 * (kc__netpoll_break) without any other poller seeing that eventfd.
 *
 * Plain threads (no scheduler of their own) blocked in kc_read & co. are
 * served by a poller thread started the first time a thread waits; it
 * blocks on the fd set itself and wakes whoever waits (coroutines through
 * the injection queue, all of one batch under one lock). A process that
 * waits only in coroutines never starts it.
 *
 * The sequence check in step 4 and the bump under the same lock make a
 * lost wake-up impossible whoever polls: an edge either happens before the
 * waiter looks (the sequence moved) or finds the waiter queued; edge-
 * triggered events go to one poller each.
 *
 * Step 3 runs on every park rather than once per fd because we cannot see
 * close(2): after a close the kernel drops the registration, the number is
 * reused by a new file, and a "registered" flag of ours would be stale.
 * EPOLL_CTL_ADD on a registered fd is a lookup, but a system call: one per
 * request of a request/response loop, 14% of kc_echo's CPU. So an owner
 * who closes the fd with kc_close may register it once (kc_fd_register,
 * Go's netFD does the same): its waits then skip step 3, and kc_close
 * forgets the registration before the number can be reused. kc_accept
 * forgets it too for the number it hands out (a kept fd closed with plain
 * close(2) by mistake then costs one epoll_ctl, not a lost wake-up).
 *
 * Per-fd state lives in a two-level table indexed by fd number, allocated
 * a chunk at a time and never freed (a late wake-up for a closed fd then
 * touches valid memory and costs one spurious retry at most).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kc_internal.h"
#include "kc_sched.h"
#include "kcoro/kcoro.h"

#define KC_PD_CHUNK 1024           /* fds per table chunk                      */
#define KC_PD_CHUNKS 4096          /* chunks: fds up to 4M (beyond: -EBADF)    */
#define KC_POLL_EVENTS 256         /* events taken per epoll_wait              */

enum { DIR_READ = 0, DIR_WRITE = 1 };

/* A blocked operation, on its caller's stack, queued on its fd's direction. */
typedef struct kc_fdw {
    struct kc_fdw *next;  /* queue link                                    */
    struct kc_fdw *prev;  /* queue link                                    */
    kc_parker_t *parker;  /* whom to wake                                  */
    bool queued;          /* still linked (guarded by the fd's lock)        */
} kc_fdw_t;

/* netpoll statistics of one worker (kc_netpoll_stats sums them). */
typedef struct kc_np_count {
    _Alignas(64) _Atomic uint64_t waits; /* parks for readiness              */
    _Atomic uint64_t wakeups;   /* waiters woken by the poller              */
    _Atomic uint64_t events;    /* epoll events handled                     */
    _Atomic uint64_t polls;     /* epoll_wait calls that returned events    */
    _Atomic uint64_t ctls;      /* epoll_ctl calls (EPOLL_CTL_ADD)          */
} kc_np_count_t;

/* Poll state of one fd number. */
typedef struct kc_pd {
    kc_lock_t lock;             /* guards the queues, orders seq bumps      */
    _Atomic uint32_t seq[2];    /* readiness edges seen, per direction      */
    kc_fdw_t *head[2];          /* waiters per direction (oldest first)     */
    kc_fdw_t *tail[2];          /* newest waiter per direction              */
    _Atomic uint32_t drained;   /* 1 + the read sequence seen before a short
                                 * read (the fd was drained); 0: unknown     */
    _Atomic bool hup;           /* a hang-up or error was reported: an EOF or
                                 * error may wait to be read (no skipping)   */
    _Atomic bool kept;          /* kc_fd_register put the fd in the epoll set
                                 * and its owner closes it with kc_close: a
                                 * wait makes no epoll_ctl                  */
} kc_pd_t;

static struct {
    pthread_once_t once;        /* creates the epoll sets                   */
    pthread_once_t thread_once; /* starts the poller thread (thread waiters) */
    int epfd;                   /* the epoll set of the fds                 */
    int wfd;                    /* epoll set {epfd, evfd}: a blocked worker */
    int evfd;                   /* eventfd that breaks a worker's poll      */
    int start_err;              /* 0 or why the epoll sets could not be made */
    int thread_err;             /* 0 or why the poller thread did not start  */
    _Atomic bool ready;         /* the sets exist (workers may poll)         */
    _Atomic bool thread_only;   /* KCORO_NETPOLL=thread: workers never poll  */
    _Atomic int break_pending;  /* evfd was written and not yet drained      */
    /* Written twice per park by every worker: a line of its own, apart
     * from what every I/O call reads (epfd, the table). */
    _Alignas(64) _Atomic int parked; /* waiters parked now (0: nobody to poll for) */
    _Alignas(64) _Atomic(kc_pd_t *) chunks[KC_PD_CHUNKS]; /* the fd table  */
    /* Statistics, one cache line per worker (index + 1; 0: other threads):
     * one global line written by every request of every worker moved
     * between the cores at each count (the poller's wake-up count showed
     * in a quarter of dispatch()'s samples). */
    kc_np_count_t count[KC_THREADS_MAX + 1];
} np = {.once = PTHREAD_ONCE_INIT, .thread_once = PTHREAD_ONCE_INIT, .epfd = -1, .wfd = -1,
         .evfd = -1};

/* The calling thread's statistics line. */
static kc_np_count_t *counts(void)
{
    return &np.count[kc__worker_index() + 1];
}

/* Adds n to a statistics counter (relaxed: only kc_netpoll_stats reads). */
static inline void count_add(_Atomic uint64_t *ctr, uint64_t n)
{
    atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

static kc_pd_t *pd_get(int fd)
{
    if (fd < 0 || (size_t)fd / KC_PD_CHUNK >= KC_PD_CHUNKS)
        return NULL;
    _Atomic(kc_pd_t *) *slot = &np.chunks[(size_t)fd / KC_PD_CHUNK];
    kc_pd_t *c = atomic_load_explicit(slot, memory_order_acquire);
    if (!c) {
        kc_pd_t *fresh = calloc(KC_PD_CHUNK, sizeof *fresh);
        if (!fresh)
            return NULL;
        kc_pd_t *none = NULL;
        if (atomic_compare_exchange_strong_explicit(slot, &none, fresh, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            c = fresh;
        } else {
            free(fresh);
            c = none;
        }
    }
    return &c[(size_t)fd % KC_PD_CHUNK];
}

/* Wakes every waiter of one direction (fd lock held): coroutines into b. */
static uint32_t wake_dir(kc_pd_t *pd, int dir, kc_batch_t *b)
{
    uint32_t n = 0;
    atomic_fetch_add_explicit(&pd->seq[dir], 1, memory_order_release);
    for (kc_fdw_t *w = pd->head[dir], *next; w; w = next) {
        next = w->next;
        w->queued = false;
        /* The waiter's frame may vanish once we unlock; its parker never
         * does (kc_sync.h), and unparking does not block. */
        kc__batch_unpark(b, w->parker);
        n++;
    }
    pd->head[dir] = pd->tail[dir] = NULL;
    return n;
}

/* Handles n events: bumps the ready directions' sequences and readies
 * their waiters (coroutines into b). */
static void dispatch(const struct epoll_event *ev, int n, kc_batch_t *b)
{
    uint64_t woken = 0;
    for (int i = 0; i < n; i++) {
        kc_pd_t *pd = pd_get((int)ev[i].data.u32);
        if (!pd)
            continue;
        uint32_t e = ev[i].events;
        /* Errors and hang-ups end waits of both directions: the retried
         * call then reports what happened (0, -EPIPE, -ECONNRESET...). */
        bool bad = e & (EPOLLERR | EPOLLHUP);
        if (bad || (e & EPOLLRDHUP))
            atomic_store_explicit(&pd->hup, true, memory_order_relaxed);
        kc__lock(&pd->lock);
        if (bad || (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)))
            woken += wake_dir(pd, DIR_READ, b);
        if (bad || (e & EPOLLOUT))
            woken += wake_dir(pd, DIR_WRITE, b);
        kc__unlock(&pd->lock);
    }
    kc_np_count_t *k = counts();
    count_add(&k->events, (uint64_t)n);
    count_add(&k->polls, 1);
    count_add(&k->wakeups, woken);
}

static void *poller_main(void *arg)
{
    (void)arg;
    struct epoll_event ev[KC_POLL_EVENTS];
    for (;;) {
        int n = epoll_wait(np.epfd, ev, KC_POLL_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* Cannot happen with a valid epfd; say so rather than spin. */
            perror("kcoro netpoller: epoll_wait");
            abort();
        }
        kc_batch_t b = {0};
        dispatch(ev, n, &b);
        kc__batch_ready(&b);
    }
    return NULL;
}

static void poll_init(void)
{
    /* For A/B measurements against the earlier design: one poller thread
     * serves every waiter, the workers never poll. */
    const char *mode = getenv("KCORO_NETPOLL");
    atomic_store_explicit(&np.thread_only, mode && strcmp(mode, "thread") == 0,
                          memory_order_relaxed);
    np.epfd = epoll_create1(EPOLL_CLOEXEC);
    np.wfd = epoll_create1(EPOLL_CLOEXEC);
    np.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event a = {.events = EPOLLIN, .data.u32 = 0};
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 1};
    if (np.epfd < 0 || np.wfd < 0 || np.evfd < 0 ||
        epoll_ctl(np.wfd, EPOLL_CTL_ADD, np.epfd, &a) < 0 ||
        epoll_ctl(np.wfd, EPOLL_CTL_ADD, np.evfd, &e) < 0) {
        np.start_err = -errno;
        if (np.epfd >= 0)
            close(np.epfd);
        if (np.wfd >= 0)
            close(np.wfd);
        if (np.evfd >= 0)
            close(np.evfd);
        np.epfd = np.wfd = np.evfd = -1;
        return;
    }
    atomic_store_explicit(&np.ready, true, memory_order_release);
    kc__dbg("netpoller ready (epoll fd %d, polled by the scheduler's workers)", np.epfd);
}

static void thread_poller_start(void)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t th;
    int r = pthread_create(&th, &attr, poller_main, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        np.thread_err = -r;
        return;
    }
    kc__dbg("netpoller thread started (a plain thread waits on an fd)");
}

bool kc__netpoll_waiting(void)
{
    return atomic_load_explicit(&np.parked, memory_order_relaxed) > 0 &&
           !atomic_load_explicit(&np.thread_only, memory_order_relaxed);
}

void kc__netpoll_break(void)
{
    if (!atomic_load_explicit(&np.ready, memory_order_acquire))
        return;
    if (atomic_exchange(&np.break_pending, 1) == 0) {
        uint64_t one = 1;
        ssize_t w = write(np.evfd, &one, sizeof one);
        (void)w; /* EAGAIN: the counter is already non-zero, which is all we need */
    }
}

void kc__netpoll(uint64_t deadline_ns, kc_batch_t *b)
{
    if (!atomic_load_explicit(&np.ready, memory_order_acquire))
        return;
    if (deadline_ns) {
        struct epoll_event w[2];
        struct timespec ts, *tsp = NULL;
        if (deadline_ns != UINT64_MAX) {
            uint64_t now = kc_now_ns();
            uint64_t d = deadline_ns > now ? deadline_ns - now : 0;
            ts.tv_sec = (time_t)(d / 1000000000ull);
            ts.tv_nsec = (long)(d % 1000000000ull);
            tsp = &ts;
        }
        int n = epoll_pwait2(np.wfd, w, 2, tsp, NULL);
        if (n < 0 && errno == ENOSYS) {
            /* Kernels before 5.11: milliseconds, rounded up. */
            int ms = -1;
            if (tsp)
                ms = (int)(ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000);
            n = epoll_wait(np.wfd, w, 2, ms);
        }
        for (int i = 0; i < n; i++) {
            if (w[i].data.u32 == 1) {
                uint64_t v;
                ssize_t r = read(np.evfd, &v, sizeof v);
                (void)r;
                atomic_store(&np.break_pending, 0);
            }
        }
    }
    struct epoll_event ev[KC_POLL_EVENTS];
    int n = epoll_wait(np.epfd, ev, KC_POLL_EVENTS, 0);
    if (n > 0)
        dispatch(ev, n, b);
}

/* Ensures fd is in the epoll set (pd: its record). */
static int fd_register(int fd, kc_pd_t *pd)
{
    pthread_once(&np.once, poll_init);
    if (np.start_err)
        return np.start_err;
    if (!kc__coro_current() || atomic_load_explicit(&np.thread_only, memory_order_relaxed)) {
        /* A plain thread: the workers may be busy or absent. */
        pthread_once(&np.thread_once, thread_poller_start);
        if (np.thread_err)
            return np.thread_err;
    }
    /* Kept by kc_fd_register until kc_close: still in the set. */
    if (atomic_load_explicit(&pd->kept, memory_order_relaxed))
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u32 = (uint32_t)fd};
    count_add(&counts()->ctls, 1);
    if (epoll_ctl(np.epfd, EPOLL_CTL_ADD, fd, &ev) == 0 || errno == EEXIST)
        return 0;
    return -errno; /* EPERM: a regular file (always ready), EBADF, ENOMEM */
}

static void q_remove(kc_pd_t *pd, int dir, kc_fdw_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        pd->head[dir] = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        pd->tail[dir] = w->prev;
    w->queued = false;
}

/* Waits until direction dir of fd saw an edge after `seen` (its sequence
 * read before the failed try). Returns 0 (retry the call), -ETIMEDOUT,
 * -ECANCELED, or the error of the registration. */
static int fd_wait(int fd, kc_pd_t *pd, int dir, uint32_t seen, uint64_t deadline,
                   const kc_cancel_t *cancel)
{
    int r = fd_register(fd, pd);
    if (r < 0)
        return r;
    /* An expired deadline needs no check here: the park returns -ETIME at
     * once (one clock read per wait fewer). */
    kc_parker_t *self = kc__parker_self();
    kc_cancel_hook_t hook = {.parker = self};
    if (cancel && kc__cancel_hook(cancel, &hook) < 0)
        return -ECANCELED;
    kc_fdw_t w = {.parker = self};
    kc__lock(&pd->lock);
    if (atomic_load_explicit(&pd->seq[dir], memory_order_acquire) != seen) {
        kc__unlock(&pd->lock);
        r = 0; /* an edge came in since the try: retry at once */
        goto out;
    }
    w.prev = pd->tail[dir];
    if (pd->tail[dir])
        pd->tail[dir]->next = &w;
    else
        pd->head[dir] = &w;
    pd->tail[dir] = &w;
    w.queued = true;
    /* Counted while queued. The worker a coroutine parks on reads the count
     * on the same thread when it next looks for work, so while a coroutine
     * waits some worker keeps polling (blocking only when idle); thread
     * waiters have the poller thread. */
    atomic_fetch_add(&np.parked, 1);
    kc__unlock(&pd->lock);
    count_add(&counts()->waits, 1);
    for (;;) {
        int pr = kc__park(self, deadline);
        kc__lock(&pd->lock);
        bool fired = !w.queued;
        if (fired) {
            kc__unlock(&pd->lock);
            r = 0;
            break;
        }
        bool canceled = cancel && kc_cancel_is_set(cancel);
        bool expired = pr == -ETIME || (deadline && kc_now_ns() >= deadline);
        if (canceled || expired) {
            q_remove(pd, dir, &w);
            kc__unlock(&pd->lock);
            r = canceled ? -ECANCELED : -ETIMEDOUT;
            break;
        }
        kc__unlock(&pd->lock); /* a stale notification: park again */
    }
    atomic_fetch_sub(&np.parked, 1);
out:
    if (cancel)
        kc__cancel_unhook(cancel, &hook);
    return r;
}

static int check_cancel(const kc_cancel_t *cancel)
{
    return cancel && kc_cancel_is_set(cancel) ? -ECANCELED : 0;
}

/* The deadline of a call, computed when it first has to wait: a call that
 * completes at once (most kc_write calls) reads no clock. The timeout thus
 * counts from the first wait, one failed system call after the call began. */
static inline uint64_t lazy_deadline(uint64_t *deadline, bool *set, long timeout_ms)
{
    if (!*set) {
        *deadline = kc__deadline(timeout_ms);
        *set = true;
    }
    return *deadline;
}

/* One non-blocking attempt of an operation: its result (>= 0), or -errno;
 * -EINTR means "try again at once", -EAGAIN "wait until the fd is ready". */
typedef ssize_t (*io_try_fn)(int fd, void *arg);

/* The loop kc_read and kc_accept share: try, and on -EAGAIN park until the
 * fd is ready in `dir` (the sequence is read before the attempt, so an event
 * between the attempt and the park is not missed). Inlined with each caller's
 * try function, so the hot path makes no indirect call.
 *
 * want > 0 (kc_read: the buffer's size) skips a try that must fail: a read
 * that returned less than it asked for drained the socket, and as long as
 * no readiness edge came since (the sequence it saw before that read has
 * not moved) no byte can have arrived, so the next call parks at once
 * instead of making a read(2) that answers EAGAIN. That is one system call
 * less per request for a request/response loop. It cannot lose a wake-up:
 * bytes arriving after the drained read are an edge (the sequence moves,
 * the park returns at once), and if the fd was not in the epoll set yet,
 * adding it reports the bytes already there as an edge. A stale hint (the
 * fd was closed and its number reused) costs one park that such an edge
 * ends; a file epoll refuses (EPERM) is just read. A short read is no
 * proof when the peer's FIN or an error came with the data (the next read
 * returns 0 or the error, and no further edge comes): once the fd reported
 * a hang-up or error (`hup`, sticky until kc_accept or kc_connect hands out
 * that fd number for a new socket), every call tries the read. */
static inline ssize_t io_loop(int fd, int dir, long timeout_ms, const kc_cancel_t *cancel,
                              io_try_fn try_once, void *arg, size_t want)
{
    kc_pd_t *pd = pd_get(fd);
    if (!pd)
        return fd < 0 ? -EBADF : -ENOMEM;
    uint64_t deadline = 0; /* set before the first wait (lazy_deadline) */
    bool dl_set = false;
    for (;;) {
        int r = check_cancel(cancel);
        if (r < 0)
            return r;
        uint32_t seen = atomic_load_explicit(&pd->seq[dir], memory_order_acquire);
        if (want && timeout_ms != 0 &&
            atomic_load_explicit(&pd->drained, memory_order_relaxed) == seen + 1 &&
            !atomic_load_explicit(&pd->hup, memory_order_relaxed)) {
            atomic_store_explicit(&pd->drained, 0, memory_order_relaxed);
            r = fd_wait(fd, pd, dir, seen, lazy_deadline(&deadline, &dl_set, timeout_ms),
                        cancel);
            if (r < 0 && r != -EPERM)
                return r;
            continue;
        }
        ssize_t got = try_once(fd, arg);
        if (want)
            atomic_store_explicit(&pd->drained, got > 0 && (size_t)got < want ? seen + 1 : 0,
                                  memory_order_relaxed);
        if (got >= 0 || (got != -EINTR && got != -EAGAIN))
            return got;
        if (got == -EINTR)
            continue;
        if (timeout_ms == 0)
            return -EAGAIN;
        r = fd_wait(fd, pd, dir, seen, lazy_deadline(&deadline, &dl_set, timeout_ms), cancel);
        if (r < 0)
            return r;
    }
}

typedef struct read_args {
    void *buf; /* where the bytes go */
    size_t n;  /* room there        */
} read_args_t;

static ssize_t read_try(int fd, void *arg)
{
    read_args_t *a = arg;
    ssize_t got = read(fd, a->buf, a->n);
    return got >= 0 ? got : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t kc_read(int fd, void *buf, size_t n, long timeout_ms, const kc_cancel_t *cancel)
{
    read_args_t a = {.buf = buf, .n = n};
    return io_loop(fd, DIR_READ, timeout_ms, cancel, read_try, &a, n);
}

/* send(MSG_NOSIGNAL) on sockets, so a closed peer is -EPIPE, not SIGPIPE. */
static ssize_t write_once(int fd, const void *buf, size_t n, bool *not_sock)
{
    if (!*not_sock) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w >= 0 || errno != ENOTSOCK)
            return w;
        *not_sock = true;
    }
    return write(fd, buf, n);
}

ssize_t kc_write(int fd, const void *buf, size_t n, long timeout_ms, const kc_cancel_t *cancel)
{
    kc_pd_t *pd = pd_get(fd);
    if (!pd)
        return fd < 0 ? -EBADF : -ENOMEM;
    uint64_t deadline = 0; /* set before the first wait (lazy_deadline) */
    bool dl_set = false;
    const unsigned char *p = buf;
    size_t done = 0;
    bool not_sock = false;
    for (;;) {
        int r = check_cancel(cancel);
        if (r < 0)
            return done ? (ssize_t)done : r;
        uint32_t seen = atomic_load_explicit(&pd->seq[DIR_WRITE], memory_order_acquire);
        ssize_t w = write_once(fd, p + done, n - done, &not_sock);
        if (w >= 0) {
            done += (size_t)w;
            if (done == n)
                return (ssize_t)n;
            continue; /* a short write: the rest may fit now or after a wait */
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return done ? (ssize_t)done : -errno;
        if (timeout_ms == 0)
            return done ? (ssize_t)done : -EAGAIN;
        r = fd_wait(fd, pd, DIR_WRITE, seen, lazy_deadline(&deadline, &dl_set, timeout_ms),
                    cancel);
        if (r < 0)
            return done ? (ssize_t)done : r;
    }
}

typedef struct accept_args {
    struct sockaddr *addr; /* the peer's address (may be NULL) */
    socklen_t *addrlen;    /* its room, then its length        */
} accept_args_t;

static ssize_t accept_try(int fd, void *arg)
{
    accept_args_t *a = arg;
    int c = accept4(fd, a->addr, a->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0)
        return c;
    /* A connection that died in the backlog is not our error: try again. */
    return errno == ECONNABORTED ? -EINTR : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* A new socket took fd's number: forget what the old one reported. */
static void pd_fresh(int fd)
{
    kc_pd_t *pd = pd_get(fd);
    if (pd) {
        atomic_store_explicit(&pd->hup, false, memory_order_relaxed);
        atomic_store_explicit(&pd->drained, 0, memory_order_relaxed);
    }
}

int kc_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, long timeout_ms,
              const kc_cancel_t *cancel)
{
    accept_args_t a = {.addr = addr, .addrlen = addrlen};
    int c = (int)io_loop(fd, DIR_READ, timeout_ms, cancel, accept_try, &a, 0);
    if (c >= 0) {
        pd_fresh(c);
        /* A file kc_fd_register kept under this number was closed with
         * close(2), not kc_close: the new socket is not in the set. */
        kc_pd_t *pd = pd_get(c);
        if (pd)
            atomic_store_explicit(&pd->kept, false, memory_order_relaxed);
    }
    return c;
}

int kc_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, long timeout_ms,
               const kc_cancel_t *cancel)
{
    kc_pd_t *pd = pd_get(fd);
    if (!pd)
        return fd < 0 ? -EBADF : -ENOMEM;
    int r = check_cancel(cancel);
    if (r < 0)
        return r;
    pd_fresh(fd);
    uint64_t deadline = kc__deadline(timeout_ms);
    long backoff_ms = 1;
    uint32_t seen;
    for (;;) {
        seen = atomic_load_explicit(&pd->seq[DIR_WRITE], memory_order_acquire);
        if (connect(fd, addr, addrlen) == 0)
            return 0;
        if (errno == EINPROGRESS || errno == EINTR)
            break;
        if (errno != EAGAIN)
            return -errno;
        /* A Unix socket whose listener's backlog is full: the kernel gives
         * the connecting side no event to wait for, so try again after a
         * short, growing pause (bounded by the deadline; rare). */
        if (timeout_ms == 0)
            return -EAGAIN;
        if (deadline && kc_now_ns() >= deadline)
            return -ETIMEDOUT;
        r = kc_sleep_ms_c(backoff_ms, cancel);
        if (r < 0)
            return r;
        if (backoff_ms < 64)
            backoff_ms *= 2;
    }
    if (timeout_ms == 0)
        return -EINPROGRESS;
    for (;;) {
        r = fd_wait(fd, pd, DIR_WRITE, seen, deadline, cancel);
        if (r < 0)
            return r;
        seen = atomic_load_explicit(&pd->seq[DIR_WRITE], memory_order_acquire);
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return -errno;
        if (err)
            return -err;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT))
            return 0; /* writable without an error: connected */
    }
}

int kc_fd_register(int fd)
{
    kc_pd_t *pd = pd_get(fd);
    if (!pd)
        return fd < 0 ? -EBADF : -ENOMEM;
    pthread_once(&np.once, poll_init);
    if (np.start_err)
        return np.start_err;
    /* A new file under this number (or the same one again): forget what
     * an earlier file reported, then add it. */
    pd_fresh(fd);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u32 = (uint32_t)fd};
    count_add(&counts()->ctls, 1);
    if (epoll_ctl(np.epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST)
        return -errno;
    atomic_store_explicit(&pd->kept, true, memory_order_relaxed);
    return 0;
}

int kc_close(int fd)
{
    kc_pd_t *pd = pd_get(fd);
    /* Forgotten before the number can be handed to another file. */
    if (pd)
        atomic_store_explicit(&pd->kept, false, memory_order_relaxed);
    return close(fd) < 0 ? -errno : 0;
}

void kc_netpoll_stats(kc_netpoll_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof np.count / sizeof np.count[0]; i++) {
        kc_np_count_t *k = &np.count[i];
        out->waits += atomic_load_explicit(&k->waits, memory_order_relaxed);
        out->wakeups += atomic_load_explicit(&k->wakeups, memory_order_relaxed);
        out->events += atomic_load_explicit(&k->events, memory_order_relaxed);
        out->polls += atomic_load_explicit(&k->polls, memory_order_relaxed);
        out->ctls += atomic_load_explicit(&k->ctls, memory_order_relaxed);
    }
}
