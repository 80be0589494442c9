/* kcoro internal: futex-based lock and parker (the one waiter abstraction).
 *
 * Tuned for short critical sections (channel bookkeeping of a few dozen
 * instructions) on few cores: spin briefly while that can help (never on
 * one CPU), then sleep in the kernel. The
 * parker is what a blocked operation waits on; a coroutine scheduler can
 * provide another park/unpark pair without channels changing.
 */
#ifndef KC_SYNC_H
#define KC_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define kc__cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define kc__cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define kc__cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

/* Fetches the cache line at p for writing (a hint; never faults). On
 * x86-64 PREFETCHW, which older CPUs without it execute as a no-op. */
#if defined(__x86_64__)
#define kc__prefetchw(p) __asm__ __volatile__("prefetchw %0" ::"m"(*(const char *)(p)))
#else
#define kc__prefetchw(p) __builtin_prefetch((p), 1, 3)
#endif

/* Futex wrappers (process-private). Return 0 or -errno. */
int kc__futex_wait(_Atomic uint32_t *addr, uint32_t expected, uint64_t deadline_ns);
void kc__futex_wake(_Atomic uint32_t *addr, int n);

/* Lock word: 0 free, 1 held, 2 held with sleepers. */
typedef struct kc_lock { _Atomic uint32_t v; } kc_lock_t;
#define KC_LOCK_INIT {0}

void kc__lock_slow(kc_lock_t *l);

static inline void kc__lock(kc_lock_t *l)
{
    uint32_t z = 0;
    if (atomic_compare_exchange_strong_explicit(&l->v, &z, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return;
    kc__lock_slow(l);
}

static inline void kc__unlock(kc_lock_t *l)
{
    if (atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2)
        kc__futex_wake(&l->v, 1);
}

/* A parker belongs to one thread and is never freed (it returns to a pool
 * when its thread exits), so an unpark racing with the owner's return is
 * always safe: at worst a later wait of the next owner wakes spuriously,
 * and every caller re-checks its condition in a loop. Parkers are cache-line
 * aligned: two threads' parkers never share a line.
 *
 * A parker also carries what the spin policy needs (see kc__spin_begin):
 * where its owner runs (`cpu`, -1 while asleep in the kernel), which thread
 * woke it last (`peer`: the likeliest to wake it next) and a spin budget
 * learned from its recent waits. */
typedef struct kc_parker {
    _Alignas(64) _Atomic uint32_t state; /* KC_PARK_EMPTY / _NOTIFIED / _SLEEPING     */
    _Atomic int32_t cpu;      /* owner's CPU while running, -1 asleep (a hint)     */
    struct kc_parker *peer;   /* owner only: parker of the thread that woke us last */
    uint32_t spin;            /* owner only: learned spin budget, in polls          */
    uint32_t yields;          /* owner only: learned yield budget, in yields        */
    uint32_t ncpu;            /* owner only: CPUs the owner may run on              */
    uint32_t sleeps;          /* owner only: sleeps since ncpu was read             */
    struct kc_parker *next;   /* free-pool link while unowned                       */
    /* A coroutine's parker (embedded in its kc_coro, which is never freed
     * either: coroutines are recycled) parks by switching to the scheduler
     * instead of sleeping in the kernel; NULL for a thread's parker. */
    struct kc_coro *coro;
    _Atomic uint64_t park_seq; /* coroutine parkers: parks so far (stale timers)  */
} kc_parker_t;

enum { KC_PARK_EMPTY = 0, KC_PARK_NOTIFIED = 1, KC_PARK_SLEEPING = 2 };

/* The parker of whoever calls: the running coroutine's, or else the
 * calling thread's. The calling thread's parker. Never NULL (aborts on out of memory: a
 * thread that cannot block cannot honour any API contract). */
kc_parker_t *kc__parker_self(void);
/* Sleeps until a notification or the absolute CLOCK_MONOTONIC deadline
 * (0 = none); does not spin (callers spin first, see below). Returns 0 when
 * notified (possibly spuriously), -ETIME. */
int kc__park(kc_parker_t *p, uint64_t deadline_ns);
/* Notifies; wakes the owner if it sleeps. */
void kc__unpark(kc_parker_t *p);

/* Spin policy. Spinning only pays while whoever will end the wait runs on
 * another CPU; otherwise every poll takes the CPU from the very thread we
 * wait for. The peer is the thread that woke us last (the likeliest to wake
 * us next), and it publishes where it runs in its parker. So a waiter:
 * - sleeps at once when its peer is asleep (and not just woken);
 * - polls with a pause while its thread may use several CPUs and the peer
 *   runs on another one, stopping as soon as that changes;
 * - yields the CPU (sched_yield) between polls when it may use only one
 *   CPU or the peer waits for ours: the peer then runs at once, and ends
 *   our wait without a futex wake-up or a preemption;
 * each for no longer than a budget learned from the thread's recent waits:
 * halved after a spin that ended in a sleep, doubled after one that
 * succeeded (like glibc's adaptive mutex, but shrinking on failure). Usage:
 *
 *     kc_spinner_t sp;
 *     bool ok = false;
 *     if (kc__spin_begin(&sp, self, deadline))
 *         while (!(ok = condition()) && kc__spin_next(&sp)) {}
 *     kc__spin_end(&sp, ok);          (only if kc__spin_begin returned true)
 */
typedef struct kc_spinner {
    kc_parker_t *self;  /* the waiting thread's parker              */
    kc_parker_t *peer;  /* whom we wait for (may be NULL)           */
    int32_t cpu;        /* our CPU when the spin started            */
    uint32_t i;         /* polls so far                             */
    uint32_t budget;    /* polls allowed                            */
    bool yield;         /* yield between polls instead of pausing   */
    uint64_t deadline;  /* the wait's deadline (0: none)            */
} kc_spinner_t;

/* deadline: the wait's absolute deadline (0: none); a yielding spin stops
 * there (a yield can give the CPU away for a whole time slice). */
bool kc__spin_begin(kc_spinner_t *sp, kc_parker_t *self, uint64_t deadline);
/* One poll step (a pause); false when the spin must end. */
bool kc__spin_next(kc_spinner_t *sp);
/* Learns from the outcome: ok = the condition came true while spinning. */
void kc__spin_end(kc_spinner_t *sp, bool ok);
/* Spins (by the policy) until *word == want; true if it did (acquire). */
bool kc__spin_until(kc_parker_t *self, _Atomic uint32_t *word, uint32_t want,
                    uint64_t deadline);

/* Deadline for a timeout in ms (>0); 0 means none. */
uint64_t kc__deadline(long timeout_ms);

/* Development counters (build with -DKC_PROF; compiled out otherwise, so
 * they cost nothing): per-thread event counts that tell the modes of a
 * channel workload apart without hardware counters (which VMs often lack):
 * parks, wake-ups, hand-offs, ring positions lost to a rival (cross-worker
 * contention), back-offs, contended locks. kc__prof_take returns the sums
 * since its previous call (zeros without KC_PROF). */
enum {
    KP_BUF_PARK,        /* buffered waiter queued and parked                 */
    KP_HANDOFF_RECV,    /* send copied straight to a parked receiver         */
    KP_WAKE,            /* waiter woken by a push or pop (wake_peer)         */
    KP_WAKE_EMPTY,      /* wake_peer found nobody to wake                    */
    KP_RETRY_AFTER_WAKE,/* woken waiter had to retry (not handed)            */
    KP_YIELD_BUSY,      /* yields to the worker's others before parking      */
    KP_LANDING,         /* pauses waiting for a claimed push/pop to land     */
    KP_CLAIM_LOST,      /* ring position CAS lost to a same-side rival       */
    KP_BACKOFF,         /* contention back-offs (kc_chan.c buf_op)           */
    KP_STEP_ASIDE,      /* waits that stepped aside for an active peer       */
    KP_LOCK_SLOW,       /* kc__lock found the lock held                      */
    KP_N
};
#ifdef KC_PROF
void kc__prof_inc(int k);
#define KC_PROF_INC(k) kc__prof_inc(k)
#else
#define KC_PROF_INC(k) ((void)0)
#endif
void kc__prof_take(uint64_t out[KP_N]);
extern const char *const kc__prof_names[KP_N];

#endif
