/* test_actor_cancel: actors stop on cancel, on close+drain, or when process says so. */
#include "kt.h"

#define MAX_SEEN 1024

struct actor_rec {
    pthread_mutex_t mu;
    int seen[MAX_SEEN];  /* messages processed, in order          */
    int nseen;
    int stop_at;         /* process returns stop_rc at this value */
    int stop_rc;
    int exits;           /* on_exit calls                          */
    int exit_reason;
};

static void rec_init(struct actor_rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->stop_at = -1;
}

static int rec_process(void *user, void *msg)
{
    struct actor_rec *r = user;
    int v;
    memcpy(&v, msg, sizeof v);
    pthread_mutex_lock(&r->mu);
    if (r->nseen < MAX_SEEN)
        r->seen[r->nseen] = v;
    r->nseen++;
    pthread_mutex_unlock(&r->mu);
    return v == r->stop_at ? r->stop_rc : 0;
}

static void rec_exit(void *user, int reason)
{
    struct actor_rec *r = user;
    pthread_mutex_lock(&r->mu);
    r->exits++;
    r->exit_reason = reason;
    pthread_mutex_unlock(&r->mu);
}

static int rec_nseen(struct actor_rec *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->nseen;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* kc_actor_join on a helper thread, so a stuck actor fails instead of hanging. */
struct joiner {
    kc_actor_t *a;
    int rc;
};

static void *join_thread(void *arg)
{
    struct joiner *j = arg;
    j->rc = kc_actor_join(j->a);
    return NULL;
}

static int join_bounded(kc_actor_t *a)
{
    struct joiner j = { .a = a, .rc = 1 };
    pthread_t t;
    kt_start(&t, join_thread, &j);
    kt_join(t, KT_PROMPT_MS);
    return j.rc;
}

static kc_actor_t *start(kc_chan_t *inbox, struct actor_rec *r, long timeout, kc_cancel_t *tok)
{
    kc_actor_ctx_ex ctx = {
        .inbox = inbox,
        .process = rec_process,
        .user = r,
        .timeout_ms = timeout,
        .cancel = tok,
        .on_exit = rec_exit,
    };
    kc_actor_t *a = NULL;
    int rc = kc_actor_start_ex(&a, &ctx);
    cr_assert_eq(rc, 0, "kc_actor_start_ex: %d", rc);
    cr_assert_not_null(a);
    return a;
}

Test(actor_cancel, cancel_blocked_rendezvous_actor_exits_promptly)
{
    kc_chan_t *inbox = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = start(inbox, &r, -1, NULL);
    kt_sleep_ms(50); /* let it block in its receive */
    uint64_t t0 = kt_now_ms();
    kc_actor_cancel(a);
    int reason = join_bounded(a);
    cr_assert_eq(reason, -ECANCELED, "exit reason %d", reason);
    cr_assert_lt(kt_now_ms() - t0, KT_PROMPT_MS);
    cr_assert_eq(r.exits, 1);
    cr_assert_eq(r.exit_reason, -ECANCELED);
    cr_assert_eq(r.nseen, 0);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, processes_in_order_then_epipe_after_close_and_drain)
{
    enum { N = 200 };
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 8);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = start(inbox, &r, -1, NULL);
    for (int i = 0; i < N; i++)
        cr_assert_eq(kc_chan_send(inbox, &i, 10000), 0);
    kc_chan_close(inbox);
    int reason = join_bounded(a);
    cr_assert_eq(reason, -EPIPE, "exit reason %d", reason);
    cr_assert_eq(r.nseen, N, "processed %d of %d", r.nseen, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(r.seen[i], i, "message %d was %d", i, r.seen[i]);
    cr_assert_eq(r.exits, 1);
    cr_assert_eq(r.exit_reason, -EPIPE);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, drains_what_was_buffered_before_close)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 16);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(kc_chan_send(inbox, &i, 0), 0);
    kc_chan_close(inbox);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = start(inbox, &r, -1, NULL);
    cr_assert_eq(join_bounded(a), -EPIPE);
    cr_assert_eq(r.nseen, 10);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(r.seen[i], i);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, nonzero_process_result_stops_the_actor)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 16);
    for (int i = 1; i <= 10; i++)
        cr_assert_eq(kc_chan_send(inbox, &i, 0), 0);
    struct actor_rec r;
    rec_init(&r);
    r.stop_at = 5;
    r.stop_rc = 42;
    kc_actor_t *a = start(inbox, &r, -1, NULL);
    int reason = join_bounded(a);
    cr_assert_eq(reason, 42, "exit reason %d", reason);
    cr_assert_eq(r.nseen, 5, "processed %d messages, want 1..5", r.nseen);
    cr_assert_eq(r.exits, 1);
    cr_assert_eq(r.exit_reason, 42);
    cr_assert_eq(kc_chan_len(inbox), 5, "6..10 stay in the inbox");
    int v;
    cr_assert_eq(kc_chan_recv(inbox, &v, 0), 0);
    cr_assert_eq(v, 6);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, negative_process_result_is_the_reason)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 4);
    int v = 3;
    cr_assert_eq(kc_chan_send(inbox, &v, 0), 0);
    struct actor_rec r;
    rec_init(&r);
    r.stop_at = 3;
    r.stop_rc = -EIO;
    kc_actor_t *a = start(inbox, &r, -1, NULL);
    cr_assert_eq(join_bounded(a), -EIO);
    cr_assert_eq(r.exits, 1);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, external_token_stops_actor_and_own_cancel_spares_it)
{
    kc_chan_t *in1 = kt_chan(KC_BUFFERED, sizeof(int), 4);
    kc_chan_t *in2 = kt_chan(KC_BUFFERED, sizeof(int), 4);
    kc_cancel_t *tok = kt_token(NULL);
    struct actor_rec r1, r2;
    rec_init(&r1);
    rec_init(&r2);
    kc_actor_t *a1 = start(in1, &r1, -1, tok);
    kc_actor_t *a2 = start(in2, &r2, -1, tok);
    /* cancelling one actor uses its own child token: the shared one stays clear */
    kc_actor_cancel(a1);
    cr_assert_eq(join_bounded(a1), -ECANCELED);
    cr_assert_not(kc_cancel_is_set(tok), "kc_actor_cancel triggered the external token");
    int v = 11;
    cr_assert_eq(kc_chan_send(in2, &v, 0), 0);
    for (int i = 0; i < 500 && rec_nseen(&r2) < 1; i++)
        kt_sleep_ms(10);
    cr_assert_eq(rec_nseen(&r2), 1, "the sibling actor stopped working");
    kc_cancel_trigger(tok);
    cr_assert_eq(join_bounded(a2), -ECANCELED);
    cr_assert_eq(r2.exits, 1);
    cr_assert_eq(r2.exit_reason, -ECANCELED);
    kc_cancel_destroy(tok);
    kc_chan_destroy(in1);
    kc_chan_destroy(in2);
}

Test(actor_cancel, already_triggered_token_stops_at_once)
{
    kc_chan_t *inbox = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_cancel_t *tok = kt_token(NULL);
    kc_cancel_trigger(tok);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = start(inbox, &r, -1, tok);
    cr_assert_eq(join_bounded(a), -ECANCELED);
    cr_assert_eq(r.exits, 1);
    kc_cancel_destroy(tok);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, receive_timeout_just_loops)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 4);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = start(inbox, &r, 10, NULL);
    kt_sleep_ms(100); /* ~10 receive timeouts */
    pthread_mutex_lock(&r.mu);
    int exits = r.exits;
    pthread_mutex_unlock(&r.mu);
    cr_assert_eq(exits, 0, "the actor stopped on a receive timeout");
    int v = 9;
    cr_assert_eq(kc_chan_send(inbox, &v, 0), 0);
    for (int i = 0; i < 500 && rec_nseen(&r) < 1; i++)
        kt_sleep_ms(10);
    cr_assert_eq(rec_nseen(&r), 1);
    kc_actor_cancel(a);
    cr_assert_eq(join_bounded(a), -ECANCELED);
    cr_assert_eq(r.exits, 1);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, cancel_after_natural_exit_is_harmless)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 4);
    kc_chan_close(inbox);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = start(inbox, &r, -1, NULL);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&r.mu);
        int e = r.exits;
        pthread_mutex_unlock(&r.mu);
        if (e)
            break;
        kt_sleep_ms(10);
    }
    kc_actor_cancel(a);
    cr_assert_eq(join_bounded(a), -EPIPE, "the first reason stands");
    cr_assert_eq(r.exits, 1);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, on_exit_is_optional)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 4);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_ctx_ex ctx = { .inbox = inbox, .process = rec_process, .user = &r, .timeout_ms = -1 };
    kc_actor_t *a = NULL;
    cr_assert_eq(kc_actor_start_ex(&a, &ctx), 0);
    kc_actor_cancel(a);
    cr_assert_eq(join_bounded(a), -ECANCELED);
    kc_chan_destroy(inbox);
}

Test(actor_cancel, bad_context_is_einval)
{
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 4);
    struct actor_rec r;
    rec_init(&r);
    kc_actor_t *a = NULL;
    kc_actor_ctx_ex no_inbox = { .process = rec_process, .user = &r, .on_exit = rec_exit };
    kc_actor_ctx_ex no_fn = { .inbox = inbox, .user = &r, .on_exit = rec_exit };
    cr_assert_eq(kc_actor_start_ex(&a, NULL), -EINVAL);
    cr_assert_eq(kc_actor_start_ex(&a, &no_inbox), -EINVAL);
    cr_assert_eq(kc_actor_start_ex(&a, &no_fn), -EINVAL);
    cr_assert_eq(r.exits, 0, "a failed start calls no callback");
    kc_chan_destroy(inbox);
}

/* ---- actors as coroutines ------------------------------------------------ */

/* Records whether process ran on a coroutine. */
struct coro_rec {
    _Atomic int msgs;       /* messages processed           */
    _Atomic int off_coro;   /* of those, not on a coroutine */
    _Atomic long sum;       /* their sum                    */
};

static int coro_process(void *user, void *msg)
{
    struct coro_rec *r = user;
    int v;
    memcpy(&v, msg, sizeof v);
    if (!kc_self())
        atomic_fetch_add(&r->off_coro, 1);
    atomic_fetch_add(&r->sum, v);
    atomic_fetch_add(&r->msgs, 1);
    return 0;
}

struct from_coro {
    struct coro_rec rec; /* what the actor saw                    */
    int is_coro;         /* kc_actor_is_coro of the started actor */
    int start_rc;        /* kc_actor_start_ex                     */
    int send_bad;        /* failed sends                          */
    int reason;          /* kc_actor_join                         */
};

static void start_from_coro(void *arg)
{
    struct from_coro *f = arg;
    kc_chan_t *inbox;
    if (kc_chan_make(&inbox, KC_RENDEZVOUS, sizeof(int), 0) < 0) {
        f->start_rc = -ENOMEM;
        return;
    }
    kc_actor_ctx_ex ctx = {.inbox = inbox, .process = coro_process, .user = &f->rec,
                           .timeout_ms = -1};
    kc_actor_t *a = NULL;
    f->start_rc = kc_actor_start_ex(&a, &ctx);
    if (f->start_rc == 0) {
        f->is_coro = kc_actor_is_coro(a);
        /* Rendezvous: every send waits for the actor, parked, not spinning. */
        for (int i = 1; i <= 1000; i++)
            if (kc_chan_send(inbox, &i, -1) != 0)
                f->send_bad++;
        kc_chan_close(inbox);
        f->reason = kc_actor_join(a);
    }
    kc_chan_destroy(inbox);
}

Test(actor_cancel, actor_started_from_a_coroutine_is_a_coroutine)
{
    /* One worker: the actor and its sender can only take turns if a blocked
     * receive or send parks the coroutine instead of the thread. */
    kc_sched_opts_t one = {.threads = 1};
    kc_sched_stop();
    cr_assert_eq(kc_sched_start(&one), 0);
    struct from_coro f = {0};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, start_from_coro, &f, NULL), 0);
    cr_assert_eq(kc_coro_join_ms(c, 60000), 0, "actor and sender on one worker deadlocked");
    cr_assert_eq(f.start_rc, 0);
    cr_assert(f.is_coro, "started from a coroutine, the actor must be one");
    cr_assert_eq(f.send_bad, 0);
    cr_assert_eq(f.reason, -EPIPE, "reason %d", f.reason);
    cr_assert_eq(atomic_load(&f.rec.msgs), 1000);
    cr_assert_eq(atomic_load(&f.rec.sum), 1000L * 1001 / 2);
    cr_assert_eq(atomic_load(&f.rec.off_coro), 0, "process ran off a coroutine");
    cr_assert_eq(kc_sched_stop(), 0);
}

Test(actor_cancel, thread_api_still_starts_threads)
{
    if (kc_self())
        return; /* (the test body runs on a thread in every build) */
    kc_chan_t *inbox = kt_chan(KC_BUFFERED, sizeof(int), 4);
    struct coro_rec r = {0};
    kc_actor_ctx_ex ctx = {.inbox = inbox, .process = coro_process, .user = &r, .timeout_ms = -1};
    kc_actor_t *a = NULL;
    cr_assert_eq(kc_actor_start_ex(&a, &ctx), 0);
    cr_assert(!kc_actor_is_coro(a), "from a plain thread an actor stays a thread");
    int v = 7;
    cr_assert_eq(kc_chan_send(inbox, &v, -1), 0);
    kc_chan_close(inbox);
    cr_assert_eq(join_bounded(a), -EPIPE);
    cr_assert_eq(atomic_load(&r.msgs), 1);
    cr_assert_eq(atomic_load(&r.off_coro), 1, "a thread actor runs off coroutines");
    kc_chan_destroy(inbox);
}

Test(actor_cancel, thousands_of_coroutine_actors_cancel_and_drain, .timeout = 120)
{
    enum { N = 2000 / KT_SCALE, PER = 8 };
    kc_sched_opts_t two = {.threads = 2};
    kc_sched_stop();
    cr_assert_eq(kc_sched_start(&two), 0);
    kc_chan_t **in = calloc(N, sizeof *in);
    kc_actor_t **as = calloc(N, sizeof *as);
    struct coro_rec *r = calloc(N, sizeof *r);
    cr_assert(in && as && r);
    for (int i = 0; i < N; i++) {
        in[i] = kt_chan(KC_BUFFERED, sizeof(int), PER);
        kc_actor_ctx_ex ctx = {.inbox = in[i], .process = coro_process, .user = &r[i],
                               .timeout_ms = -1};
        cr_assert_eq(kc_actor_go(&as[i], &ctx), 0);
        cr_assert(kc_actor_is_coro(as[i]));
    }
    /* Even actors get PER messages then a close (drain, -EPIPE); odd ones
     * are cancelled while blocked in their receive (-ECANCELED). */
    for (int i = 0; i < N; i += 2) {
        for (int k = 1; k <= PER; k++)
            cr_assert_eq(kc_chan_send(in[i], &k, -1), 0);
        kc_chan_close(in[i]);
    }
    for (int i = 1; i < N; i += 2)
        kc_actor_cancel(as[i]);
    for (int i = 0; i < N; i++) {
        int reason = join_bounded(as[i]);
        cr_assert_eq(reason, i % 2 ? -ECANCELED : -EPIPE, "actor %d: reason %d", i, reason);
        cr_assert_eq(atomic_load(&r[i].msgs), i % 2 ? 0 : PER);
        cr_assert_eq(atomic_load(&r[i].off_coro), 0);
        kc_chan_destroy(in[i]);
    }
    free(in);
    free(as);
    free(r);
    cr_assert_eq(kc_sched_stop(), 0);
}

Test(actor_cancel, go_rejects_a_bad_context)
{
    kc_actor_t *a = NULL;
    kc_actor_ctx_ex none = {0};
    cr_assert_eq(kc_actor_go(&a, NULL), -EINVAL);
    cr_assert_eq(kc_actor_go(&a, &none), -EINVAL);
    cr_assert_null(a);
    cr_assert_not(kc_actor_is_coro(NULL));
    kc_sched_stop();
}
