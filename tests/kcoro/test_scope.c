/* test_scope: structured concurrency: wait for children, cascade cancellation. */
#include "kt.h"

/* kc_scope_wait on a helper thread, so a stuck scope fails instead of hanging. */
struct waiter {
    kc_scope_t *s;
    int rc;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    w->rc = kc_scope_wait(w->s);
    return NULL;
}

static int wait_bounded(kc_scope_t *s)
{
    struct waiter w = { .s = s, .rc = 1 };
    pthread_t t;
    kt_start(&t, wait_thread, &w);
    kt_join(t, 10000);
    return w.rc;
}

static kc_scope_t *scope(kc_cancel_t *parent)
{
    kc_scope_t *s = NULL;
    int rc = kc_scope_create(&s, parent);
    cr_assert_eq(rc, 0, "kc_scope_create: %d", rc);
    cr_assert_not_null(s);
    cr_assert_not_null(kc_scope_token(s));
    return s;
}

/* ---- tasks -------------------------------------------------------------- */

struct sleeper {
    long ms;
    _Atomic int *done;
};

static int sleep_task(void *arg, const kc_cancel_t *cancel)
{
    struct sleeper *s = arg;
    kt_sleep_ms(s->ms);
    atomic_fetch_add(s->done, 1);
    return 0;
}

/* Blocks in recv_c with the scope token; records the result. */
struct blocker {
    kc_chan_t *ch;
    int rc;              /* recv result                          */
    int ret;             /* what the task returns                */
    bool return_rc;      /* return the recv result instead       */
    _Atomic bool started;
};

static int block_task(void *arg, const kc_cancel_t *cancel)
{
    struct blocker *b = arg;
    int v;
    atomic_store(&b->started, true);
    b->rc = kc_chan_recv_c(b->ch, &v, 20000, cancel);
    return b->return_rc ? b->rc : b->ret;
}

struct failer {
    long delay_ms;
    int err;
};

static int fail_task(void *arg, const kc_cancel_t *cancel)
{
    struct failer *f = arg;
    kt_sleep_ms(f->delay_ms);
    return f->err;
}

static void wait_started(struct blocker *b, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t dl = kt_now_ms() + 10000;
        while (!atomic_load(&b[i].started)) {
            cr_assert_lt(kt_now_ms(), dl, "task %d never ran", i);
            kt_sleep_ms(1);
        }
    }
    kt_sleep_ms(50); /* let them reach their receive */
}

/* ---- tests -------------------------------------------------------------- */

Test(scope, waits_for_all_children)
{
    enum { N = 8 };
    _Atomic int done = 0;
    struct sleeper sl[N];
    kc_scope_t *s = scope(NULL);
    for (int i = 0; i < N; i++) {
        sl[i] = (struct sleeper){ .ms = 20 + 10 * i, .done = &done };
        cr_assert_eq(kc_scope_spawn(s, sleep_task, &sl[i]), 0);
    }
    cr_assert_eq(wait_bounded(s), 0);
    cr_assert_eq(atomic_load(&done), N, "wait returned with %d of %d children done",
                 atomic_load(&done), N);
    cr_assert_not(kc_cancel_is_set(kc_scope_token(s)), "a clean finish is not a cancel");
    kc_scope_destroy(s);
}

Test(scope, wait_with_no_children)
{
    kc_scope_t *s = scope(NULL);
    cr_assert_eq(wait_bounded(s), 0);
    kc_scope_destroy(s);
}

Test(scope, many_children)
{
    enum { N = 64 };
    _Atomic int done = 0;
    struct sleeper sl = { .ms = 1, .done = &done };
    kc_scope_t *s = scope(NULL);
    for (int i = 0; i < N; i++)
        cr_assert_eq(kc_scope_spawn(s, sleep_task, &sl), 0);
    cr_assert_eq(wait_bounded(s), 0);
    cr_assert_eq(atomic_load(&done), N);
    kc_scope_destroy(s);
}

Test(scope, cancel_wakes_children_blocked_in_recv)
{
    enum { N = 4 };
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    struct blocker b[N];
    kc_scope_t *s = scope(NULL);
    for (int i = 0; i < N; i++) {
        b[i] = (struct blocker){ .ch = ch, .rc = 1 };
        cr_assert_eq(kc_scope_spawn(s, block_task, &b[i]), 0);
    }
    wait_started(b, N);
    uint64_t t0 = kt_now_ms();
    kc_scope_cancel(s);
    cr_assert(kc_cancel_is_set(kc_scope_token(s)));
    cr_assert_eq(wait_bounded(s), 0, "every child returned 0");
    cr_assert_lt(kt_now_ms() - t0, KT_PROMPT_MS);
    for (int i = 0; i < N; i++)
        cr_assert_eq(b[i].rc, -ECANCELED, "child %d: %d", i, b[i].rc);
    kc_scope_destroy(s);
    kc_chan_destroy(ch);
}

Test(scope, failing_child_cancels_siblings_and_wait_returns_its_error)
{
    enum { N = 3 };
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    struct blocker b[N];
    kc_scope_t *s = scope(NULL);
    for (int i = 0; i < N; i++) {
        /* the siblings return their (non-zero) receive result: still the
         * first failure is the one wait reports */
        b[i] = (struct blocker){ .ch = ch, .rc = 1, .return_rc = true };
        cr_assert_eq(kc_scope_spawn(s, block_task, &b[i]), 0);
    }
    wait_started(b, N);
    struct failer f = { .delay_ms = 10, .err = -EIO };
    cr_assert_eq(kc_scope_spawn(s, fail_task, &f), 0);
    int rc = wait_bounded(s);
    cr_assert_eq(rc, -EIO, "wait returned %d", rc);
    for (int i = 0; i < N; i++)
        cr_assert_eq(b[i].rc, -ECANCELED, "sibling %d: %d", i, b[i].rc);
    cr_assert(kc_cancel_is_set(kc_scope_token(s)));
    kc_scope_destroy(s);
    kc_chan_destroy(ch);
}

Test(scope, positive_child_result_also_fails_the_scope)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    struct blocker b = { .ch = ch, .rc = 1 };
    struct failer f = { .delay_ms = 20, .err = 7 };
    kc_scope_t *s = scope(NULL);
    cr_assert_eq(kc_scope_spawn(s, block_task, &b), 0);
    cr_assert_eq(kc_scope_spawn(s, fail_task, &f), 0);
    cr_assert_eq(wait_bounded(s), 7);
    cr_assert_eq(b.rc, -ECANCELED);
    kc_scope_destroy(s);
    kc_chan_destroy(ch);
}

Test(scope, nested_scope_is_cancelled_by_outer_cancel)
{
    enum { N = 3 };
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_scope_t *outer = scope(NULL);
    kc_scope_t *inner = scope(kc_scope_token(outer));
    struct blocker bi[N], bo = { .ch = ch, .rc = 1 };
    for (int i = 0; i < N; i++) {
        bi[i] = (struct blocker){ .ch = ch, .rc = 1 };
        cr_assert_eq(kc_scope_spawn(inner, block_task, &bi[i]), 0);
    }
    cr_assert_eq(kc_scope_spawn(outer, block_task, &bo), 0);
    wait_started(bi, N);
    wait_started(&bo, 1);
    kc_scope_cancel(outer);
    cr_assert(kc_cancel_is_set(kc_scope_token(inner)));
    cr_assert_eq(wait_bounded(inner), 0);
    cr_assert_eq(wait_bounded(outer), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(bi[i].rc, -ECANCELED, "inner child %d: %d", i, bi[i].rc);
    cr_assert_eq(bo.rc, -ECANCELED);
    kc_scope_destroy(inner);
    kc_scope_destroy(outer);
    kc_chan_destroy(ch);
}

Test(scope, inner_cancel_does_not_reach_outer)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_scope_t *outer = scope(NULL);
    kc_scope_t *inner = scope(kc_scope_token(outer));
    kc_scope_cancel(inner);
    cr_assert_not(kc_cancel_is_set(kc_scope_token(outer)));
    struct blocker b = { .ch = ch, .rc = 1 };
    cr_assert_eq(kc_scope_spawn(outer, block_task, &b), 0);
    wait_started(&b, 1);
    int v = 1;
    cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    cr_assert_eq(wait_bounded(outer), 0);
    cr_assert_eq(b.rc, 0, "outer child got %d", b.rc);
    kc_scope_destroy(inner);
    kc_scope_destroy(outer);
    kc_chan_destroy(ch);
}

/* A task that opens its own scope under the outer one (the usual nesting). */
struct nester {
    kc_scope_t *outer;
    kc_chan_t *ch;
    struct blocker kids[2];
    int inner_wait;
};

static int nest_task(void *arg, const kc_cancel_t *cancel)
{
    struct nester *n = arg;
    kc_scope_t *inner = NULL;
    int rc = kc_scope_create(&inner, cancel); /* the task's own token */
    if (rc != 0)
        return rc;
    for (int i = 0; i < 2; i++)
        if (kc_scope_spawn(inner, block_task, &n->kids[i]) != 0)
            n->kids[i].rc = 2;
    n->inner_wait = kc_scope_wait(inner);
    kc_scope_destroy(inner);
    return 0;
}

Test(scope, scope_inside_task_cascades)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_scope_t *outer = scope(NULL);
    struct nester n = { .outer = outer, .ch = ch, .inner_wait = 1 };
    for (int i = 0; i < 2; i++)
        n.kids[i] = (struct blocker){ .ch = ch, .rc = 1 };
    cr_assert_eq(kc_scope_spawn(outer, nest_task, &n), 0);
    wait_started(n.kids, 2);
    kc_scope_cancel(outer);
    cr_assert_eq(wait_bounded(outer), 0);
    cr_assert_eq(n.inner_wait, 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(n.kids[i].rc, -ECANCELED, "grandchild %d: %d", i, n.kids[i].rc);
    kc_scope_destroy(outer);
    kc_chan_destroy(ch);
}

Test(scope, spawn_after_cancel_is_ecanceled)
{
    _Atomic int done = 0;
    struct sleeper sl = { .ms = 0, .done = &done };
    kc_scope_t *s = scope(NULL);
    kc_scope_cancel(s);
    cr_assert_eq(kc_scope_spawn(s, sleep_task, &sl), -ECANCELED);
    cr_assert_eq(wait_bounded(s), 0);
    cr_assert_eq(atomic_load(&done), 0, "the refused task ran");
    kc_scope_destroy(s);
}

Test(scope, spawn_under_cancelled_parent_is_ecanceled)
{
    _Atomic int done = 0;
    struct sleeper sl = { .ms = 0, .done = &done };
    kc_cancel_t *parent = kt_token(NULL);
    kc_cancel_trigger(parent);
    kc_scope_t *s = scope(parent);
    cr_assert(kc_cancel_is_set(kc_scope_token(s)));
    cr_assert_eq(kc_scope_spawn(s, sleep_task, &sl), -ECANCELED);
    kc_scope_destroy(s);
    cr_assert_eq(atomic_load(&done), 0);
    kc_cancel_destroy(parent);
}

Test(scope, spawn_after_child_failure_is_ecanceled)
{
    _Atomic int done = 0;
    struct sleeper sl = { .ms = 0, .done = &done };
    struct failer f = { .delay_ms = 0, .err = -EIO };
    kc_scope_t *s = scope(NULL);
    cr_assert_eq(kc_scope_spawn(s, fail_task, &f), 0);
    cr_assert_eq(wait_bounded(s), -EIO);
    cr_assert_eq(kc_scope_spawn(s, sleep_task, &sl), -ECANCELED);
    kc_scope_destroy(s);
    cr_assert_eq(atomic_load(&done), 0);
}

struct destroyer {
    kc_scope_t *s;
};

static void *destroy_thread(void *arg)
{
    kc_scope_destroy(((struct destroyer *)arg)->s);
    return NULL;
}

Test(scope, destroy_cancels_and_waits)
{
    enum { N = 3 };
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    struct blocker b[N];
    kc_scope_t *s = scope(NULL);
    for (int i = 0; i < N; i++) {
        b[i] = (struct blocker){ .ch = ch, .rc = 1 };
        cr_assert_eq(kc_scope_spawn(s, block_task, &b[i]), 0);
    }
    wait_started(b, N);
    struct destroyer d = { .s = s };
    pthread_t t;
    kt_start(&t, destroy_thread, &d);
    kt_join(t, 10000);
    for (int i = 0; i < N; i++)
        cr_assert_eq(b[i].rc, -ECANCELED, "child %d: %d (destroy returned before it?)", i,
                     b[i].rc);
    kc_chan_destroy(ch);
}

Test(scope, destroying_parent_token_after_scope_creation)
{
    /* The scope's token becomes a root; the scope keeps working. */
    kc_cancel_t *parent = kt_token(NULL);
    kc_scope_t *s = scope(parent);
    kc_cancel_destroy(parent);
    _Atomic int done = 0;
    struct sleeper sl = { .ms = 1, .done = &done };
    cr_assert_eq(kc_scope_spawn(s, sleep_task, &sl), 0);
    cr_assert_eq(wait_bounded(s), 0);
    cr_assert_eq(atomic_load(&done), 1);
    kc_scope_destroy(s);
}

/* ---- issue 6 item 18: concurrent waits, destroy racing a wait ---------- */

/* A child that ignores cancellation: it ends only when the gate closes. */
struct gated {
    kc_chan_t *gate;        /* closed by the test to let children finish */
    _Atomic int finished;   /* children that have ended                  */
    _Atomic int started;    /* children that have begun                  */
};

static int gated_task(void *arg, const kc_cancel_t *cancel)
{
    (void)cancel;
    struct gated *g = arg;
    int v;
    atomic_fetch_add(&g->started, 1);
    kc_chan_recv(g->gate, &v, 20000); /* -EPIPE once the gate closes */
    atomic_fetch_add(&g->finished, 1);
    return 0;
}

/* kc_scope_wait or kc_scope_destroy on its own thread, observable. */
struct scope_call {
    kc_scope_t *s;
    bool destroy;           /* call kc_scope_destroy instead of wait      */
    struct gated *g;
    int rc;                 /* kc_scope_wait's result                     */
    int finished_at_return; /* children finished when the call returned   */
    struct kt_park park;
};

static void *scope_call_thread(void *arg)
{
    struct scope_call *c = arg;
    kt_park_enter(&c->park);
    if (c->destroy)
        kc_scope_destroy(c->s);
    else
        c->rc = kc_scope_wait(c->s);
    c->finished_at_return = atomic_load(&c->g->finished);
    atomic_store(&c->park.done, true);
    return NULL;
}

static void gated_children(kc_scope_t *s, struct gated *g, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(kc_scope_spawn(s, gated_task, g), 0);
    uint64_t dl = kt_now_ms() + 10000;
    while (atomic_load(&g->started) < n) {
        cr_assert_lt(kt_now_ms(), dl, "children never started");
        kt_sleep_ms(1);
    }
}

Test(scope, concurrent_waits_both_wait_for_every_child)
{
    enum { N = 3 };
    struct gated g = { .gate = kt_chan(KC_RENDEZVOUS, sizeof(int), 0) };
    kc_scope_t *s = scope(NULL);
    gated_children(s, &g, N);
    struct scope_call a = { .s = s, .g = &g, .rc = 1 }, b = { .s = s, .g = &g, .rc = 1 };
    pthread_t ta, tb;
    kt_start(&ta, scope_call_thread, &a);
    kt_wait_parked(&a.park);
    kt_start(&tb, scope_call_thread, &b);
    kt_wait_parked(&b.park);
    bool a_early = atomic_load(&a.park.done), b_early = atomic_load(&b.park.done);
    kc_chan_close(g.gate);
    kt_join(ta, 10000);
    kt_join(tb, 10000);
    cr_assert(!a_early && !b_early, "a kc_scope_wait returned while children ran (first %d, "
                                    "second %d)", a_early, b_early);
    cr_assert_eq(a.finished_at_return, N);
    cr_assert_eq(b.finished_at_return, N);
    cr_assert_eq(a.rc, 0);
    cr_assert_eq(b.rc, 0);
    kc_scope_destroy(s);
    kc_chan_destroy(g.gate);
}

Test(scope, destroy_racing_a_wait_waits_for_children_and_the_waiter)
{
    enum { N = 3 };
    struct gated g = { .gate = kt_chan(KC_RENDEZVOUS, sizeof(int), 0) };
    kc_scope_t *s = scope(NULL);
    gated_children(s, &g, N);
    struct scope_call w = { .s = s, .g = &g, .rc = 1 };
    struct scope_call d = { .s = s, .g = &g, .destroy = true };
    pthread_t tw, td;
    kt_start(&tw, scope_call_thread, &w);
    kt_wait_parked(&w.park); /* w is joining the children */
    kt_start(&td, scope_call_thread, &d);
    kt_wait_parked(&d.park);
    bool d_early = atomic_load(&d.park.done);
    kc_chan_close(g.gate);
    kt_join(td, 10000);
    kt_join(tw, 10000);
    cr_assert(!d_early, "kc_scope_destroy freed the scope while its children ran");
    cr_assert_eq(d.finished_at_return, N);
    cr_assert_eq(w.finished_at_return, N);
    cr_assert_eq(w.rc, 0);
    kc_chan_destroy(g.gate);
}
