/* kt.h: shared helpers for the kcoro unit tests (threads, clocks, waiting).
 *
 * Rules the tests follow:
 *   - Criterion assertions run only on the test's own thread; worker threads
 *     record what happened and the test thread checks it after joining.
 *   - Every join is bounded (kt_join), so a library bug fails a test with a
 *     message instead of hanging the binary.
 *   - "The thread is blocked" is observed, not guessed: the worker publishes
 *     its kernel tid and the test waits until /proc shows it sleeping.
 */
#ifndef FERRY_TESTS_KT_H
#define FERRY_TESTS_KT_H

#include <criterion/criterion.h> /* under TSan: tests/support/tsan_criterion */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "kcoro/kcoro.h"

/* Counts of the heavy tests are divided by this under sanitizers. */
#ifdef FERRY_SANITIZED
#define KT_SCALE 10
#else
#define KT_SCALE 1
#endif

/* Generous bound for anything that must "finish promptly". */
#define KT_PROMPT_MS 5000

static inline uint64_t kt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* KT_CORO builds the same tests with every "thread" started by kt_start
 * running as a coroutine on the kcoro scheduler instead (the test's own
 * thread stays a thread): so every test also checks coroutine parking and
 * thread <-> coroutine traffic. A pthread_t then holds the kc_coro_t * (low bit set). */
static inline void kt_sleep_ms(long ms)
{
#ifdef KT_CORO
    if (kc_self()) {
        kc_sleep_ms(ms); /* parks the coroutine, not its worker */
        return;
    }
#endif
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#ifdef KT_CORO
struct kt_coro_start {
    void *(*fn)(void *); /* the thread function  */
    void *arg;           /* its argument         */
};

static inline void kt_coro_main(void *p)
{
    struct kt_coro_start s = *(struct kt_coro_start *)p;
    free(p);
    s.fn(s.arg);
}
#endif

static inline void kt_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
#ifdef KT_CORO
    struct kt_coro_start *s = malloc(sizeof *s);
    cr_assert_not_null(s);
    s->fn = fn;
    s->arg = arg;
    kc_coro_t *c = NULL;
    int rc = kc_spawn(&c, kt_coro_main, s, NULL);
    cr_assert_eq(rc, 0, "kc_spawn: %d", rc);
    *t = (pthread_t)((uintptr_t)c | 1); /* tagged: coroutines are 64-byte aligned */
#else
    int rc = pthread_create(t, NULL, fn, arg);
    cr_assert_eq(rc, 0, "pthread_create: %s", strerror(rc));
#endif
}

/* Joins t, failing the test if it has not ended within ms milliseconds. */
static inline void kt_join(pthread_t t, long ms)
{
#ifdef KT_CORO
    if ((uintptr_t)t & 1) { /* from kt_start; a plain pthread_create'd thread is not tagged */
        int crc = kc_coro_join_ms((kc_coro_t *)((uintptr_t)t & ~(uintptr_t)1), ms);
        cr_assert_eq(crc, 0, "coroutine did not finish within %ld ms (%d)", ms, crc);
        return;
    }
#endif
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = pthread_timedjoin_np(t, NULL, &dl);
    cr_assert_eq(rc, 0, "thread did not finish within %ld ms (%s)", ms, strerror(rc));
}

/* Something a worker publishes so the test thread can see it block. */
struct kt_park {
    _Atomic int tid;   /* kernel tid, 0 until the worker started       */
    _Atomic bool done; /* the worker's blocking call has returned      */
    _Atomic(kc_coro_t *) coro; /* KT_CORO: the worker coroutine         */
};

static inline void kt_park_enter(struct kt_park *p)
{
    atomic_store(&p->coro, kc_self());
    atomic_store(&p->tid, (int)gettid());
}

/* Reads the scheduler state letter of thread tid ('R', 'S', ...), 0 if gone. */
static inline char kt_task_state(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* comm may contain spaces */
    if (!rp || rp[1] != ' ')
        return 0;
    return rp[2];
}

/* Waits until the worker is asleep in its blocking call (several samples in a
 * row show it sleeping) or has already returned. Fails after 10 s. */
static inline void kt_wait_parked(struct kt_park *p)
{
    uint64_t deadline = kt_now_ms() + 10000;
    int asleep = 0;
    while (asleep < 5) {
        cr_assert_lt(kt_now_ms(), deadline, "worker never blocked");
        if (atomic_load(&p->done))
            return;
        int tid = atomic_load(&p->tid);
        kc_coro_t *co = atomic_load(&p->coro);
        if (co) { /* a coroutine: parked is what "asleep" means */
            asleep = kc_coro_is_parked(co) ? asleep + 1 : 0;
            kt_sleep_ms(2);
            continue;
        }
        char st = tid ? kt_task_state(tid) : 'R';
        if (st == 0 && tid)
            return; /* thread already ended */
        asleep = (st == 'S') ? asleep + 1 : 0;
        kt_sleep_ms(2);
    }
    kt_sleep_ms(10);
}

/* One channel operation on its own thread: the common "blocked peer". */
enum { KT_SEND = 1, KT_RECV = 2 };

struct kt_op {
    kc_chan_t *ch;               /* channel                                  */
    int op;                      /* KT_SEND or KT_RECV                       */
    int value;                   /* send: value sent; recv: value received   */
    long timeout_ms;             /* timeout of the call                      */
    const kc_cancel_t *cancel;   /* NULL: plain send/recv; else the _c form  */
    long delay_ms;               /* sleep before the call                    */
    int rc;                      /* result of the call                       */
    uint64_t elapsed_ms;         /* duration of the call                     */
    struct kt_park park;         /* blocked/done signalling                  */
};

static inline void *kt_op_thread(void *arg)
{
    struct kt_op *o = arg;
    if (o->delay_ms > 0)
        kt_sleep_ms(o->delay_ms);
    kt_park_enter(&o->park);
    uint64_t t0 = kt_now_ms();
    if (o->op == KT_SEND)
        o->rc = o->cancel ? kc_chan_send_c(o->ch, &o->value, o->timeout_ms, o->cancel)
                          : kc_chan_send(o->ch, &o->value, o->timeout_ms);
    else
        o->rc = o->cancel ? kc_chan_recv_c(o->ch, &o->value, o->timeout_ms, o->cancel)
                          : kc_chan_recv(o->ch, &o->value, o->timeout_ms);
    o->elapsed_ms = kt_now_ms() - t0;
    atomic_store(&o->park.done, true);
    return NULL;
}

static inline void kt_op_start(pthread_t *t, struct kt_op *o, kc_chan_t *ch, int op, int value,
                               long timeout_ms, const kc_cancel_t *cancel)
{
    memset(o, 0, sizeof *o);
    o->ch = ch;
    o->op = op;
    o->value = value;
    o->timeout_ms = timeout_ms;
    o->cancel = cancel;
    o->rc = 1; /* not a possible result: proves the call returned */
    kt_start(t, kt_op_thread, o);
}

/* Starts a receiver on ch (its call times out after recv_timeout_ms) and
 * returns once it is observed blocked in the channel. */
static inline void kt_parked_recv(pthread_t *t, struct kt_op *r, kc_chan_t *ch, long recv_timeout_ms)
{
    kt_op_start(t, r, ch, KT_RECV, 0, recv_timeout_ms, NULL);
    kt_wait_parked(&r->park);
}

/* Joins a receiver started by kt_parked_recv and checks that it got want. */
static inline void kt_expect_received(pthread_t t, const struct kt_op *r, int want)
{
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(r->rc, 0);
    cr_assert_eq(r->value, want);
}

/* The hand-over most channel kinds promise: a receiver blocks first, then
 * kc_chan_send(v, send_timeout_ms) succeeds and the receiver gets v. */
static inline void kt_expect_handoff(kc_chan_t *ch, long recv_timeout_ms, int v, long send_timeout_ms)
{
    pthread_t t;
    struct kt_op r;
    kt_parked_recv(&t, &r, ch, recv_timeout_ms);
    cr_assert_eq(kc_chan_send(ch, &v, send_timeout_ms), 0);
    kt_expect_received(t, &r, v);
}

/* Triggers a token after a delay, from another thread. */
struct kt_trigger {
    kc_cancel_t *tok;
    long delay_ms;
};

static inline void *kt_trigger_thread(void *arg)
{
    struct kt_trigger *t = arg;
    kt_sleep_ms(t->delay_ms);
    kc_cancel_trigger(t->tok);
    return NULL;
}

/* Records elements handed to the undelivered callback (int elements). */
#define KT_DROP_MAX 1024
struct kt_drops {
    pthread_mutex_t mu;
    size_t n;                   /* number of calls                        */
    int vals[KT_DROP_MAX];      /* first KT_DROP_MAX dropped values       */
};

static inline void kt_drops_init(struct kt_drops *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
}

static inline void kt_drops_fn(void *user, void *elem)
{
    struct kt_drops *d = user;
    int v;
    memcpy(&v, elem, sizeof v);
    pthread_mutex_lock(&d->mu);
    if (d->n < KT_DROP_MAX)
        d->vals[d->n] = v;
    d->n++;
    pthread_mutex_unlock(&d->mu);
}

static inline size_t kt_drops_count(struct kt_drops *d)
{
    pthread_mutex_lock(&d->mu);
    size_t n = d->n;
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* True if value v was dropped (exactly `times` times). */
static inline size_t kt_drops_times(struct kt_drops *d, int v)
{
    size_t k = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->n && i < KT_DROP_MAX; i++)
        k += d->vals[i] == v;
    pthread_mutex_unlock(&d->mu);
    return k;
}

static inline kc_chan_t *kt_chan(int kind, size_t elem_size, size_t cap)
{
    kc_chan_t *ch = NULL;
    int rc = kc_chan_make(&ch, kind, elem_size, cap);
    cr_assert_eq(rc, 0, "kc_chan_make(kind %d, elem %zu, cap %zu) = %d", kind, elem_size, cap, rc);
    cr_assert_not_null(ch);
    return ch;
}

static inline kc_cancel_t *kt_token(kc_cancel_t *parent)
{
    kc_cancel_t *t = NULL;
    int rc = kc_cancel_create(&t, parent);
    cr_assert_eq(rc, 0, "kc_cancel_create = %d", rc);
    cr_assert_not_null(t);
    return t;
}

#endif /* FERRY_TESTS_KT_H */
