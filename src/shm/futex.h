/* Futex waits and wakes on 32-bit words, shared between processes (or
 * private to one), with absolute CLOCK_MONOTONIC deadlines; and an
 * "event count" (a futex word plus a waiters count) so a notifier makes a
 * system call only when somebody sleeps. */
#ifndef FERRY_SHM_FUTEX_H
#define FERRY_SHM_FUTEX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Sleeps while *word == expected, until woken or *deadline (NULL: forever).
 * shared: the word may be mapped by several processes (no FUTEX_PRIVATE).
 * Returns 0 when woken or the word differed (callers re-check their
 * condition: wakes can be spurious), -ETIME at the deadline, -EINTR on a
 * signal, or another negative errno. */
int fshm__futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline,
                     bool shared);

/* Wakes up to n sleepers on word. Returns the number woken or -errno. */
int fshm__futex_wake(_Atomic uint32_t *word, int n, bool shared);

/* CLOCK_MONOTONIC now, and now + ms as a deadline (ms < 0: none, returns NULL). */
uint64_t fshm__now_ns(void);
uint64_t fshm__now_ms(void);
/* CLOCK_MONOTONIC_COARSE in ms: a few ns instead of a full clock read, one
 * scheduler tick (1-10 ms) of resolution; for "at most once per period"
 * checks on hot paths. */
uint64_t fshm__now_coarse_ms(void);
const struct timespec *fshm__deadline(struct timespec *ts, int timeout_ms);
bool fshm__deadline_passed(const struct timespec *deadline);

/* One spin-wait step: tells the CPU we are spinning (pause/yield). */
static inline void fshm__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Spins for up to spin_ns calling ready(arg); true as soon as it is.
 * Spinning only pays while the process we wait for runs on another CPU, so
 * a thread that may use only one CPU never pauses between polls (that
 * would take the CPU from that very process): it yields the CPU between
 * polls, for a budget learned from its recent waits (doubled after one that
 * succeeded, halved after one that failed, never above spin_ns). With more
 * CPUs it pauses for a learned part of the first 4 us (shrinking while
 * pauses keep failing, down to 0.5 us), then yields between polls up to
 * spin_ns: a yield takes the CPU from nobody who needs it. */
bool fshm__spin(bool (*ready)(void *arg), void *arg, uint64_t spin_ns);

/* Where the process we wait for is, as it last published it (see
 * fshm__run_word and fshm__peer): spinning pays only while it runs on
 * another CPU. */
typedef enum fshm_peer {
    FSHM_PEER_UNKNOWN = 0, /* no word published: fshm__spin's own policy */
    FSHM_PEER_ELSEWHERE,   /* running on another CPU: pause-spin (learned budget) */
    FSHM_PEER_HERE,        /* runnable on our CPU: it cannot run while we poll, so
                            * hand it the CPU (sched_yield between polls) */
    FSHM_PEER_ASLEEP,      /* asleep in the kernel: it cannot end our wait until
                            * something wakes it, so do not spin: sleep at once */
} fshm_peer_t;

/* fshm__spin for a wait whose peer's whereabouts are known: ASLEEP looks
 * once and returns; HERE only yields between polls; ELSEWHERE pause-spins
 * for the learned budget then yields; UNKNOWN is fshm__spin. */
bool fshm__spin_peer(bool (*ready)(void *arg), void *arg, uint64_t spin_ns, fshm_peer_t peer);

/* A "run word" says where its owner thread is: FSHM_RUN_ASLEEP (in a futex
 * or poll sleep), CPU + 1 while running or spinning, FSHM_RUN_UNKNOWN when
 * the owner does not publish (e.g. a server driven by an event loop). It
 * sits on a line of its own and is written only when it changes (falling
 * asleep, waking, moving to another CPU), so in a steady spin it costs no
 * cache-line transfer: readers hit their shared copy. */
#define FSHM_RUN_ASLEEP 0u
#define FSHM_RUN_UNKNOWN UINT32_MAX

/* Publishes "running on the CPU we are on now" (no store if unchanged). */
void fshm__run_here(_Atomic uint32_t *word);
/* Publishes "asleep" before a sleep. */
void fshm__run_asleep(_Atomic uint32_t *word);
/* What a waiter on our current CPU should assume about the owner of v. */
fshm_peer_t fshm__peer(uint32_t v);

/* Event count in shared memory. Sleeper: s = prepare(); re-check the
 * condition; if still false, commit(s) (sleeps), else cancel(). Notifier:
 * make the condition true, then notify(): the seq_cst fences on both sides
 * guarantee that either the sleeper's re-check sees the condition or the
 * notifier sees the sleeper's registration. */
typedef struct fshm_evc {
    _Atomic uint32_t seq;     /* futex word: bumped by every notify that wakes */
    _Atomic uint32_t waiters; /* sleepers registered (a crashed one leaves +1: extra wakes only) */
} fshm_evc_t;

uint32_t fshm__evc_prepare(fshm_evc_t *e);
void fshm__evc_cancel(fshm_evc_t *e);
int fshm__evc_commit(fshm_evc_t *e, uint32_t seq, const struct timespec *deadline);
/* Wakes up to n sleepers if any are registered; true if there were. */
bool fshm__evc_notify(fshm_evc_t *e, int n);
/* Wakes every sleeper, registered or not (shutdown). */
void fshm__evc_broadcast(fshm_evc_t *e);

#endif
