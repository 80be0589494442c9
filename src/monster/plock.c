/* Slow paths of the pipe lock (plock.h): a short spin, then futex sleeps in
 * liveness slices with a look at the owner between them. */
#define _GNU_SOURCE
#include "plock.h"
#include "segment.h"

#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Thread_local uint32_t cached_tid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_tid(void)
{
    cached_tid = 0; /* the child's thread has another id */
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_tid);
}

uint32_t fmon_tid(void)
{
    if (__builtin_expect(cached_tid == 0, 0)) {
        pthread_once(&atfork_once, install_atfork);
        cached_tid = (uint32_t)syscall(SYS_gettid);
    }
    return cached_tid;
}

void fmon_plock_wake(fmon_plock_t *l)
{
    fshm__futex_wake(&l->word, 1, true);
}

static bool owner_gone(uint32_t tid)
{
    uint64_t st;
    return tid == 0 || fmon_proc_start_time((pid_t)tid, &st) == -ESRCH;
}

int fmon_plock_slow(fmon_plock_t *l, uint32_t me)
{
    /* Critical sections are a few dozen ns: a short spin usually wins. */
    for (int i = 0; i < 64; i++) {
        fshm__cpu_relax();
        uint32_t expect = 0;
        if (atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->word, &expect, me, memory_order_acquire,
                                                  memory_order_relaxed))
            return 0;
    }
    for (;;) {
        uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
        if (w == 0) {
            /* Taken with the waiters bit: others may still sleep. */
            if (atomic_compare_exchange_weak_explicit(&l->word, &w, me | FMON_PLOCK_WAITERS,
                                                      memory_order_acquire, memory_order_relaxed))
                return 0;
            continue;
        }
        if (!(w & FMON_PLOCK_WAITERS)) {
            if (!atomic_compare_exchange_weak_explicit(&l->word, &w, w | FMON_PLOCK_WAITERS,
                                                       memory_order_relaxed, memory_order_relaxed))
                continue;
            w |= FMON_PLOCK_WAITERS;
        }
        struct timespec slice;
        int rc = fshm__futex_wait(&l->word, w, fshm__deadline(&slice, ZKPROLOGML_LIVENESS_MS), true);
        if (rc == -ETIME && owner_gone(w & ~FMON_PLOCK_WAITERS) &&
            atomic_compare_exchange_strong_explicit(&l->word, &w, me | FMON_PLOCK_WAITERS,
                                                    memory_order_acquire, memory_order_relaxed))
            return 0; /* the owner died holding it */
    }
}
