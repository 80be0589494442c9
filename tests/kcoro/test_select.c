/* test_select: biased/unbiased choice, timeouts, cancel, closed channels, and
 * exactly-once completion under concurrency. */
#include "kt.h"

#define UNSET 0x5eed /* a clause result or buffer value no call should produce */

static kc_select_clause_t RX(kc_chan_t *ch, int *buf)
{
    return (kc_select_clause_t){ .ch = ch, .op = KC_SELECT_RECV, .buf = buf, .result = UNSET };
}

static kc_select_clause_t TX(kc_chan_t *ch, int *buf)
{
    return (kc_select_clause_t){ .ch = ch, .op = KC_SELECT_SEND, .buf = buf, .result = UNSET };
}

static void put(kc_chan_t *ch, int v)
{
    cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
}

/* A select on its own thread. */
struct sel {
    kc_select_clause_t cl[4];
    size_t n;
    int mode;
    long timeout_ms;
    const kc_cancel_t *cancel;
    int rc;
    struct kt_park park;
};

static void *sel_thread(void *arg)
{
    struct sel *s = arg;
    kt_park_enter(&s->park);
    s->rc = kc_select(s->cl, s->n, s->mode, s->timeout_ms, s->cancel);
    atomic_store(&s->park.done, true);
    return NULL;
}

/* ---- choice ------------------------------------------------------------- */

Test(select, biased_picks_first_ready_clause)
{
    kc_chan_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = kt_chan(KC_BUFFERED, sizeof(int), 1);
    put(c[1], 10);
    put(c[2], 20);
    for (int round = 0; round < 100; round++) {
        int b[3] = { -1, -1, -1 };
        kc_select_clause_t cl[3] = { RX(c[0], &b[0]), RX(c[1], &b[1]), RX(c[2], &b[2]) };
        int rc = kc_select(cl, 3, KC_SELECT_BIASED, round % 2 ? 0 : -1, NULL);
        cr_assert_eq(rc, 1, "round %d: picked %d", round, rc);
        cr_assert_eq(cl[1].result, 0);
        cr_assert_eq(b[1], 10);
        cr_assert_eq(b[0], -1);
        cr_assert_eq(b[2], -1, "a losing clause wrote its buffer");
        cr_assert_eq(kc_chan_len(c[2]), 1, "a losing clause consumed its element");
        put(c[1], 10);
    }
    for (int i = 0; i < 3; i++)
        kc_chan_destroy(c[i]);
}

Test(select, unbiased_spreads_among_ready_clauses)
{
    enum { ROUNDS = 10000 };
    kc_chan_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = kt_chan(KC_BUFFERED, sizeof(int), 1);
    put(c[0], 0);
    put(c[1], 1);
    int count[3] = { 0 };
    for (int round = 0; round < ROUNDS; round++) {
        int b[3] = { -1, -1, -1 };
        /* the never-ready clause sits first: order must not matter */
        kc_select_clause_t cl[3] = { RX(c[2], &b[2]), RX(c[0], &b[0]), RX(c[1], &b[1]) };
        int rc = kc_select(cl, 3, KC_SELECT_UNBIASED, 0, NULL);
        cr_assert(rc == 1 || rc == 2, "round %d: %d", round, rc);
        int which = rc == 1 ? 0 : 1;
        cr_assert_eq(b[which], which);
        cr_assert_eq(b[1 - which], -1);
        count[which]++;
        put(c[which], which);
    }
    cr_assert_gt(count[0], ROUNDS / 5, "clause 0 chosen %d of %d", count[0], ROUNDS);
    cr_assert_gt(count[1], ROUNDS / 5, "clause 1 chosen %d of %d", count[1], ROUNDS);
    for (int i = 0; i < 3; i++)
        kc_chan_destroy(c[i]);
}

Test(select, unbiased_send_clauses_spread_too)
{
    enum { ROUNDS = 4000 };
    kc_chan_t *a = kt_chan(KC_UNLIMITED, sizeof(int), 0);
    kc_chan_t *b = kt_chan(KC_UNLIMITED, sizeof(int), 0);
    int va = 1, vb = 2;
    for (int i = 0; i < ROUNDS; i++) {
        kc_select_clause_t cl[2] = { TX(a, &va), TX(b, &vb) };
        int rc = kc_select(cl, 2, KC_SELECT_UNBIASED, 0, NULL);
        cr_assert(rc == 0 || rc == 1);
    }
    cr_assert_eq(kc_chan_len(a) + kc_chan_len(b), ROUNDS, "each select sent exactly once");
    cr_assert_gt(kc_chan_len(a), ROUNDS / 5);
    cr_assert_gt(kc_chan_len(b), ROUNDS / 5);
    kc_chan_destroy(a);
    kc_chan_destroy(b);
}

Test(select, mixed_send_and_recv_clauses)
{
    kc_chan_t *a = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *b = kt_chan(KC_BUFFERED, sizeof(int), 1);
    put(a, 1); /* a full: its send clause is not ready */
    put(b, 2); /* b has data: its receive clause is ready */
    int out = 5, in = -1;
    kc_select_clause_t cl[2] = { TX(a, &out), RX(b, &in) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, 0, NULL), 1);
    cr_assert_eq(in, 2);
    cr_assert_eq(cl[1].result, 0);
    cr_assert_eq(kc_chan_len(a), 1);

    int v;
    cr_assert_eq(kc_chan_recv(a, &v, 0), 0); /* now a has room, b is empty */
    in = -1;
    cl[0] = TX(a, &out);
    cl[1] = RX(b, &in);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, 0, NULL), 0);
    cr_assert_eq(cl[0].result, 0);
    cr_assert_eq(in, -1);
    cr_assert_eq(kc_chan_recv(a, &v, 0), 0);
    cr_assert_eq(v, 5);
    kc_chan_destroy(a);
    kc_chan_destroy(b);
}

Test(select, send_clause_on_never_blocking_kinds_is_ready)
{
    kc_chan_t *e = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof(int), 0);
    kc_chan_t *c = kt_chan(KC_CONFLATED, sizeof(int), 0);
    int in = -1, o1 = 1, o2 = 2;
    kc_select_clause_t cl[2] = { RX(e, &in), TX(u, &o1) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, 0, NULL), 1);
    put(c, 7);
    cl[0] = RX(e, &in);
    cl[1] = TX(c, &o2);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, -1, NULL), 1);
    int v;
    cr_assert_eq(kc_chan_recv(c, &v, 0), 0);
    cr_assert_eq(v, 2, "a select send into a conflated channel replaces too");
    kc_chan_destroy(e);
    kc_chan_destroy(u);
    kc_chan_destroy(c);
}

/* ---- timeouts, cancel, errors ------------------------------------------ */

Test(select, timeout_zero_is_eagain_and_has_no_effect)
{
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *empty = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    put(full, 1);
    int o = 2, in = -1, in2 = -1;
    kc_select_clause_t cl[4] = { TX(full, &o), RX(empty, &in), TX(rv, &o), RX(rv, &in2) };
    cr_assert_eq(kc_select(cl, 4, KC_SELECT_BIASED, 0, NULL), -EAGAIN);
    cr_assert_eq(kc_select(cl, 4, KC_SELECT_UNBIASED, 0, NULL), -EAGAIN);
    cr_assert_eq(in, -1);
    cr_assert_eq(in2, -1);
    cr_assert_eq(kc_chan_len(full), 1);
    cr_assert_eq(kc_chan_len(empty), 0);
    kc_chan_destroy(full);
    kc_chan_destroy(empty);
    kc_chan_destroy(rv);
}

Test(select, timeout_fires_within_bounds)
{
    kc_chan_t *empty = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int o = 2, in = -1;
    kc_select_clause_t cl[2] = { RX(empty, &in), TX(rv, &o) };
    uint64_t t0 = kt_now_ms();
    int rc = kc_select(cl, 2, KC_SELECT_UNBIASED, 50, NULL);
    uint64_t el = kt_now_ms() - t0;
    cr_assert_eq(rc, -ETIME);
    cr_assert_geq(el, 45, "returned after %llu ms", (unsigned long long)el);
    cr_assert_lt(el, 5000u);
    int v;
    cr_assert_eq(kc_chan_recv(rv, &v, 0), -EAGAIN, "the timed-out send left an offer behind");
    kc_chan_destroy(empty);
    kc_chan_destroy(rv);
}

Test(select, cancel_wakes_blocked_select)
{
    kc_chan_t *empty = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    put(full, 1);
    kc_cancel_t *tok = kt_token(NULL);
    struct kt_trigger trig = { .tok = tok, .delay_ms = 50 };
    pthread_t t;
    uint64_t t0 = kt_now_ms(); /* before the trigger thread: el >= 45 holds under any load */
    kt_start(&t, kt_trigger_thread, &trig);
    int in = -1, o = 3;
    kc_select_clause_t cl[2] = { RX(empty, &in), TX(full, &o) };
    int rc = kc_select(cl, 2, KC_SELECT_BIASED, -1, tok);
    uint64_t el = kt_now_ms() - t0;
    cr_assert_eq(rc, -ECANCELED);
    cr_assert_geq(el, 45);
    cr_assert_lt(el, 5000u);
    kt_join(t, KT_PROMPT_MS);
    /* already set: at once */
    t0 = kt_now_ms();
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, -1, tok), -ECANCELED);
    cr_assert_lt(kt_now_ms() - t0, 1000u);
    cr_assert_eq(kc_chan_len(full), 1);
    cr_assert_eq(in, -1);
    kc_chan_destroy(empty);
    kc_chan_destroy(full);
    kc_cancel_destroy(tok);
}

Test(select, parent_token_cancels_select)
{
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *child = kt_token(root);
    struct sel s = { .n = 1, .timeout_ms = 20000, .cancel = child, .rc = 1 };
    int in = -1;
    s.cl[0] = RX(rv, &in);
    pthread_t t;
    kt_start(&t, sel_thread, &s);
    kt_wait_parked(&s.park);
    kc_cancel_trigger(root);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, -ECANCELED);
    kc_cancel_destroy(child);
    kc_cancel_destroy(root);
    kc_chan_destroy(rv);
}

Test(select, bad_arguments)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    put(ch, 1);
    int in = -1;
    kc_select_clause_t cl[KC_SELECT_MAX + 1];
    for (size_t i = 0; i < KC_SELECT_MAX + 1; i++)
        cl[i] = RX(NULL, &in);
    cl[KC_SELECT_MAX - 1] = RX(ch, &in);
    cr_assert_eq(kc_select(cl, 0, KC_SELECT_BIASED, 0, NULL), -EINVAL, "n == 0");
    cr_assert_eq(kc_select(cl, KC_SELECT_MAX + 1, KC_SELECT_BIASED, 0, NULL), -EINVAL,
                 "n > KC_SELECT_MAX");
    kc_select_clause_t bad = { .ch = ch, .op = 7, .buf = &in, .result = UNSET };
    cr_assert_eq(kc_select(&bad, 1, KC_SELECT_BIASED, 0, NULL), -EINVAL, "bad op");
    cr_assert_eq(kc_chan_len(ch), 1);
    /* the largest allowed set works; NULL-channel clauses are never ready */
    cr_assert_eq(kc_select(cl, KC_SELECT_MAX, KC_SELECT_UNBIASED, 0, NULL), KC_SELECT_MAX - 1);
    cr_assert_eq(in, 1);
    kc_chan_destroy(ch);
}

Test(select, null_channel_clauses_are_never_ready)
{
    int in = -1;
    kc_select_clause_t cl[2] = { RX(NULL, &in), TX(NULL, &in) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, 0, NULL), -EAGAIN);
    uint64_t t0 = kt_now_ms();
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, 30, NULL), -ETIME);
    cr_assert_geq(kt_now_ms() - t0, 25);
}

/* ---- closed channels ---------------------------------------------------- */

Test(select, closed_channel_completes_with_epipe)
{
    kc_chan_t *open_empty = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *closed = kt_chan(KC_BUFFERED, sizeof(int), 2);
    put(closed, 9);
    kc_chan_close(closed);
    int in = -1, o = 1;

    /* not drained yet: the element is received normally */
    kc_select_clause_t cl[2] = { RX(open_empty, &in), RX(closed, &in) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, -1, NULL), 1);
    cr_assert_eq(cl[1].result, 0);
    cr_assert_eq(in, 9);

    /* drained: completes with -EPIPE, even when waiting forever */
    cl[0] = RX(open_empty, &in);
    cl[1] = RX(closed, &in);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, -1, NULL), 1);
    cr_assert_eq(cl[1].result, -EPIPE);

    /* send on a closed channel */
    cl[0] = RX(open_empty, &in);
    cl[1] = TX(closed, &o);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, 0, NULL), 1);
    cr_assert_eq(cl[1].result, -EPIPE);

    /* biased: a ready clause before the closed one still wins */
    put(open_empty, 4);
    cl[0] = RX(open_empty, &in);
    cl[1] = TX(closed, &o);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, 0, NULL), 0);
    cr_assert_eq(cl[0].result, 0);
    cr_assert_eq(in, 4);
    kc_chan_destroy(open_empty);
    kc_chan_destroy(closed);
}

Test(select, close_wakes_blocked_select)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED };
    for (size_t k = 0; k < 2; k++) {
        kc_chan_t *other = kt_chan(KC_BUFFERED, sizeof(int), 1);
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 1);
        int in = -1, o = 5;
        struct sel s = { .n = 2, .timeout_ms = 20000, .rc = 1 };
        s.cl[0] = RX(other, &in);
        s.cl[1] = kinds[k] == KC_BUFFERED ? RX(ch, &in) : TX(ch, &o);
        pthread_t t;
        kt_start(&t, sel_thread, &s);
        kt_wait_parked(&s.park);
        kc_chan_close(ch);
        kt_join(t, KT_PROMPT_MS);
        cr_assert_eq(s.rc, 1, "kind %d: %d", kinds[k], s.rc);
        cr_assert_eq(s.cl[1].result, -EPIPE);
        kc_chan_destroy(ch);
        kc_chan_destroy(other);
    }
}

Test(select, epipe_send_clause_hands_element_to_callback)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *closed = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_set_undelivered(closed, kt_drops_fn, &d);
    kc_chan_set_undelivered(full, kt_drops_fn, &d);
    put(full, 1);
    kc_chan_close(closed);
    int a = 31, b = 32;
    kc_select_clause_t cl[2] = { TX(full, &b), TX(closed, &a) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, 0, NULL), 1);
    cr_assert_eq(cl[1].result, -EPIPE);
    cr_assert_eq(kt_drops_count(&d), 1, "%zu callbacks", kt_drops_count(&d));
    cr_assert_eq(d.vals[0], 31, "only the winning clause's element is reported");
    kc_chan_destroy(closed);
    kc_chan_destroy(full); /* its buffered 1 */
    cr_assert_eq(kt_drops_count(&d), 2);
}

Test(select, failed_select_hands_over_nothing)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_chan_set_undelivered(full, kt_drops_fn, &d);
    kc_chan_set_undelivered(rv, kt_drops_fn, &d);
    put(full, 1);
    kc_cancel_t *tok = kt_token(NULL);
    int a = 2, b = 3;
    kc_select_clause_t cl[2] = { TX(full, &a), TX(rv, &b) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, 0, tok), -EAGAIN);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, 20, tok), -ETIME);
    kc_cancel_trigger(tok);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_UNBIASED, -1, tok), -ECANCELED);
    cr_assert_eq(kt_drops_count(&d), 0, "a failed select owns its elements: %zu callbacks",
                 kt_drops_count(&d));
    int v;
    cr_assert_eq(kc_chan_recv(rv, &v, 0), -EAGAIN);
    kc_cancel_destroy(tok);
    kc_chan_destroy(full);
    kc_chan_destroy(rv);
}

/* ---- pairing with rendezvous peers ------------------------------------- */

Test(select, select_send_pairs_with_plain_recv)
{
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_chan_t *idle = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int o = 4711, in = -1;
    struct sel s = { .n = 2, .mode = KC_SELECT_UNBIASED, .timeout_ms = 20000, .rc = 1 };
    s.cl[0] = RX(idle, &in);
    s.cl[1] = TX(rv, &o);
    pthread_t t;
    kt_start(&t, sel_thread, &s);
    kt_wait_parked(&s.park);
    int v = 0;
    cr_assert_eq(kc_chan_recv(rv, &v, 10000), 0);
    cr_assert_eq(v, 4711);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, 1);
    cr_assert_eq(s.cl[1].result, 0);
    cr_assert_eq(in, -1);
    kc_chan_destroy(rv);
    kc_chan_destroy(idle);
}

Test(select, select_recv_pairs_with_plain_send)
{
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int in = -1;
    struct sel s = { .n = 1, .timeout_ms = 20000, .rc = 1 };
    s.cl[0] = RX(rv, &in);
    pthread_t t;
    kt_start(&t, sel_thread, &s);
    kt_wait_parked(&s.park);
    int v = 99;
    cr_assert_eq(kc_chan_send(rv, &v, 10000), 0);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(in, 99);
    kc_chan_destroy(rv);
}

Test(select, try_select_meets_parked_plain_peers)
{
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    /* a parked receiver: a try-once select send hands over */
    pthread_t t;
    struct kt_op r;
    kt_parked_recv(&t, &r, rv, 10000);
    int o = 12;
    kc_select_clause_t cl = TX(rv, &o);
    cr_assert_eq(kc_select(&cl, 1, KC_SELECT_BIASED, 0, NULL), 0);
    kt_expect_received(t, &r, 12);
    /* a parked sender: a try-once select recv takes its element */
    struct kt_op s;
    kt_op_start(&t, &s, rv, KT_SEND, 13, 10000, NULL);
    kt_wait_parked(&s.park);
    int in = -1;
    cl = RX(rv, &in);
    cr_assert_eq(kc_select(&cl, 1, KC_SELECT_BIASED, 0, NULL), 0);
    cr_assert_eq(in, 13);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, 0);
    kc_chan_destroy(rv);
}

/* Two selects on opposite sides of two rendezvous channels, many rounds. */
struct duel {
    kc_chan_t *rv[2];
    int rounds;
    int *idx;      /* per round: channel used (0/1) or negative error */
    int *val;      /* receiver: value received                        */
};

static void *duel_recv(void *arg)
{
    struct duel *d = arg;
    for (int i = 0; i < d->rounds; i++) {
        int b0 = -1, b1 = -1;
        kc_select_clause_t cl[2] = { RX(d->rv[0], &b0), RX(d->rv[1], &b1) };
        int rc = kc_select(cl, 2, i % 2 ? KC_SELECT_UNBIASED : KC_SELECT_BIASED, 10000, NULL);
        d->idx[i] = rc;
        d->val[i] = rc == 0 ? b0 : rc == 1 ? b1 : -1;
        if (rc < 0)
            break;
    }
    return NULL;
}

static void *duel_send(void *arg)
{
    struct duel *d = arg;
    for (int i = 0; i < d->rounds; i++) {
        int v = i;
        /* reversed order: channel 1 first */
        kc_select_clause_t cl[2] = { TX(d->rv[1], &v), TX(d->rv[0], &v) };
        int rc = kc_select(cl, 2, i % 3 ? KC_SELECT_UNBIASED : KC_SELECT_BIASED, 10000, NULL);
        d->idx[i] = rc < 0 ? rc : 1 - rc;
        if (rc < 0)
            break;
    }
    return NULL;
}

Test(select, opposite_selects_pair_without_lost_wakeups)
{
    const int rounds = 4000 / KT_SCALE;
    struct duel r = { .rounds = rounds }, s = { .rounds = rounds };
    for (int i = 0; i < 2; i++)
        r.rv[i] = s.rv[i] = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    r.idx = calloc((size_t)rounds, sizeof(int));
    r.val = calloc((size_t)rounds, sizeof(int));
    s.idx = calloc((size_t)rounds, sizeof(int));
    cr_assert(r.idx && r.val && s.idx);
    pthread_t tr, ts;
    kt_start(&tr, duel_recv, &r);
    kt_start(&ts, duel_send, &s);
    kt_join(tr, 60000);
    kt_join(ts, 60000);
    for (int i = 0; i < rounds; i++) {
        cr_assert_geq(r.idx[i], 0, "round %d: receiving select returned %d", i, r.idx[i]);
        cr_assert_geq(s.idx[i], 0, "round %d: sending select returned %d", i, s.idx[i]);
        cr_assert_eq(r.idx[i], s.idx[i], "round %d: received on %d, sent on %d", i, r.idx[i],
                     s.idx[i]);
        cr_assert_eq(r.val[i], i, "round %d: received %d", i, r.val[i]);
    }
    kc_chan_destroy(r.rv[0]);
    kc_chan_destroy(r.rv[1]);
    free(r.idx);
    free(r.val);
    free(s.idx);
}

/* ---- only the winner takes effect -------------------------------------- */

Test(select, only_winning_clause_takes_effect_buffered)
{
    kc_chan_t *a = kt_chan(KC_BUFFERED, sizeof(int), 200);
    kc_chan_t *b = kt_chan(KC_BUFFERED, sizeof(int), 200);
    int va = 1, vb = 2;
    for (int i = 0; i < 100; i++) {
        kc_select_clause_t cl[2] = { TX(a, &va), TX(b, &vb) };
        int rc = kc_select(cl, 2, i % 2 ? KC_SELECT_UNBIASED : KC_SELECT_BIASED, 0, NULL);
        cr_assert(rc == 0 || rc == 1);
        cr_assert_eq(kc_chan_len(a) + kc_chan_len(b), (size_t)i + 1, "round %d", i);
    }
    for (int i = 0; i < 100; i++) {
        int ia = -1, ib = -1;
        kc_select_clause_t cl[2] = { RX(a, &ia), RX(b, &ib) };
        int rc = kc_select(cl, 2, KC_SELECT_UNBIASED, 0, NULL);
        cr_assert(rc == 0 || rc == 1);
        cr_assert((rc == 0 && ia == 1 && ib == -1) || (rc == 1 && ib == 2 && ia == -1));
        cr_assert_eq(kc_chan_len(a) + kc_chan_len(b), 99u - (size_t)i);
    }
    kc_chan_destroy(a);
    kc_chan_destroy(b);
}

Test(select, only_winning_clause_takes_effect_rendezvous)
{
    kc_chan_t *rv1 = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_chan_t *rv2 = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int o1 = 1, o2 = 2;
    struct sel s = { .n = 2, .mode = KC_SELECT_UNBIASED, .timeout_ms = 20000, .rc = 1 };
    s.cl[0] = TX(rv1, &o1);
    s.cl[1] = TX(rv2, &o2);
    pthread_t t;
    kt_start(&t, sel_thread, &s);
    kt_wait_parked(&s.park);
    int v = 0;
    cr_assert_eq(kc_chan_recv(rv1, &v, 10000), 0);
    cr_assert_eq(v, 1);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(kc_chan_recv(rv2, &v, 100), -ETIME, "the losing send clause delivered %d", v);
    kc_chan_destroy(rv1);
    kc_chan_destroy(rv2);
}

Test(select, one_select_send_two_receivers_exactly_one_delivery)
{
    const int rounds = 300 / KT_SCALE;
    for (int round = 0; round < rounds; round++) {
        kc_chan_t *rv[2];
        pthread_t t[2];
        struct kt_op r[2];
        for (int i = 0; i < 2; i++) {
            rv[i] = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
            kt_op_start(&t[i], &r[i], rv[i], KT_RECV, -1, 10000, NULL);
        }
        if (round % 5 == 1) /* sometimes both receivers are surely parked first */
            for (int i = 0; i < 2; i++)
                kt_wait_parked(&r[i].park);
        int o = round;
        kc_select_clause_t cl[2] = { TX(rv[0], &o), TX(rv[1], &o) };
        int rc = kc_select(cl, 2, round % 4 < 2 ? KC_SELECT_UNBIASED : KC_SELECT_BIASED, 10000,
                           NULL);
        cr_assert(rc == 0 || rc == 1, "round %d: %d", round, rc);
        /* the other receiver must get nothing: close so it leaves with -EPIPE */
        kc_chan_close(rv[0]);
        kc_chan_close(rv[1]);
        for (int i = 0; i < 2; i++)
            kt_join(t[i], KT_PROMPT_MS);
        cr_assert_eq(r[rc].rc, 0, "round %d: winner's receiver got %d", round, r[rc].rc);
        cr_assert_eq(r[rc].value, round);
        cr_assert_eq(r[1 - rc].rc, -EPIPE, "round %d: the losing clause also delivered", round);
        kc_chan_destroy(rv[0]);
        kc_chan_destroy(rv[1]);
    }
}

/* ---- exactly once under concurrency ------------------------------------ */

enum { NCH = 3, NPROD = 3, NSEL = 4 };

struct sx {
    kc_chan_t **ch;
    int id;
    int per;           /* producer: values to send                   */
    bool use_select;   /* producer: send through select clauses      */
    int *got;          /* consumer: values received                  */
    int ngot;
    int cap;
    int bad;           /* unexpected results                         */
    int multi;         /* selects where more than one buffer changed */
};

static int sx_value(int prod, int i, int per) { return prod * per + i + 1; }

static void *sx_produce(void *arg)
{
    struct sx *p = arg;
    for (int i = 0; i < p->per; i++) {
        int v = sx_value(p->id, i, p->per);
        if (p->use_select) {
            kc_select_clause_t cl[NCH];
            for (int c = 0; c < NCH; c++)
                cl[c] = TX(p->ch[(c + i) % NCH], &v);
            int rc = kc_select(cl, NCH, KC_SELECT_UNBIASED, 20000, NULL);
            if (rc < 0 || cl[rc].result != 0)
                p->bad++;
        } else if (kc_chan_send(p->ch[i % NCH], &v, 20000) != 0) {
            p->bad++;
        }
    }
    return NULL;
}

static void *sx_consume(void *arg)
{
    struct sx *c = arg;
    kc_select_clause_t cl[NCH];
    int buf[NCH];
    int open = NCH;
    for (int i = 0; i < NCH; i++)
        cl[i] = RX(c->ch[i], &buf[i]);
    while (open > 0) {
        for (int i = 0; i < NCH; i++)
            buf[i] = -1;
        int rc = kc_select(cl, NCH, c->id % 2 ? KC_SELECT_UNBIASED : KC_SELECT_BIASED, 20000,
                           NULL);
        if (rc < 0) {
            c->bad++;
            break;
        }
        int changed = 0;
        for (int i = 0; i < NCH; i++)
            changed += buf[i] != -1;
        if (cl[rc].result == -EPIPE) {
            cl[rc].ch = NULL; /* never ready again */
            open--;
            c->multi += changed != 0;
            continue;
        }
        if (cl[rc].result != 0) {
            c->bad++;
            break;
        }
        c->multi += changed != 1;
        if (c->ngot < c->cap)
            c->got[c->ngot++] = buf[rc];
        else
            c->bad++;
    }
    return NULL;
}

static void exactly_once(int kind, int per, bool select_send)
{
    kc_chan_t *ch[NCH];
    for (int i = 0; i < NCH; i++)
        ch[i] = kt_chan(kind, sizeof(int), 8);
    int total = NPROD * per;
    struct sx prod[NPROD], cons[NSEL];
    pthread_t tp[NPROD], tc[NSEL];
    for (int i = 0; i < NSEL; i++) {
        cons[i] = (struct sx){ .ch = ch, .id = i, .cap = total };
        cons[i].got = malloc((size_t)total * sizeof(int));
        cr_assert_not_null(cons[i].got);
        kt_start(&tc[i], sx_consume, &cons[i]);
    }
    for (int i = 0; i < NPROD; i++) {
        prod[i] = (struct sx){ .ch = ch, .id = i, .per = per, .use_select = select_send };
        kt_start(&tp[i], sx_produce, &prod[i]);
    }
    for (int i = 0; i < NPROD; i++)
        kt_join(tp[i], 60000);
    for (int i = 0; i < NCH; i++)
        kc_chan_close(ch[i]);
    for (int i = 0; i < NSEL; i++)
        kt_join(tc[i], 30000);

    unsigned char *seen = calloc((size_t)total + 1, 1);
    cr_assert_not_null(seen);
    int received = 0;
    for (int i = 0; i < NPROD; i++)
        cr_assert_eq(prod[i].bad, 0, "producer %d: %d failed sends", i, prod[i].bad);
    for (int i = 0; i < NSEL; i++) {
        cr_assert_eq(cons[i].bad, 0, "consumer %d: %d bad results", i, cons[i].bad);
        cr_assert_eq(cons[i].multi, 0, "consumer %d: %d selects changed several buffers", i,
                     cons[i].multi);
        for (int k = 0; k < cons[i].ngot; k++) {
            int v = cons[i].got[k];
            cr_assert(v >= 1 && v <= total, "bogus value %d", v);
            cr_assert_eq(seen[v], 0, "value %d received twice", v);
            seen[v] = 1;
        }
        received += cons[i].ngot;
    }
    cr_assert_eq(received, total, "received %d of %d values", received, total);
    free(seen);
    for (int i = 0; i < NSEL; i++)
        free(cons[i].got);
    for (int i = 0; i < NCH; i++)
        kc_chan_destroy(ch[i]);
}

Test(select, exactly_once_buffered_select_recv) { exactly_once(KC_BUFFERED, 30000 / KT_SCALE, false); }
Test(select, exactly_once_rendezvous_select_recv) { exactly_once(KC_RENDEZVOUS, 6000 / KT_SCALE, false); }
Test(select, exactly_once_buffered_select_both_sides) { exactly_once(KC_BUFFERED, 20000 / KT_SCALE, true); }
Test(select, exactly_once_rendezvous_select_both_sides) { exactly_once(KC_RENDEZVOUS, 5000 / KT_SCALE, true); }

/* ---- issue 6 item 17: a woken select that does not consume passes the
 * wake-up on ------------------------------------------------------------
 *
 * Buffered channels wake one waiter per element to retry. If that waiter is
 * a select that then completes another clause, a second waiter must be woken
 * instead, or it sleeps on a non-empty (or non-full) channel. The window is
 * the selector's wake-up latency: the main thread makes the other clause
 * ready right after the element, so the selector (biased, that clause first)
 * almost always takes it, and each round would stall without the hand-on. */

#define POOL_ROUNDS 20

struct pool {
    kc_chan_t *quit;        /* closed to stop the selecting worker          */
    kc_chan_t *jobs;        /* buffered; both workers take jobs from it    */
    _Atomic int processed;  /* jobs taken by either worker                  */
    _Atomic bool sel_sent;  /* send side: the selector's send clause won    */
    int sel_rc;             /* the selector's last kc_select result         */
    int other_rc;           /* the plain worker's last result               */
    struct kt_park p_sel;   /* the selecting worker                         */
    struct kt_park p_other; /* the plain receiver or sender                 */
};

/* Worker 1 of Go's classic pool: for { select { case <-quit: return; case j := <-jobs: ... } } */
static void *pool_selector(void *arg)
{
    struct pool *p = arg;
    kt_park_enter(&p->p_sel);
    for (;;) {
        int q = UNSET, j = UNSET;
        kc_select_clause_t cl[2] = { RX(p->quit, &q), RX(p->jobs, &j) };
        int rc = kc_select(cl, 2, KC_SELECT_BIASED, -1, NULL);
        p->sel_rc = rc;
        if (rc == 1 && cl[1].result == 0) {
            atomic_fetch_add(&p->processed, 1);
            continue;
        }
        break; /* quit closed (or jobs closed) */
    }
    atomic_store(&p->p_sel.done, true);
    return NULL;
}

/* Worker 2: for j := range jobs { ... } */
static void *pool_receiver(void *arg)
{
    struct pool *p = arg;
    kt_park_enter(&p->p_other);
    int j, rc;
    while ((rc = kc_chan_recv(p->jobs, &j, -1)) == 0)
        atomic_fetch_add(&p->processed, 1);
    p->other_rc = rc;
    atomic_store(&p->p_other.done, true);
    return NULL;
}

/* Waits (bounded) until pred holds; returns whether it did. */
static bool wait_until_processed(struct pool *p, int want)
{
    uint64_t end = kt_now_ms() + KT_PROMPT_MS;
    while (atomic_load(&p->processed) < want && kt_now_ms() < end)
        kt_sleep_ms(1);
    return atomic_load(&p->processed) >= want;
}

Test(select, woken_select_passes_wakeup_to_blocked_receiver)
{
    for (int round = 0; round < POOL_ROUNDS; round++) {
        struct pool p = { 0 };
        p.quit = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
        p.jobs = kt_chan(KC_BUFFERED, sizeof(int), 4);
        pthread_t ts, tr;
        /* The selector queues first, so the job's wake-up goes to it. */
        kt_start(&ts, pool_selector, &p);
        kt_wait_parked(&p.p_sel);
        kt_start(&tr, pool_receiver, &p);
        kt_wait_parked(&p.p_other);
        put(p.jobs, 42);
        kc_chan_close(p.quit);
        bool ok = wait_until_processed(&p, 1);
        size_t left = kc_chan_len(p.jobs);
        kc_chan_close(p.jobs); /* frees the workers either way */
        kt_join(ts, KT_PROMPT_MS);
        kt_join(tr, KT_PROMPT_MS);
        cr_assert(ok, "round %d: the job was never processed (%zu left in a channel with a "
                      "blocked receiver)", round, left);
        cr_assert_eq(atomic_load(&p.processed), 1, "round %d", round);
        cr_assert_eq(p.other_rc, -EPIPE);
        kc_chan_destroy(p.quit);
        kc_chan_destroy(p.jobs);
    }
}

/* The mirror image: a selector {quit, jobs <- v} and a plain sender both
 * blocked on a full channel; one receive makes room for one of them. */
static void *pool_send_selector(void *arg)
{
    struct pool *p = arg;
    kt_park_enter(&p->p_sel);
    int q = UNSET, v = 1;
    kc_select_clause_t cl[2] = { RX(p->quit, &q), TX(p->jobs, &v) };
    int rc = kc_select(cl, 2, KC_SELECT_BIASED, -1, NULL);
    p->sel_rc = rc;
    if (rc == 1 && cl[1].result == 0)
        atomic_store(&p->sel_sent, true);
    atomic_store(&p->p_sel.done, true);
    return NULL;
}

static void *pool_sender(void *arg)
{
    struct pool *p = arg;
    kt_park_enter(&p->p_other);
    int v = 2;
    p->other_rc = kc_chan_send(p->jobs, &v, -1);
    atomic_store(&p->p_other.done, true);
    return NULL;
}

Test(select, woken_select_passes_wakeup_to_blocked_sender)
{
    for (int round = 0; round < POOL_ROUNDS; round++) {
        struct pool p = { 0 };
        p.quit = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
        p.jobs = kt_chan(KC_BUFFERED, sizeof(int), 1);
        put(p.jobs, 0); /* full */
        pthread_t ts, tw;
        kt_start(&ts, pool_send_selector, &p);
        kt_wait_parked(&p.p_sel);
        kt_start(&tw, pool_sender, &p);
        kt_wait_parked(&p.p_other);
        int v = -1;
        cr_assert_eq(kc_chan_recv(p.jobs, &v, 0), 0); /* room for one */
        cr_assert_eq(v, 0);
        kc_chan_close(p.quit);
        kt_join(ts, KT_PROMPT_MS);
        /* Whoever got the room, its element is in the channel now; the other
         * (if it was the selector) has quit. Nobody may sleep on a non-full
         * channel: the element arrives within the bound. */
        v = -1;
        int rc = kc_chan_recv(p.jobs, &v, KT_PROMPT_MS);
        bool sender_done = atomic_load(&p.p_other.done);
        kc_chan_close(p.jobs); /* frees the sender either way */
        kt_join(tw, KT_PROMPT_MS);
        cr_assert_eq(rc, 0, "round %d: no element within %d ms although a sender was blocked on "
                            "a channel with room (sender done: %d)",
                     round, KT_PROMPT_MS, sender_done);
        if (atomic_load(&p.sel_sent)) {
            cr_assert_eq(v, 1, "round %d", round); /* the sender came later, if at all */
        } else {
            cr_assert_eq(v, 2, "round %d", round);
            cr_assert_eq(p.other_rc, 0);
            cr_assert_eq(p.sel_rc, 0, "round %d: the selector took quit", round);
        }
        kc_chan_destroy(p.quit);
        kc_chan_destroy(p.jobs);
    }
}
