/* kcoro: futex lock, parker pool and clock helpers. */
#define _GNU_SOURCE
#include "kc_sync.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kcoro/kcoro.h"
#include "kc_sched.h"

/* Spin budgets, in polls (one pause each, ~10-40 ns depending on the CPU).
 * A hand-off between two running threads completes in well under a
 * microsecond; sleeping costs two system calls and a scheduler round trip
 * (several microseconds), so spinning up to about that long pays for itself
 * while the peer runs. A budget that keeps failing halves down to
 * KC_SPIN_MIN, enough to notice that things got better. */
#define KC_SPIN_MAX 1024
#define KC_SPIN_MIN 32
/* Yield budgets: a yield to a runnable peer costs one system call and a
 * switch, about what it costs the peer to run up to its next wait; to a
 * peer that is not runnable it returns at once, so a failing budget burns
 * little before it shrinks. */
#define KC_YIELD_MAX 16
#define KC_YIELD_MIN 1
#define KC_LOCK_SPINS 200
/* Sleeps between two reads of the thread's CPU affinity (a system call;
 * it changes rarely, e.g. taskset on a running process). */
#define KC_NCPU_REFRESH 64

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
    /* On one CPU the holder cannot release the lock while we spin: it was
     * preempted, so let it run (a couple of yields) instead. */
    KC_PROF_INC(KP_LOCK_SLOW);
    bool one_cpu = kc__parker_self()->ncpu < 2;
    int spins = one_cpu ? 2 : KC_LOCK_SPINS;
    for (int i = 0; i < spins; i++) {
        uint32_t z = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        if (one_cpu)
            sched_yield();
        else
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

static uint32_t count_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 2; /* unknown: assume spinning may help */
    int n = CPU_COUNT(&set);
    return n > 0 ? (uint32_t)n : 1;
}

static void parker_release(void *p)
{
    kc_parker_t *pk = p;
    /* Nobody runs on it any more: waiters that had us as their peer must
     * not spin for us. */
    atomic_store_explicit(&pk->cpu, -1, memory_order_relaxed);
    pk->peer = NULL;
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
    struct kc_coro *c = kc__coro_current();
    if (c)
        return kc__coro_parker(c);
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
        /* Aligned: a parker is written by its owner and its wakers, and
         * must not share a line with another thread's parker. */
        p = aligned_alloc(_Alignof(kc_parker_t), sizeof *p);
        if (!p) {
            fputs("kcoro: out of memory allocating a parker\n", stderr);
            abort();
        }
        memset(p, 0, sizeof *p);
    }
    p->next = NULL;
    p->peer = NULL;
    p->spin = KC_SPIN_MAX;
    p->yields = KC_YIELD_MAX;
    p->ncpu = count_cpus();
    p->sleeps = 0;
    atomic_store_explicit(&p->cpu, sched_getcpu(), memory_order_relaxed);
    pthread_setspecific(g_parker_key, p);
    t_parker = p;
    return p;
}

int kc__park(kc_parker_t *p, uint64_t deadline_ns)
{
    if (p->coro)
        return kc__coro_park(p, deadline_ns);
    for (;;) {
        uint32_t s = KC_PARK_EMPTY;
        if (!atomic_compare_exchange_strong_explicit(&p->state, &s, KC_PARK_SLEEPING,
                                                     memory_order_acquire, memory_order_acquire)) {
            /* s == NOTIFIED: consume it. */
            atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
            return 0;
        }
        /* Tell would-be spinners that we are off the CPU. */
        atomic_store_explicit(&p->cpu, -1, memory_order_relaxed);
        int r = kc__futex_wait(&p->state, KC_PARK_SLEEPING, deadline_ns);
        atomic_store_explicit(&p->cpu, sched_getcpu(), memory_order_relaxed);
        if (++p->sleeps >= KC_NCPU_REFRESH) {
            p->sleeps = 0;
            p->ncpu = count_cpus();
        }
        uint32_t prev = atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
        if (prev == KC_PARK_NOTIFIED)
            return 0;
        if (r == -ETIME || (deadline_ns && kc_now_ns() >= deadline_ns))
            return -ETIME;
    }
}

void kc__unpark(kc_parker_t *p)
{
    /* acq_rel: a coroutine woken here is resumed by whoever pops it, and
     * the scheduler's SLEEPING CAS must happen-before that. */
    if (atomic_exchange_explicit(&p->state, KC_PARK_NOTIFIED, memory_order_acq_rel) ==
        KC_PARK_SLEEPING) {
        if (p->coro)
            kc__coro_ready(p->coro);
        else
            kc__futex_wake(&p->state, 1);
    }
}

/* ---- spin policy (see kc_sync.h) --------------------------------------- */

/* The peer cannot end our wait before somebody else wakes it: asleep in
 * the kernel and not notified. */
static bool peer_asleep(const kc_parker_t *peer)
{
    return atomic_load_explicit(&peer->cpu, memory_order_relaxed) < 0 &&
           atomic_load_explicit(&peer->state, memory_order_relaxed) != KC_PARK_NOTIFIED;
}

/* The peer runs on our CPU (so it runs only when we stop). */
static bool peer_here(const kc_parker_t *peer, int32_t cpu)
{
    return cpu >= 0 && atomic_load_explicit(&peer->cpu, memory_order_relaxed) == cpu;
}

bool kc__spin_begin(kc_spinner_t *sp, kc_parker_t *self, uint64_t deadline)
{
    /* A coroutine never spins: polling would hold its worker thread, and
     * with it every other coroutine queued there (maybe our peer). */
    if (self->coro)
        return false;
    int32_t cpu = sched_getcpu();
    /* Written only when it changed: peers read this line while spinning. */
    if (atomic_load_explicit(&self->cpu, memory_order_relaxed) != cpu)
        atomic_store_explicit(&self->cpu, cpu, memory_order_relaxed);
    kc_parker_t *peer = self->peer;
    if (peer && peer_asleep(peer))
        return false;
    bool yield = self->ncpu < 2 || (peer && peer_here(peer, cpu));
    *sp = (kc_spinner_t){.self = self,
                         .peer = peer,
                         .cpu = cpu,
                         .i = 0,
                         .budget = yield ? self->yields : self->spin,
                         .yield = yield,
                         .deadline = deadline};
    return sp->budget > 0;
}

bool kc__spin_next(kc_spinner_t *sp)
{
    if (++sp->i >= sp->budget)
        return false;
    if (sp->yield) {
        sched_yield();
        if (sp->deadline && kc_now_ns() >= sp->deadline)
            return false;
        return !(sp->peer && peer_asleep(sp->peer));
    }
    /* The peer went to sleep or was moved onto our CPU: stop fighting it. */
    if ((sp->i & 31) == 0 && sp->peer &&
        (peer_asleep(sp->peer) || peer_here(sp->peer, sp->cpu)))
        return false;
    kc__cpu_relax();
    return true;
}

static uint32_t learn(uint32_t b, uint32_t used, bool ok, uint32_t lo, uint32_t hi)
{
    if (ok) {
        b = b * 2 > 2 * used ? b * 2 : 2 * used;
        return b > hi ? hi : b;
    }
    return b / 2 < lo ? lo : b / 2;
}

void kc__spin_end(kc_spinner_t *sp, bool ok)
{
    /* Stored only when changed: peers read this parker's line while they
     * spin, and an unchanged budget must not take it from them. */
    kc_parker_t *self = sp->self;
    uint32_t *b = sp->yield ? &self->yields : &self->spin;
    uint32_t nb = sp->yield ? learn(*b, sp->i, ok, KC_YIELD_MIN, KC_YIELD_MAX)
                            : learn(*b, sp->i, ok, KC_SPIN_MIN, KC_SPIN_MAX);
    if (nb != *b)
        *b = nb;
}

bool kc__spin_until(kc_parker_t *self, _Atomic uint32_t *word, uint32_t want,
                    uint64_t deadline)
{
    if (atomic_load_explicit(word, memory_order_acquire) == want)
        return true;
    kc_spinner_t sp;
    if (!kc__spin_begin(&sp, self, deadline))
        return false;
    bool ok;
    while (!(ok = atomic_load_explicit(word, memory_order_acquire) == want) && kc__spin_next(&sp))
        ;
    kc__spin_end(&sp, ok);
    return ok;
}

/* ---- development counters (KC_PROF) ------------------------------------ */

const char *const kc__prof_names[KP_N] = {
    "buf_park", "handoff_recv", "wake", "wake_empty", "retry_after_wake", "yield_busy",
    "landing", "claim_lost", "backoff", "step_aside", "lock_slow"};

#ifdef KC_PROF
#define KC_PROF_SLOTS 64
static struct {
    _Alignas(64) _Atomic uint64_t c[KP_N]; /* one thread's counts (own line) */
} kc_prof_slot[KC_PROF_SLOTS];
static uint64_t kc_prof_last[KP_N];   /* sums at the previous take          */
static _Atomic int kc_prof_next;      /* next free slot                     */
static __thread int kc_prof_me = -1;  /* this thread's slot                 */

void kc__prof_inc(int k)
{
    if (kc_prof_me < 0)
        kc_prof_me = atomic_fetch_add(&kc_prof_next, 1) % KC_PROF_SLOTS;
    _Atomic uint64_t *c = &kc_prof_slot[kc_prof_me].c[k];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void kc__prof_take(uint64_t out[KP_N])
{
    for (int k = 0; k < KP_N; k++) {
        uint64_t sum = 0;
        for (int i = 0; i < KC_PROF_SLOTS; i++)
            sum += atomic_load_explicit(&kc_prof_slot[i].c[k], memory_order_relaxed);
        out[k] = sum - kc_prof_last[k];
        kc_prof_last[k] = sum;
    }
}
#else
void kc__prof_take(uint64_t out[KP_N])
{
    memset(out, 0, KP_N * sizeof out[0]);
}
#endif
