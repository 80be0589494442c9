/* test_cancel_recv: cancellable send/recv return -ECANCELED when their token is triggered. */
#include "kt.h"

/* Blocks op on ch with an infinite timeout, triggers tok from this thread once
 * the worker is parked, and checks the worker returned -ECANCELED promptly. */
static void cancel_blocked(kc_chan_t *ch, int op)
{
    kc_cancel_t *tok = kt_token(NULL);
    pthread_t t;
    struct kt_op o;
    kt_op_start(&t, &o, ch, op, 17, -1, tok);
    kt_wait_parked(&o.park);
    cr_assert_not(atomic_load(&o.park.done), "op returned %d before the cancel", o.rc);
    uint64_t t0 = kt_now_ms();
    kc_cancel_trigger(tok);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(o.rc, -ECANCELED, "got %d", o.rc);
    cr_assert_lt(kt_now_ms() - t0, KT_PROMPT_MS);
    cr_assert(kc_cancel_is_set(tok));
    kc_cancel_destroy(tok);
}

Test(cancel_recv, recv_c_infinite_is_cancelled_from_another_thread)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 4);
    kc_cancel_t *tok = kt_token(NULL);
    struct kt_trigger trig = { .tok = tok, .delay_ms = 50 };
    pthread_t t;
    uint64_t t0 = kt_now_ms(); /* before the trigger thread: el >= 45 holds under any load */
    kt_start(&t, kt_trigger_thread, &trig);
    int v = 3;
    int rc = kc_chan_recv_c(ch, &v, -1, tok);
    uint64_t el = kt_now_ms() - t0;
    cr_assert_eq(rc, -ECANCELED);
    cr_assert_geq(el, 45, "returned after %llu ms, before the trigger", (unsigned long long)el);
    cr_assert_lt(el, 5000u);
    cr_assert_eq(v, 3, "a cancelled recv must not write its output");
    kt_join(t, KT_PROMPT_MS);
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
}

Test(cancel_recv, recv_c_blocked_every_kind)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED, KC_UNLIMITED, KC_CONFLATED };
    for (size_t k = 0; k < 4; k++) {
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 2);
        cancel_blocked(ch, KT_RECV);
        kc_chan_destroy(ch);
    }
}

Test(cancel_recv, send_c_blocked_full_buffered_and_rendezvous)
{
    kc_chan_t *b = kt_chan(KC_BUFFERED, sizeof(int), 2);
    int v = 1;
    cr_assert_eq(kc_chan_send(b, &v, 0), 0);
    v = 2;
    cr_assert_eq(kc_chan_send(b, &v, 0), 0);
    cancel_blocked(b, KT_SEND);
    cr_assert_eq(kc_chan_len(b), 2, "the cancelled element must not be queued");
    cr_assert_eq(kc_chan_recv(b, &v, 0), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(kc_chan_recv(b, &v, 0), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(kc_chan_recv(b, &v, 0), -EAGAIN);
    kc_chan_destroy(b);

    kc_chan_t *r = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    cancel_blocked(r, KT_SEND);
    cr_assert_eq(kc_chan_recv(r, &v, 0), -EAGAIN, "a cancelled rendezvous send is gone");
    kc_chan_destroy(r);
}

Test(cancel_recv, already_set_token_cancels_at_once)
{
    kc_cancel_t *tok = kt_token(NULL);
    kc_cancel_trigger(tok);
    kc_chan_t *empty = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int v = 0;
    cr_assert_eq(kc_chan_send(full, &v, 0), 0);
    uint64_t t0 = kt_now_ms();
    cr_assert_eq(kc_chan_recv_c(empty, &v, -1, tok), -ECANCELED);
    cr_assert_eq(kc_chan_recv_c(empty, &v, 10000, tok), -ECANCELED);
    cr_assert_eq(kc_chan_send_c(full, &v, -1, tok), -ECANCELED);
    cr_assert_eq(kc_chan_send_c(full, &v, 10000, tok), -ECANCELED);
    cr_assert_eq(kc_chan_send_c(rv, &v, -1, tok), -ECANCELED);
    cr_assert_eq(kc_chan_recv_c(rv, &v, -1, tok), -ECANCELED);
    cr_assert_lt(kt_now_ms() - t0, 1000u);
    cr_assert_eq(kc_chan_len(full), 1);
    kc_chan_destroy(empty);
    kc_chan_destroy(full);
    kc_chan_destroy(rv);
    kc_cancel_destroy(tok);
}

Test(cancel_recv, cancel_beats_long_timeout)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_cancel_t *tok = kt_token(NULL);
    pthread_t t;
    struct kt_op o;
    kt_op_start(&t, &o, ch, KT_RECV, 0, 60000, tok);
    kt_wait_parked(&o.park);
    kc_cancel_trigger(tok);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(o.rc, -ECANCELED);
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
}

Test(cancel_recv, desc_recv_c_is_cancelled)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make_desc(&ch, KC_BUFFERED, 2), 0);
    kc_cancel_t *tok = kt_token(NULL);
    struct kt_trigger trig = { .tok = tok, .delay_ms = 50 };
    pthread_t t;
    kt_start(&t, kt_trigger_thread, &trig);
    kc_zdesc d;
    cr_assert_eq(kc_chan_recv_desc_c(ch, &d, -1, tok), -ECANCELED);
    kt_join(t, KT_PROMPT_MS);
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
}

Test(cancel_recv, one_trigger_wakes_every_waiter)
{
    enum { N = 6 };
    kc_cancel_t *tok = kt_token(NULL);
    kc_chan_t *chans[N];
    pthread_t t[N];
    struct kt_op o[N];
    for (int i = 0; i < N; i++) {
        /* both kinds, both directions; full buffered channels for the senders */
        int kind = i % 2 ? KC_RENDEZVOUS : KC_BUFFERED;
        int op = i % 3 == 0 ? KT_SEND : KT_RECV;
        chans[i] = kt_chan(kind, sizeof(int), 1);
        if (kind == KC_BUFFERED && op == KT_SEND)
            cr_assert_eq(kc_chan_send(chans[i], &i, 0), 0);
        kt_op_start(&t[i], &o[i], chans[i], op, i, -1, tok);
    }
    for (int i = 0; i < N; i++)
        kt_wait_parked(&o[i].park);
    kc_cancel_trigger(tok);
    for (int i = 0; i < N; i++) {
        kt_join(t[i], KT_PROMPT_MS);
        cr_assert_eq(o[i].rc, -ECANCELED, "op %d: %d", i, o[i].rc);
    }
    for (int i = 0; i < N; i++)
        kc_chan_destroy(chans[i]);
    kc_cancel_destroy(tok);
}

Test(cancel_recv, cancelled_waiter_does_not_steal_later_data)
{
    /* After a cancelled receiver leaves, data goes to the next receiver. */
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    cancel_blocked(ch, KT_RECV);
    kt_expect_handoff(ch, 10000, 64, 10000);
    kc_chan_destroy(ch);
}

Test(cancel_recv, null_token_behaves_like_plain_call)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    int v = 5, w = 0;
    cr_assert_not(kc_cancel_is_set(NULL));
    cr_assert_eq(kc_chan_recv_c(ch, &w, 0, NULL), -EAGAIN);
    cr_assert_eq(kc_chan_send_c(ch, &v, 0, NULL), 0);
    cr_assert_eq(kc_chan_send_c(ch, &v, 20, NULL), -ETIME);
    cr_assert_eq(kc_chan_recv_c(ch, &w, -1, NULL), 0);
    cr_assert_eq(w, 5);
    kc_chan_destroy(ch);
}
