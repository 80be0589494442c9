/* Futex waits: a timeout fires at its deadline, a wake arrives, a changed
 * word returns at once, and the event count works across processes. */
#define _GNU_SOURCE
#include "futex.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

Test(futex, timeout_fires_at_the_deadline, .timeout = 10)
{
    _Atomic uint32_t word = 0;
    struct timespec ts;
    uint64_t t0 = fshm__now_ns();
    int rc = fshm__futex_wait(&word, 0, fshm__deadline(&ts, 50), true);
    uint64_t waited = fshm__now_ns() - t0;
    cr_expect_eq(rc, -ETIME);
    cr_expect_geq(waited, 50ull * 1000000, "returned before its deadline");
    cr_expect(fshm__deadline_passed(&ts));
}

Test(futex, changed_word_returns_at_once, .timeout = 10)
{
    _Atomic uint32_t word = 1;
    cr_expect_eq(fshm__futex_wait(&word, 0, NULL, false), 0);
}

Test(futex, zero_timeout_is_already_past, .timeout = 10)
{
    _Atomic uint32_t word = 0;
    struct timespec ts;
    cr_expect_eq(fshm__futex_wait(&word, 0, fshm__deadline(&ts, 0), true), -ETIME);
    cr_expect_null(fshm__deadline(&ts, -1), "negative timeout means forever");
}

typedef struct waker {
    _Atomic uint32_t word;   /* the futex word */
    _Atomic uint32_t asleep; /* the waiter announced itself */
} waker_t;

static void *wake_later(void *arg)
{
    waker_t *w = arg;
    while (!atomic_load(&w->asleep))
        sched_yield();
    atomic_store(&w->word, 1);
    fshm__futex_wake(&w->word, 1, true);
    return NULL;
}

Test(futex, wake_arrives, .timeout = 10, .disabled = false)
{
    waker_t w = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, wake_later, &w), 0);
    struct timespec ts;
    const struct timespec *dl = fshm__deadline(&ts, 5000);
    atomic_store(&w.asleep, 1);
    /* Loop over spurious wakes exactly as real callers do. */
    while (atomic_load(&w.word) == 0) {
        int rc = fshm__futex_wait(&w.word, 0, dl, true);
        cr_assert_neq(rc, -ETIME, "the wake never arrived");
    }
    pthread_join(th, NULL);
    cr_expect_eq(w.word, 1);
}

typedef struct evc_pair {
    fshm_evc_t evc;          /* event count under test */
    _Atomic uint32_t flag;   /* the condition */
} evc_pair_t;

static void *evc_notifier(void *arg)
{
    evc_pair_t *p = arg;
    while (atomic_load(&p->evc.waiters) == 0)
        sched_yield();
    atomic_store(&p->flag, 1);
    fshm__evc_notify(&p->evc, 1);
    return NULL;
}

Test(futex, event_count_wakes_a_registered_sleeper, .timeout = 10)
{
    evc_pair_t p = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, evc_notifier, &p), 0);
    struct timespec ts;
    const struct timespec *dl = fshm__deadline(&ts, 5000);
    while (!atomic_load(&p.flag)) {
        uint32_t s = fshm__evc_prepare(&p.evc);
        if (atomic_load(&p.flag)) {
            fshm__evc_cancel(&p.evc);
            break;
        }
        cr_assert_neq(fshm__evc_commit(&p.evc, s, dl), -ETIME, "notify was lost");
    }
    pthread_join(th, NULL);
    cr_expect_eq(p.evc.waiters, 0, "registration undone");
}

Test(futex, event_count_times_out_without_notify, .timeout = 10)
{
    fshm_evc_t e = {0};
    struct timespec ts;
    uint32_t s = fshm__evc_prepare(&e);
    cr_expect_eq(fshm__evc_commit(&e, s, fshm__deadline(&ts, 20)), -ETIME);
    cr_expect_eq(e.waiters, 0);
    fshm__evc_notify(&e, 1); /* nobody registered: no wake, no change */
    cr_expect_eq(e.seq, s);
}

Test(futex, shared_word_wakes_another_process, .timeout = 10)
{
    waker_t *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(w, MAP_FAILED);
    atomic_init(&w->word, 0);
    atomic_init(&w->asleep, 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct timespec ts;
        const struct timespec *dl = fshm__deadline(&ts, 5000);
        atomic_store(&w->asleep, 1);
        while (atomic_load(&w->word) == 0)
            if (fshm__futex_wait(&w->word, 0, dl, true) == -ETIME)
                _exit(2);
        _exit(0);
    }
    while (!atomic_load(&w->asleep))
        sched_yield();
    atomic_store(&w->word, 1);
    fshm__futex_wake(&w->word, 1, true);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child did not see the wake");
    munmap(w, sizeof(*w));
}

/* ---- run words and the peer-aware spin (issue 6 item 23) ---- */

/* What a thread pinned to its CPU saw (asserted in the test's own thread). */
typedef struct peer_seen {
    int cpu;                /* the CPU it was pinned to, -1: pinning failed */
    fshm_peer_t unknown;    /* fshm__peer of FSHM_RUN_UNKNOWN */
    uint32_t here_word;     /* the word after fshm__run_here */
    fshm_peer_t here;       /* fshm__peer of that word */
    fshm_peer_t elsewhere;  /* fshm__peer of another CPU's word */
    uint32_t asleep_word;   /* the word after fshm__run_asleep */
    fshm_peer_t asleep;     /* fshm__peer of that word */
} peer_seen_t;

static void *peer_words_thread(void *arg)
{
    peer_seen_t *p = arg;
    /* Pinned, so that sched_getcpu() cannot change between the calls. */
    int cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    p->cpu = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? cpu : -1;
    _Atomic uint32_t word = FSHM_RUN_UNKNOWN;
    p->unknown = fshm__peer(atomic_load(&word));
    fshm__run_here(&word);
    p->here_word = atomic_load(&word);
    p->here = fshm__peer(p->here_word);
    p->elsewhere = fshm__peer((uint32_t)cpu + 2);
    fshm__run_asleep(&word);
    p->asleep_word = atomic_load(&word);
    p->asleep = fshm__peer(p->asleep_word);
    return NULL;
}

Test(futex, run_words_say_where_the_peer_is, .timeout = 10)
{
    /* In a thread of its own: the pinning must not leak into other tests. */
    peer_seen_t p;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, peer_words_thread, &p), 0);
    pthread_join(th, NULL);
    cr_assert_geq(p.cpu, 0, "could not pin the thread");
    cr_expect_eq(p.unknown, FSHM_PEER_UNKNOWN);
    cr_expect_eq(p.here_word, (uint32_t)p.cpu + 1, "running: CPU + 1");
    cr_expect_eq(p.here, FSHM_PEER_HERE);
    cr_expect_eq(p.elsewhere, FSHM_PEER_ELSEWHERE);
    cr_expect_eq(p.asleep_word, FSHM_RUN_ASLEEP);
    cr_expect_eq(p.asleep, FSHM_PEER_ASLEEP);
}

typedef struct countdown {
    int calls; /* ready() calls so far */
    int after; /* ready from this call on (0: never) */
} countdown_t;

static bool countdown_ready(void *arg)
{
    countdown_t *c = arg;
    c->calls++;
    return c->after && c->calls >= c->after;
}

Test(futex, spin_does_not_spin_for_a_sleeping_peer, .timeout = 10)
{
    /* A peer asleep in the kernel cannot end the wait: one look, then the
     * caller sleeps at once (no 50 us of polling). */
    countdown_t c = {0};
    cr_expect_not(fshm__spin_peer(countdown_ready, &c, 50000000ull, FSHM_PEER_ASLEEP));
    cr_expect_eq(c.calls, 1, "looked %d times", c.calls);
    /* Already ready: true at once, whatever the peer. */
    c = (countdown_t){.after = 1};
    cr_expect(fshm__spin_peer(countdown_ready, &c, 50000000ull, FSHM_PEER_ASLEEP));
}

Test(futex, spin_polls_again_for_a_running_peer, .timeout = 10)
{
    /* Peer on our CPU (yields between polls), elsewhere (pauses) or not
     * known: the spin polls again instead of giving up at once. Ready on
     * the second look, which comes before any clock check, so no budget
     * learned by earlier waits can end the spin first. */
    fshm_peer_t peers[] = {FSHM_PEER_HERE, FSHM_PEER_ELSEWHERE, FSHM_PEER_UNKNOWN};
    for (size_t i = 0; i < sizeof peers / sizeof *peers; i++) {
        countdown_t c = {.after = 2};
        cr_expect(fshm__spin_peer(countdown_ready, &c, 50000000ull, peers[i]), "peer %d",
                  (int)peers[i]);
        cr_expect_eq(c.calls, 2);
    }
}
