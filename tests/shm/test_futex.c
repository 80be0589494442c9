/* Futex waits: a timeout fires at its deadline, a wake arrives, a changed
 * word returns at once, and the event count works across processes. */
#include "futex.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
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
