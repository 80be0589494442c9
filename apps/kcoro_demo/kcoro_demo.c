/* kcoro_demo: a short tour of kcoro, printing what happens.
 *
 *   1. A pipeline inside a scope: a producer task sends 1..12, a filter actor
 *      keeps the multiples of 3, a consumer task reads them with kc_select
 *      (data or a control message, 100 ms timeout). The producer pauses once,
 *      so the consumer sees its select time out.
 *   2. Cancellation: a task and a task in a nested scope block forever on a
 *      receive; cancelling the outer scope wakes both with -ECANCELED.
 *
 * Exits 0 when everything behaved as described, 1 otherwise. */
#include <kcoro/kcoro.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t t_start;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* printf with the elapsed time and the speaker, one whole line at a time. */
static void say(const char *who, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&log_lock);
    printf("[%6.1f ms] %-9s ", (double)(kc_now_ns() - t_start) / 1e6, who);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&log_lock);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- 1. pipeline -------------------------------------------------------- */

struct pipeline {
    kc_chan_t *numbers; /* producer -> filter actor       */
    kc_chan_t *kept;    /* filter actor -> consumer       */
    kc_chan_t *control; /* main -> consumer (rendezvous)  */
    kc_scope_t *scope;
    int64_t sum;        /* consumer: sum of what it got   */
    int timeouts;       /* consumer: selects that timed out */
};

static int producer_task(void *arg, const kc_cancel_t *cancel)
{
    struct pipeline *p = arg;
    for (int64_t n = 1; n <= 12; n++) {
        if (n == 7) {
            say("producer", "pausing 200 ms");
            sleep_ms(200);
        }
        int rc = kc_chan_send_c(p->numbers, &n, -1, cancel);
        if (rc) {
            say("producer", "send failed: %s", kc_strerror(rc));
            return rc;
        }
    }
    say("producer", "sent 1..12, closing 'numbers'");
    kc_chan_close(p->numbers);
    return 0;
}

/* The filter actor's handler: forwards multiples of 3. */
static int filter_process(void *user, void *msg)
{
    struct pipeline *p = user;
    int64_t n = *(int64_t *)msg;
    if (n % 3 != 0)
        return 0;
    say("filter", "%" PRId64 " passes", n);
    return kc_chan_send_c(p->kept, &n, -1, kc_scope_token(p->scope));
}

static void filter_exit(void *user, int reason)
{
    struct pipeline *p = user;
    say("filter", "stopped (%s), closing 'kept'", kc_strerror(reason));
    kc_chan_close(p->kept);
}

static int consumer_task(void *arg, const kc_cancel_t *cancel)
{
    struct pipeline *p = arg;
    int64_t n;
    char ctl[16];
    for (;;) {
        kc_select_clause_t cl[2] = {
            {.ch = p->kept, .op = KC_SELECT_RECV, .buf = &n},
            {.ch = p->control, .op = KC_SELECT_RECV, .buf = ctl},
        };
        int i = kc_select(cl, 2, KC_SELECT_BIASED, 100, cancel);
        if (i == -ETIME) {
            p->timeouts++;
            say("consumer", "select: nothing within 100 ms");
            continue;
        }
        if (i < 0) {
            say("consumer", "select failed: %s", kc_strerror(i));
            return i;
        }
        if (cl[i].result == -EPIPE) {
            if (i == 0)
                break; /* 'kept' is closed and drained: done */
            continue;
        }
        if (i == 0) {
            p->sum += n;
            say("consumer", "got %" PRId64, n);
        } else {
            say("consumer", "control message \"%s\"", ctl);
        }
    }
    say("consumer", "'kept' closed and drained; sum = %" PRId64, p->sum);
    return 0;
}

static int demo_pipeline(void)
{
    struct pipeline p = {0};
    kc_actor_t *filter = NULL;
    int rc;

    if ((rc = kc_scope_create(&p.scope, NULL)) ||
        (rc = kc_chan_make(&p.numbers, KC_BUFFERED, sizeof(int64_t), 4)) ||
        (rc = kc_chan_make(&p.kept, KC_BUFFERED, sizeof(int64_t), 4)) ||
        (rc = kc_chan_make(&p.control, KC_RENDEZVOUS, 16, 0))) {
        fprintf(stderr, "kcoro_demo: setup: %s\n", kc_strerror(rc));
        goto out;
    }
    kc_chan_set_name(p.numbers, "numbers");
    kc_chan_set_name(p.kept, "kept");
    kc_chan_set_name(p.control, "control");

    kc_actor_ctx_ex ctx = {
        .inbox = p.numbers, .process = filter_process, .user = &p,
        .timeout_ms = -1, .cancel = kc_scope_token(p.scope), .on_exit = filter_exit,
    };
    if ((rc = kc_actor_start_ex(&filter, &ctx)) ||
        (rc = kc_scope_spawn(p.scope, consumer_task, &p)) ||
        (rc = kc_scope_spawn(p.scope, producer_task, &p))) {
        fprintf(stderr, "kcoro_demo: start: %s\n", kc_strerror(rc));
        kc_scope_cancel(p.scope);
        goto out;
    }
    say("main", "pipeline started: producer -> filter actor (multiples of 3) -> consumer");

    sleep_ms(50);
    char ctl[16] = "status?";
    rc = kc_chan_send(p.control, ctl, 1000);
    say("main", "sent control message: %s", rc ? kc_strerror(rc) : "taken");

    rc = kc_scope_wait(p.scope);
    say("main", "scope finished: %s", rc ? kc_strerror(rc) : "all tasks returned 0");

out:;
    int reason = filter ? kc_actor_join(filter) : 0;
    if (filter)
        say("main", "filter actor joined, exit reason %s", kc_strerror(reason));
    kc_scope_destroy(p.scope);
    kc_chan_destroy(p.numbers);
    kc_chan_destroy(p.kept);
    kc_chan_destroy(p.control);

    bool ok = rc == 0 && reason == -EPIPE && p.sum == 3 + 6 + 9 + 12;
    say("main", "pipeline %s (sum %" PRId64 ", want 30; %d select timeout%s)",
        ok ? "OK" : "FAILED", p.sum, p.timeouts, p.timeouts == 1 ? "" : "s");
    return ok ? 0 : 1;
}

/* ---- 2. cancellation ---------------------------------------------------- */

struct waiter {
    const char *who;
    kc_chan_t *never;   /* nobody ever sends here              */
    kc_scope_t *outer;  /* outer task: parent of its nested scope */
    int inner_rc;       /* result of the inner task's receive  */
    int outer_rc;       /* result of the outer task's receive  */
};

static int inner_task(void *arg, const kc_cancel_t *cancel)
{
    struct waiter *w = arg;
    int64_t v;
    say("inner", "blocking on a receive nobody will satisfy");
    w->inner_rc = kc_chan_recv_c(w->never, &v, -1, cancel);
    say("inner", "woken: %s", kc_strerror(w->inner_rc));
    return 0;
}

static int outer_task(void *arg, const kc_cancel_t *cancel)
{
    struct waiter *w = arg;
    kc_scope_t *nested;
    int64_t v;
    /* A scope under this task's scope: cancelling the outer one cascades. */
    int rc = kc_scope_create(&nested, kc_scope_token(w->outer));
    if (rc)
        return rc;
    rc = kc_scope_spawn(nested, inner_task, w);
    if (rc == 0) {
        say("outer", "blocking too, with a nested scope running 'inner'");
        w->outer_rc = kc_chan_recv_c(w->never, &v, -1, cancel);
        say("outer", "woken: %s; waiting for the nested scope", kc_strerror(w->outer_rc));
        kc_scope_wait(nested);
    }
    kc_scope_destroy(nested);
    return rc;
}

static int demo_cancel(void)
{
    struct waiter w = {.inner_rc = 1, .outer_rc = 1};
    int rc;
    if ((rc = kc_chan_make(&w.never, KC_RENDEZVOUS, sizeof(int64_t), 0)) ||
        (rc = kc_scope_create(&w.outer, NULL))) {
        fprintf(stderr, "kcoro_demo: setup: %s\n", kc_strerror(rc));
        kc_chan_destroy(w.never);
        return 1;
    }
    if ((rc = kc_scope_spawn(w.outer, outer_task, &w)) == 0) {
        sleep_ms(100);
        say("main", "cancelling the outer scope");
        uint64_t t0 = kc_now_ns();
        kc_scope_cancel(w.outer);
        rc = kc_scope_wait(w.outer);
        say("main", "outer scope done %.2f ms after cancel", (double)(kc_now_ns() - t0) / 1e6);
    }
    kc_scope_destroy(w.outer);
    kc_chan_destroy(w.never);
    bool ok = rc == 0 && w.inner_rc == -ECANCELED && w.outer_rc == -ECANCELED;
    say("main", "cancellation %s", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}

int main(void)
{
    t_start = kc_now_ns();
    printf("kcoro demo: channels, an actor, scopes, select with timeout, cancellation\n\n");
    int bad = demo_pipeline();
    printf("\n");
    bad |= demo_cancel();
    printf("\nkcoro demo %s\n", bad ? "FAILED" : "done");
    return bad;
}
