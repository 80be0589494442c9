/* test_timeout: timeouts fire within (generous) bounds; 0 never blocks; < 0 waits for data. */
#include <limits.h>

#include "kt.h"

/* A timed-out call took at least ~its timeout and clearly not forever. */
#define ASSERT_FIRED(elapsed, timeout)                                                       \
    do {                                                                                     \
        cr_assert_geq((elapsed), (uint64_t)(timeout) - 5, "returned after %llu ms < %ld ms", \
                      (unsigned long long)(elapsed), (long)(timeout));                       \
        cr_assert_lt((elapsed), 5000u, "took %llu ms", (unsigned long long)(elapsed));        \
    } while (0)

static kc_chan_t *full_chan(int kind)
{
    kc_chan_t *ch = kt_chan(kind, sizeof(int), 2);
    if (kind == KC_BUFFERED) {
        int v = 0;
        cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
        cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    }
    return ch;
}

Test(timeout, send_timeout_fires_buffered_and_rendezvous)
{
    int kinds[] = { KC_BUFFERED, KC_RENDEZVOUS };
    for (size_t k = 0; k < 2; k++) {
        kc_chan_t *ch = full_chan(kinds[k]);
        size_t len0 = kc_chan_len(ch);
        int v = 9;
        uint64_t t0 = kt_now_ms();
        int rc = kc_chan_send(ch, &v, 50);
        uint64_t el = kt_now_ms() - t0;
        cr_assert_eq(rc, -ETIME, "kind %d: %d", kinds[k], rc);
        ASSERT_FIRED(el, 50);
        cr_assert_eq(kc_chan_len(ch), len0, "a timed-out send must not queue");
        kc_chan_destroy(ch);
    }
}

Test(timeout, recv_timeout_fires_every_kind)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED, KC_UNLIMITED, KC_CONFLATED };
    for (size_t k = 0; k < 4; k++) {
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 2);
        int v = 123;
        uint64_t t0 = kt_now_ms();
        int rc = kc_chan_recv(ch, &v, 50);
        uint64_t el = kt_now_ms() - t0;
        cr_assert_eq(rc, -ETIME, "kind %d: %d", kinds[k], rc);
        ASSERT_FIRED(el, 50);
        cr_assert_eq(v, 123, "a timed-out recv must not write its output");
        kc_chan_destroy(ch);
    }
}

Test(timeout, cancellable_forms_time_out_too)
{
    kc_cancel_t *tok = kt_token(NULL);
    kc_chan_t *ch = full_chan(KC_BUFFERED);
    kc_chan_t *em = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int v = 1;
    uint64_t t0 = kt_now_ms();
    cr_assert_eq(kc_chan_send_c(ch, &v, 50, tok), -ETIME);
    ASSERT_FIRED(kt_now_ms() - t0, 50);
    t0 = kt_now_ms();
    cr_assert_eq(kc_chan_recv_c(em, &v, 50, tok), -ETIME);
    ASSERT_FIRED(kt_now_ms() - t0, 50);
    cr_assert_not(kc_cancel_is_set(tok));
    kc_chan_destroy(ch);
    kc_chan_destroy(em);
    kc_cancel_destroy(tok);
}

Test(timeout, desc_ops_time_out)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make_desc(&ch, KC_RENDEZVOUS, 0), 0);
    kc_zdesc d = { .addr = &d, .len = 4 };
    uint64_t t0 = kt_now_ms();
    cr_assert_eq(kc_chan_send_desc(ch, &d, 50), -ETIME);
    ASSERT_FIRED(kt_now_ms() - t0, 50);
    t0 = kt_now_ms();
    cr_assert_eq(kc_chan_recv_desc(ch, &d, 50), -ETIME);
    ASSERT_FIRED(kt_now_ms() - t0, 50);
    kc_chan_destroy(ch);
}

Test(timeout, longer_timeout_is_not_cut_short)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    int v;
    uint64_t t0 = kt_now_ms();
    cr_assert_eq(kc_chan_recv(ch, &v, 300), -ETIME);
    ASSERT_FIRED(kt_now_ms() - t0, 300);
    /* sub-second remainder plus whole seconds */
    t0 = kt_now_ms();
    cr_assert_eq(kc_chan_recv(ch, &v, 1010), -ETIME);
    ASSERT_FIRED(kt_now_ms() - t0, 1010);
    kc_chan_destroy(ch);
}

Test(timeout, timeout_zero_never_blocks)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED, KC_UNLIMITED, KC_CONFLATED };
    kc_cancel_t *tok = kt_token(NULL);
    uint64_t t0 = kt_now_ms();
    for (int round = 0; round < 200; round++) {
        for (size_t k = 0; k < 4; k++) {
            kc_chan_t *ch = full_chan(kinds[k]);
            int v = 0;
            cr_assert_eq(kc_chan_recv(ch, &v, 0),
                         kinds[k] == KC_BUFFERED ? 0 : -EAGAIN);
            if (kinds[k] == KC_BUFFERED) {
                cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
                cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
                cr_assert_eq(kc_chan_recv_c(ch, &v, 0, tok), -EAGAIN);
                v = 1;
                cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
                cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
                cr_assert_eq(kc_chan_send(ch, &v, 0), -EAGAIN);
                cr_assert_eq(kc_chan_send_c(ch, &v, 0, tok), -EAGAIN);
            }
            if (kinds[k] == KC_RENDEZVOUS) {
                cr_assert_eq(kc_chan_send(ch, &v, 0), -EAGAIN);
                cr_assert_eq(kc_chan_send_c(ch, &v, 0, tok), -EAGAIN);
                cr_assert_eq(kc_chan_recv_c(ch, &v, 0, tok), -EAGAIN);
            }
            kc_chan_destroy(ch);
        }
    }
    /* 200 rounds of try-once calls; any real wait would blow this bound */
    cr_assert_lt(kt_now_ms() - t0, 4000u);
    kc_cancel_destroy(tok);
}

/* Sends (or receives) after a delay from another thread. */
static void delayed_peer(pthread_t *t, struct kt_op *o, kc_chan_t *ch, int op, int value)
{
    memset(o, 0, sizeof *o);
    o->ch = ch;
    o->op = op;
    o->value = value;
    o->timeout_ms = 10000;
    o->delay_ms = 50;
    o->rc = 1;
    kt_start(t, kt_op_thread, o);
}

static void negative_recv_waits(int kind, long timeout)
{
    kc_chan_t *ch = kt_chan(kind, sizeof(int), 2);
    pthread_t t;
    struct kt_op peer;
    /* t0 before the peer exists: its 50 ms delay starts after t0 however
     * late this thread gets the CPU back, so el >= 45 cannot flake. */
    uint64_t t0 = kt_now_ms();
    delayed_peer(&t, &peer, ch, KT_SEND, 555);
    int v = 0;
    int rc = kc_chan_recv(ch, &v, timeout);
    uint64_t el = kt_now_ms() - t0;
    cr_assert_eq(rc, 0, "kind %d timeout %ld: %d", kind, timeout, rc);
    cr_assert_eq(v, 555);
    cr_assert_geq(el, 45, "kind %d returned after %llu ms, before the data was sent", kind,
                  (unsigned long long)el);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(peer.rc, 0);
    kc_chan_destroy(ch);
}

Test(timeout, negative_recv_waits_for_data_every_kind)
{
    negative_recv_waits(KC_RENDEZVOUS, -1);
    negative_recv_waits(KC_BUFFERED, -1);
    negative_recv_waits(KC_UNLIMITED, -1);
    negative_recv_waits(KC_CONFLATED, -1);
}

Test(timeout, any_negative_timeout_is_forever)
{
    negative_recv_waits(KC_BUFFERED, -1000);
    negative_recv_waits(KC_BUFFERED, LONG_MIN);
}

Test(timeout, huge_timeout_does_not_overflow)
{
    negative_recv_waits(KC_BUFFERED, LONG_MAX);
    negative_recv_waits(KC_RENDEZVOUS, LONG_MAX / 1000);
}

static void negative_send_waits(int kind)
{
    kc_chan_t *ch = full_chan(kind);
    pthread_t t;
    struct kt_op peer;
    uint64_t t0 = kt_now_ms(); /* before the peer: see negative_recv_waits */
    delayed_peer(&t, &peer, ch, KT_RECV, 0);
    int v = 808;
    int rc = kc_chan_send(ch, &v, -1);
    uint64_t el = kt_now_ms() - t0;
    cr_assert_eq(rc, 0, "kind %d: %d", kind, rc);
    cr_assert_geq(el, 45, "kind %d: send returned after %llu ms, before room was made", kind,
                  (unsigned long long)el);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(peer.rc, 0);
    if (kind == KC_RENDEZVOUS)
        cr_assert_eq(peer.value, 808);
    else
        cr_assert_eq(kc_chan_len(ch), 2);
    kc_chan_destroy(ch);
}

Test(timeout, negative_send_waits_for_room)
{
    negative_send_waits(KC_BUFFERED);
    negative_send_waits(KC_RENDEZVOUS);
}

Test(timeout, positive_timeout_succeeds_when_data_arrives_first)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    pthread_t t;
    struct kt_op peer;
    delayed_peer(&t, &peer, ch, KT_SEND, 3);
    int v = 0;
    cr_assert_eq(kc_chan_recv(ch, &v, 10000), 0);
    cr_assert_eq(v, 3);
    kt_join(t, KT_PROMPT_MS);
    kc_chan_destroy(ch);
}

Test(timeout, unlimited_and_conflated_send_never_time_out)
{
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof(int), 1);
    kc_chan_t *c = kt_chan(KC_CONFLATED, sizeof(int), 0);
    uint64_t t0 = kt_now_ms();
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(kc_chan_send(u, &i, 50), 0);
        cr_assert_eq(kc_chan_send(c, &i, 50), 0);
    }
    cr_assert_lt(kt_now_ms() - t0, 4000u);
    kc_chan_destroy(u);
    kc_chan_destroy(c);
}
