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

uint64_t fshm__now_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
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

/* Spin policy (see futex.h). Per thread: each waiting thread (a worker's
 * main thread, the server's loop thread) learns its own budget. */
#define FSHM_SPIN_MIN_NS 500ull   /* a failing budget never drops below this */
#define FSHM_PAUSE_NS 4000ull     /* longest pause-spin before yielding (several CPUs) */
#define FSHM_NCPU_REFRESH 64      /* failed spins between two affinity reads */
static _Thread_local uint64_t t_spin_ns;   /* learned budget, 0: not yet */
static _Thread_local uint64_t t_yield_ns;  /* the same for yielding on one CPU */
static _Thread_local uint32_t t_ncpu;      /* CPUs we may run on, 0: not yet read */
static _Thread_local uint32_t t_ncpu_age;  /* failed spins since t_ncpu was read */

static uint32_t count_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 2; /* unknown: assume spinning may help */
    int n = CPU_COUNT(&set);
    return n > 0 ? (uint32_t)n : 1;
}

/* Learns from a spin that started at start with that budget; now is the
 * clock's last reading (on success: the last one taken while polling, so
 * a success costs no clock read between seeing the event and returning,
 * where it would delay the reaction by a clock read, ~30 ns in a VM). */
static void spin_learn(uint64_t *learned, uint64_t budget, uint64_t start, uint64_t now, bool ok,
                       uint64_t max_ns)
{
    if (ok) {
        /* Worked: allow twice as long next time (up to the max). */
        uint64_t took = now - start;
        uint64_t b = 2 * (budget > took ? budget : took);
        *learned = b < max_ns ? b : max_ns;
    } else {
        /* Failed: the peer was not running, or slower than the budget.
         * Halve it, so a machine where spinning does not pay stops paying. */
        *learned = budget / 2 > FSHM_SPIN_MIN_NS ? budget / 2 : FSHM_SPIN_MIN_NS;
        t_ncpu_age++;
    }
}

void fshm__run_here(_Atomic uint32_t *word)
{
    int cpu = sched_getcpu(); /* rseq: a load, no system call */
    uint32_t v = cpu < 0 ? FSHM_RUN_UNKNOWN : (uint32_t)cpu + 1;
    if (atomic_load_explicit(word, memory_order_relaxed) != v)
        atomic_store_explicit(word, v, memory_order_relaxed);
}

void fshm__run_asleep(_Atomic uint32_t *word)
{
    if (atomic_load_explicit(word, memory_order_relaxed) != FSHM_RUN_ASLEEP)
        atomic_store_explicit(word, FSHM_RUN_ASLEEP, memory_order_relaxed);
}

fshm_peer_t fshm__peer(uint32_t v)
{
    if (v == FSHM_RUN_UNKNOWN)
        return FSHM_PEER_UNKNOWN;
    if (v == FSHM_RUN_ASLEEP)
        return FSHM_PEER_ASLEEP;
    int cpu = sched_getcpu();
    if (cpu < 0)
        return FSHM_PEER_UNKNOWN;
    return v == (uint32_t)cpu + 1 ? FSHM_PEER_HERE : FSHM_PEER_ELSEWHERE;
}

bool fshm__spin(bool (*ready)(void *arg), void *arg, uint64_t spin_ns)
{
    return fshm__spin_peer(ready, arg, spin_ns, FSHM_PEER_UNKNOWN);
}

bool fshm__spin_peer(bool (*ready)(void *arg), void *arg, uint64_t spin_ns, fshm_peer_t peer)
{
    if (ready(arg))
        return true;
    /* Asleep: nothing we could see while spinning can come from it. */
    if (spin_ns == 0 || peer == FSHM_PEER_ASLEEP)
        return false;
    if (t_ncpu == 0 || t_ncpu_age >= FSHM_NCPU_REFRESH) {
        t_ncpu = count_cpus();
        t_ncpu_age = 0;
    }
    /* Yield-only when the peer is on our CPU, or, not knowing where it
     * is, when we may use only one CPU (then it cannot be elsewhere
     * either, unless its affinity differs: it publishes nothing then). */
    bool one_cpu = peer == FSHM_PEER_HERE || (peer == FSHM_PEER_UNKNOWN && t_ncpu < 2);
    uint64_t *learned = one_cpu ? &t_yield_ns : &t_spin_ns;
    uint64_t budget = *learned && *learned < spin_ns ? *learned : spin_ns;
    uint64_t start = fshm__now_ns(), now = start, end = start + budget;
    if (one_cpu) {
        /* The process we wait for cannot run while we poll: give it the
         * CPU between polls. It ends our wait without a futex wake-up (we
         * are not asleep), and its own wait finds us runnable. */
        for (;;) {
            sched_yield();
            if (ready(arg)) {
                spin_learn(learned, budget, start, now, true, spin_ns);
                return true;
            }
            if ((now = fshm__now_ns()) >= end)
                break;
        }
        spin_learn(learned, budget, start, now, false, spin_ns);
        return false;
    }
    /* Several CPUs: pause-spin for the learned part of the budget (it
     * shrinks while spins keep failing: the peer was not running), then
     * yield between polls up to spin_ns: a yield does not take the CPU from
     * anyone who needs it (often the very process we wait for, on an
     * oversubscribed machine), and keeps us off the futex wake-up path. */
    uint64_t pause_ns = budget < FSHM_PAUSE_NS ? budget : FSHM_PAUSE_NS;
    end = start + spin_ns;
    for (;;) {
        /* Read the clock only every 64 checks: it costs more than a check. */
        for (int i = 0; i < 64; i++) {
            fshm__cpu_relax();
            if (ready(arg)) {
                /* Success while still pausing at the last clock reading:
                 * keep (or grow) the pause phase. */
                spin_learn(learned, pause_ns, start, now, now - start <= pause_ns,
                           FSHM_PAUSE_NS);
                return true;
            }
        }
        now = fshm__now_ns();
        if (now >= end)
            break;
        if (now - start > pause_ns)
            sched_yield();
    }
    spin_learn(learned, pause_ns, start, now, false, FSHM_PAUSE_NS);
    return false;
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

bool fshm__evc_notify(fshm_evc_t *e, int n)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&e->waiters, memory_order_relaxed) == 0)
        return false;
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
    fshm__futex_wake(&e->seq, n, true);
    return true;
}

void fshm__evc_broadcast(fshm_evc_t *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_seq_cst);
    fshm__futex_wake(&e->seq, INT_MAX, true);
}
