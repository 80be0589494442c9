/* The one place src/monster reaches into the shm layer's event count
 * (src/shm/futex.h, fshm_evc_t): a notify for sleepers that register under a
 * lock the notifier also holds. fshm__evc_notify() pays a seq_cst fence per
 * call so it works without such a lock; the pipe fast path does not need it
 * (the mutex orders the sleeper's registration against the check). If the
 * shm layer grows an equivalent (e.g. fshm__evc_notify_locked), use it and
 * delete this file. */
#ifndef FERRY_MONSTER_EVC_H
#define FERRY_MONSTER_EVC_H

#include "futex.h"

#include <stdbool.h>

/* Call with the lock held under which sleepers call fshm__evc_prepare(). */
static inline bool fmon_evc_has_sleepers(fshm_evc_t *e)
{
    return atomic_load_explicit(&e->waiters, memory_order_relaxed) != 0;
}

/* Call after unlocking, when fmon_evc_has_sleepers() said yes: the seq bump
 * comes after every registered sleeper read seq, so none can miss it. */
static inline void fmon_evc_wake(fshm_evc_t *e, int n)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
    fshm__futex_wake(&e->seq, n, true);
}

#endif
