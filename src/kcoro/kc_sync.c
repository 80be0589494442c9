/* kcoro: futex lock, parker pool and clock helpers. */
#define _GNU_SOURCE
#include "kc_sync.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kcoro/kcoro.h"

/* How long a parker spins before sleeping. A hand-off between two running
 * threads completes in well under a microsecond; sleeping costs two
 * syscalls and a scheduler round trip, so a short spin pays for itself. */
#define KC_PARK_SPINS 1000
#define KC_LOCK_SPINS 200

uint64_t kc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t kc__deadline(long timeout_ms)
{
    if (timeout_ms <= 0)
        return 0;
    uint64_t now = kc_now_ns();
    /* A timeout too large to represent is as good as forever. */
    if ((uint64_t)timeout_ms > (UINT64_MAX - now) / 1000000ull)
        return 0;
    return now + (uint64_t)timeout_ms * 1000000ull;
}

int kc__futex_wait(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns) {
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so
         * repeated spurious wakeups never stretch the timeout. */
        ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
        ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
        tsp = &ts;
    }
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE, expected, tsp,
                     NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == -1) {
        if (errno == ETIMEDOUT)
            return -ETIME;
        return -errno; /* EAGAIN (value changed) or EINTR: caller re-checks */
    }
    return 0;
}

void kc__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void kc__lock_slow(kc_lock_t *l)
{
    for (int i = 0; i < KC_LOCK_SPINS; i++) {
        uint32_t z = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        kc__cpu_relax();
    }
    /* Mark "held with sleepers" so the unlocker knows to wake us. */
    while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
        kc__futex_wait(&l->v, 2, 0);
}

/* ---- parker pool ------------------------------------------------------ */

static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static kc_parker_t *g_pool;               /* parkers of exited threads */
static pthread_key_t g_parker_key;
static pthread_once_t g_parker_once = PTHREAD_ONCE_INIT;
static __thread kc_parker_t *t_parker;

static void parker_release(void *p)
{
    kc_parker_t *pk = p;
    pthread_mutex_lock(&g_pool_lock);
    pk->next = g_pool;
    g_pool = pk;
    pthread_mutex_unlock(&g_pool_lock);
}

static void parker_key_init(void)
{
    if (pthread_key_create(&g_parker_key, parker_release) != 0)
        abort();
}

kc_parker_t *kc__parker_self(void)
{
    kc_parker_t *p = t_parker;
    if (p)
        return p;
    pthread_once(&g_parker_once, parker_key_init);
    pthread_mutex_lock(&g_pool_lock);
    p = g_pool;
    if (p)
        g_pool = p->next;
    pthread_mutex_unlock(&g_pool_lock);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) {
            fputs("kcoro: out of memory allocating a parker\n", stderr);
            abort();
        }
    }
    p->next = NULL;
    pthread_setspecific(g_parker_key, p);
    t_parker = p;
    return p;
}

int kc__park(kc_parker_t *p, uint64_t deadline_ns)
{
    for (int i = 0; i < KC_PARK_SPINS; i++) {
        if (atomic_load_explicit(&p->state, memory_order_relaxed) == KC_PARK_NOTIFIED) {
            /* Only unpark writes NOTIFIED, so the exchange sees it and
             * pairs (acquire) with the unparker's release. */
            atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
            return 0;
        }
        kc__cpu_relax();
    }
    for (;;) {
        uint32_t s = KC_PARK_EMPTY;
        if (!atomic_compare_exchange_strong_explicit(&p->state, &s, KC_PARK_SLEEPING,
                                                     memory_order_acquire, memory_order_acquire)) {
            /* s == NOTIFIED: consume it. */
            atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
            return 0;
        }
        int r = kc__futex_wait(&p->state, KC_PARK_SLEEPING, deadline_ns);
        uint32_t prev = atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
        if (prev == KC_PARK_NOTIFIED)
            return 0;
        if (r == -ETIME || (deadline_ns && kc_now_ns() >= deadline_ns))
            return -ETIME;
    }
}

void kc__unpark(kc_parker_t *p)
{
    if (atomic_exchange_explicit(&p->state, KC_PARK_NOTIFIED, memory_order_release) ==
        KC_PARK_SLEEPING)
        kc__futex_wake(&p->state, 1);
}
