/* The pipe lock: a 32-bit futex word holding the owner's thread id, for the
 * write/read fast path (one CAS to lock, one exchange to unlock; a robust
 * pthread mutex costs 4-5x that, measured: ~125 ns vs ~25-45 ns a pair).
 *
 * Owner death without the kernel's robust list: a waiter sleeps in slices of
 * ZKPROLOGML_LIVENESS_MS; after a slice it looks up the owner's thread in
 * /proc, and if that thread is gone (or a zombie) it takes the lock over with
 * one CAS. Every critical section publishes its change last, so the data
 * is consistent wherever an owner died. A thread id reused by a new thread
 * before the check would keep the lock held until that thread ends: pid
 * space wraps rarely and the window is one slice. */
#ifndef FERRY_MONSTER_PLOCK_H
#define FERRY_MONSTER_PLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#define FMON_PLOCK_WAITERS 0x80000000u /* somebody sleeps on the word */

typedef struct fmon_plock {
    _Atomic uint32_t word; /* 0 free, else owner tid | FMON_PLOCK_WAITERS */
} fmon_plock_t;

/* This thread's id (cached; reset in a fork() child). */
uint32_t fmon_tid(void);
int fmon_plock_slow(fmon_plock_t *l, uint32_t me);

/* Locks. 0 (also after taking over from a dead owner). */
static inline int fmon_plock(fmon_plock_t *l)
{
    uint32_t me = fmon_tid(), expect = 0;
    if (atomic_compare_exchange_strong_explicit(&l->word, &expect, me, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    return fmon_plock_slow(l, me);
}

void fmon_plock_wake(fmon_plock_t *l);

static inline void fmon_punlock(fmon_plock_t *l)
{
    uint32_t w = atomic_exchange_explicit(&l->word, 0, memory_order_release);
    if (w & FMON_PLOCK_WAITERS)
        fmon_plock_wake(l);
}

#endif
