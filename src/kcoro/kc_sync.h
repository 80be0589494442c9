/* kcoro internal: futex-based lock and parker (the one waiter abstraction).
 *
 * Tuned for short critical sections (channel bookkeeping of a few dozen
 * instructions) on few cores: spin briefly, then sleep in the kernel. The
 * parker is what a blocked operation waits on; a coroutine scheduler can
 * provide another park/unpark pair without channels changing.
 */
#ifndef KC_SYNC_H
#define KC_SYNC_H

#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define kc__cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define kc__cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define kc__cpu_relax() __asm__ __volatile__("" ::: "memory")
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
 * and every caller re-checks its condition in a loop. */
typedef struct kc_parker {
    _Atomic uint32_t state;   /* KC_PARK_EMPTY / _NOTIFIED / _SLEEPING */
    struct kc_parker *next;   /* free-pool link while unowned          */
} kc_parker_t;

enum { KC_PARK_EMPTY = 0, KC_PARK_NOTIFIED = 1, KC_PARK_SLEEPING = 2 };

/* The calling thread's parker. Never NULL (aborts on out of memory: a
 * thread that cannot block cannot honour any API contract). */
kc_parker_t *kc__parker_self(void);
/* Waits for a notification or the absolute CLOCK_MONOTONIC deadline
 * (0 = none). Returns 0 when notified (possibly spuriously), -ETIME. */
int kc__park(kc_parker_t *p, uint64_t deadline_ns);
/* Notifies; wakes the owner if it sleeps. */
void kc__unpark(kc_parker_t *p);

/* Deadline for a timeout in ms (>0); 0 means none. */
uint64_t kc__deadline(long timeout_ms);

#endif
