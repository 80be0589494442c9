/* Futex wrappers and the event count. FUTEX_WAIT_BITSET is used because it
 * takes an absolute CLOCK_MONOTONIC deadline: a wait interrupted by a signal
 * or a spurious wake resumes with the same deadline instead of drifting. */
#define _GNU_SOURCE
#include "futex.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int fshm__futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline,
                     bool shared)
{
    int op = FUTEX_WAIT_BITSET | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    long rc = syscall(SYS_futex, (uint32_t *)word, op, expected, deadline, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
        return 0;
    switch (errno) {
    case EAGAIN:
        return 0; /* the word already changed */
    case ETIMEDOUT:
        return -ETIME;
    default:
        return -errno;
    }
}

int fshm__futex_wake(_Atomic uint32_t *word, int n, bool shared)
{
    int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    long rc = syscall(SYS_futex, (uint32_t *)word, op, n, NULL, NULL, 0);
    return rc < 0 ? -errno : (int)rc;
}

uint64_t fshm__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fshm__now_ms(void)
{
    return fshm__now_ns() / 1000000ull;
}

const struct timespec *fshm__deadline(struct timespec *ts, int timeout_ms)
{
    if (timeout_ms < 0)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
    return ts;
}

bool fshm__deadline_passed(const struct timespec *deadline)
{
    if (!deadline)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

bool fshm__spin(bool (*ready)(void *arg), void *arg, uint64_t spin_ns)
{
    if (ready(arg))
        return true;
    if (spin_ns == 0)
        return false;
    uint64_t start = fshm__now_ns(), end = start + spin_ns;
    for (;;) {
        /* Read the clock only every 64 checks: it costs more than a check. */
        for (int i = 0; i < 64; i++) {
            fshm__cpu_relax();
            if (ready(arg))
                return true;
        }
        uint64_t now = fshm__now_ns();
        if (now >= end)
            return false;
        /* Past the first few microseconds the other side is probably not
         * running: if another thread waits for this CPU (often the very
         * process we wait for, on an oversubscribed machine), let it run. */
        if (now - start > 4000)
            sched_yield();
    }
}

uint32_t fshm__evc_prepare(fshm_evc_t *e)
{
    uint32_t s = atomic_load_explicit(&e->seq, memory_order_acquire);
    atomic_fetch_add_explicit(&e->waiters, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    return s;
}

void fshm__evc_cancel(fshm_evc_t *e)
{
    atomic_fetch_sub_explicit(&e->waiters, 1, memory_order_relaxed);
}

int fshm__evc_commit(fshm_evc_t *e, uint32_t seq, const struct timespec *deadline)
{
    int rc = fshm__futex_wait(&e->seq, seq, deadline, true);
    atomic_fetch_sub_explicit(&e->waiters, 1, memory_order_relaxed);
    return rc;
}

void fshm__evc_notify(fshm_evc_t *e, int n)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&e->waiters, memory_order_relaxed) == 0)
        return;
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
    fshm__futex_wake(&e->seq, n, true);
}

void fshm__evc_broadcast(fshm_evc_t *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_seq_cst);
    fshm__futex_wake(&e->seq, INT_MAX, true);
}
