/* test_close: close during blocked operations; undelivered-element callbacks. */
#include "kt.h"

enum { NB = 4 };

/* Starts NB threads doing op on ch (values base+i), waits until all are parked. */
static void block_many(kc_chan_t *ch, int op, int base, pthread_t *t, struct kt_op *o)
{
    for (int i = 0; i < NB; i++)
        kt_op_start(&t[i], &o[i], ch, op, base + i, 20000, NULL);
    for (int i = 0; i < NB; i++)
        kt_wait_parked(&o[i].park);
    for (int i = 0; i < NB; i++)
        cr_assert_not(atomic_load(&o[i].park.done), "op %d returned %d before the close", i,
                      o[i].rc);
}

static void join_all_epipe(pthread_t *t, struct kt_op *o)
{
    for (int i = 0; i < NB; i++) {
        kt_join(t[i], KT_PROMPT_MS);
        cr_assert_eq(o[i].rc, -EPIPE, "op %d: %d", i, o[i].rc);
        cr_assert_lt(o[i].elapsed_ms, 15000u, "op %d was not woken by close", i);
    }
}

static void close_wakes_senders(int kind)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *ch = kt_chan(kind, sizeof(int), 2);
    kc_chan_set_undelivered(ch, kt_drops_fn, &d);
    if (kind == KC_BUFFERED) {
        for (int v = 1; v <= 2; v++)
            cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    }
    pthread_t t[NB];
    struct kt_op o[NB];
    block_many(ch, KT_SEND, 100, t, o);
    kc_chan_close(ch);
    join_all_epipe(t, o);
    cr_assert_eq(kt_drops_count(&d), NB, "kind %d: %zu undelivered calls, want %d", kind,
                 kt_drops_count(&d), NB);
    for (int i = 0; i < NB; i++)
        cr_assert_eq(kt_drops_times(&d, 100 + i), 1, "element %d reported %zu times", 100 + i,
                     kt_drops_times(&d, 100 + i));
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.dropped, NB);
    if (kind == KC_BUFFERED) {
        /* what was buffered before the close is still delivered */
        int v;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
        cr_assert_eq(v, 1);
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
        cr_assert_eq(v, 2);
    }
    int v;
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EPIPE);
    kc_chan_destroy(ch);
    cr_assert_eq(kt_drops_count(&d), NB, "nothing left to drop at destroy");
}

Test(close, wakes_blocked_senders_buffered) { close_wakes_senders(KC_BUFFERED); }
Test(close, wakes_blocked_senders_rendezvous) { close_wakes_senders(KC_RENDEZVOUS); }

static void close_wakes_receivers(int kind)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *ch = kt_chan(kind, sizeof(int), 2);
    kc_chan_set_undelivered(ch, kt_drops_fn, &d);
    pthread_t t[NB];
    struct kt_op o[NB];
    block_many(ch, KT_RECV, 0, t, o);
    kc_chan_close(ch);
    join_all_epipe(t, o);
    cr_assert_eq(kt_drops_count(&d), 0);
    kc_chan_destroy(ch);
}

Test(close, wakes_blocked_receivers_rendezvous) { close_wakes_receivers(KC_RENDEZVOUS); }
Test(close, wakes_blocked_receivers_buffered) { close_wakes_receivers(KC_BUFFERED); }
Test(close, wakes_blocked_receivers_unlimited) { close_wakes_receivers(KC_UNLIMITED); }
Test(close, wakes_blocked_receivers_conflated) { close_wakes_receivers(KC_CONFLATED); }

Test(close, wakes_cancellable_waiters_too)
{
    kc_cancel_t *tok = kt_token(NULL);
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    pthread_t t[NB];
    struct kt_op o[NB];
    for (int i = 0; i < NB; i++)
        kt_op_start(&t[i], &o[i], ch, KT_RECV, 0, -1, tok);
    for (int i = 0; i < NB; i++)
        kt_wait_parked(&o[i].park);
    kc_chan_close(ch);
    join_all_epipe(t, o);
    cr_assert_not(kc_cancel_is_set(tok));
    kc_chan_destroy(ch);
    kc_cancel_destroy(tok);
}

/* Ownership rule (kc_undelivered_fn): after -EPIPE from a send the element
 * went to the callback, blocked first or not; after -EAGAIN/-ETIME/-ECANCELED
 * the caller still owns it and nothing is called. */
Test(close, send_rejected_by_closed_channel_is_reported)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED, KC_UNLIMITED, KC_CONFLATED };
    for (size_t k = 0; k < 4; k++) {
        struct kt_drops d;
        kt_drops_init(&d);
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 2);
        kc_chan_set_undelivered(ch, kt_drops_fn, &d);
        kc_chan_close(ch);
        int v = 5, w = 6;
        cr_assert_eq(kc_chan_send(ch, &v, 0), -EPIPE);
        cr_assert_eq(kc_chan_send(ch, &w, -1), -EPIPE);
        cr_assert_eq(kt_drops_count(&d), 2, "kind %d: %zu callbacks for 2 rejected sends",
                     kinds[k], kt_drops_count(&d));
        cr_assert_eq(d.vals[0], 5);
        cr_assert_eq(d.vals[1], 6);
        kc_chan_snapshot_t s;
        kc_chan_snapshot(ch, &s);
        cr_assert_eq(s.dropped, 2);
        kc_chan_destroy(ch);
        cr_assert_eq(kt_drops_count(&d), 2);
    }
}

Test(close, send_rejected_by_set_token_stays_with_caller)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_set_undelivered(ch, kt_drops_fn, &d);
    kc_cancel_t *tok = kt_token(NULL);
    kc_cancel_trigger(tok);
    int v = 9;
    cr_assert_eq(kc_chan_send_c(ch, &v, -1, tok), -ECANCELED);
    cr_assert_eq(kt_drops_count(&d), 0, "-ECANCELED leaves the element with the caller");
    cr_assert_eq(kc_chan_len(ch), 0);
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
    cr_assert_eq(kt_drops_count(&d), 0);
}

Test(close, failed_try_and_timeout_sends_call_no_callback)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_set_undelivered(rv, kt_drops_fn, &d);
    kc_chan_set_undelivered(full, kt_drops_fn, &d);
    int v = 5;
    cr_assert_eq(kc_chan_send(full, &v, 0), 0);
    cr_assert_eq(kc_chan_send(rv, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_send(rv, &v, 20), -ETIME);
    cr_assert_eq(kc_chan_send(full, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_send(full, &v, 20), -ETIME);
    kc_cancel_t *tok = kt_token(NULL);
    cr_assert_eq(kc_chan_send_c(full, &v, 20, tok), -ETIME);
    cr_assert_eq(kt_drops_count(&d), 0, "%zu callbacks for sends the caller still owns",
                 kt_drops_count(&d));
    kc_zdesc z = { .addr = &z };
    cr_assert_eq(kc_chan_send_desc(rv, &z, 0), -EINVAL);
    cr_assert_eq(kt_drops_count(&d), 0, "-EINVAL calls no callback");
    kc_cancel_destroy(tok);
    kc_chan_destroy(rv);
    kc_chan_destroy(full); /* the one buffered element */
    cr_assert_eq(kt_drops_count(&d), 1);
}

Test(close, destroy_reports_every_buffered_element)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *b = kt_chan(KC_BUFFERED, sizeof(int), 8);
    kc_chan_set_undelivered(b, kt_drops_fn, &d);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(kc_chan_send(b, &i, 0), 0);
    int v;
    cr_assert_eq(kc_chan_recv(b, &v, 0), 0); /* 0 was delivered: not reported */
    kc_chan_destroy(b);
    cr_assert_eq(kt_drops_count(&d), 4);
    for (int i = 1; i < 5; i++)
        cr_assert_eq(kt_drops_times(&d, i), 1, "element %d", i);
    cr_assert_eq(kt_drops_times(&d, 0), 0);
}

Test(close, destroy_reports_unlimited_and_closed_channels)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof(int), 2);
    kc_chan_set_undelivered(u, kt_drops_fn, &d);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(kc_chan_send(u, &i, 0), 0);
    kc_chan_close(u); /* closing does not drop: the elements can still be received */
    cr_assert_eq(kt_drops_count(&d), 0);
    kc_chan_destroy(u);
    cr_assert_eq(kt_drops_count(&d), 1000);
    static unsigned char seen[1000];
    for (int i = 0; i < 1000; i++) {
        cr_assert(d.vals[i] >= 0 && d.vals[i] < 1000, "bogus element %d", d.vals[i]);
        cr_assert_eq(seen[d.vals[i]]++, 0, "element %d reported twice", d.vals[i]);
    }
}

Test(close, cancel_of_blocked_send_leaves_element_with_caller)
{
    int kinds[] = { KC_BUFFERED, KC_RENDEZVOUS };
    for (size_t k = 0; k < 2; k++) {
        struct kt_drops d;
        kt_drops_init(&d);
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 1);
        kc_chan_set_undelivered(ch, kt_drops_fn, &d);
        int v = 1;
        if (kinds[k] == KC_BUFFERED)
            cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
        kc_cancel_t *tok = kt_token(NULL);
        pthread_t t;
        struct kt_op o;
        kt_op_start(&t, &o, ch, KT_SEND, 77, -1, tok);
        kt_wait_parked(&o.park);
        kc_cancel_trigger(tok);
        kt_join(t, KT_PROMPT_MS);
        cr_assert_eq(o.rc, -ECANCELED);
        cr_assert_eq(kt_drops_count(&d), 0, "kind %d: %zu callbacks", kinds[k],
                     kt_drops_count(&d));
        kc_chan_snapshot_t s;
        kc_chan_snapshot(ch, &s);
        cr_assert_eq(s.dropped, 0);
        cr_assert_eq(s.fail_canceled, 1);
        kc_chan_destroy(ch);
        kc_cancel_destroy(tok);
        size_t want = kinds[k] == KC_BUFFERED ? 1 : 0; /* the buffered 1 at destroy */
        cr_assert_eq(kt_drops_count(&d), want);
        if (want)
            cr_assert_eq(d.vals[0], 1, "77 was never the channel's");
    }
}

Test(close, close_is_idempotent_and_visible)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    cr_assert_not(kc_chan_is_closed(ch));
    for (int i = 0; i < 3; i++) {
        kc_chan_close(ch);
        cr_assert(kc_chan_is_closed(ch));
    }
    kc_chan_destroy(ch);
}

/* Close racing with senders and receivers: every element is either received
 * or reported undelivered, exactly once. */
struct racer {
    kc_chan_t *ch;
    int base, n;
    int sent;      /* sends that returned 0 */
    int received;  /* recv: elements received */
    long long sum; /* recv: sum of elements received */
    int bad;       /* unexpected result codes */
};

static void *race_send(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < r->n; i++) {
        int v = r->base + i;
        int rc = kc_chan_send(r->ch, &v, 10000);
        if (rc == 0)
            r->sent++;
        else if (rc == -EPIPE)
            break;
        else
            r->bad++;
    }
    return NULL;
}

static void *race_recv(void *arg)
{
    struct racer *r = arg;
    for (;;) {
        int v;
        int rc = kc_chan_recv(r->ch, &v, 10000);
        if (rc == -EPIPE)
            break;
        if (rc != 0) {
            r->bad++;
            break;
        }
        r->received++;
        r->sum += v;
    }
    return NULL;
}

struct sum_drops {
    pthread_mutex_t mu;
    long long sum;
    int n;
};

static void sum_drop_fn(void *user, void *elem)
{
    struct sum_drops *s = user;
    int v;
    memcpy(&v, elem, sizeof v);
    pthread_mutex_lock(&s->mu);
    s->sum += v;
    s->n++;
    pthread_mutex_unlock(&s->mu);
}

static void close_race(int kind)
{
    for (int round = 0; round < 20; round++) {
        struct sum_drops sd = { .mu = PTHREAD_MUTEX_INITIALIZER };
        kc_chan_t *ch = kt_chan(kind, sizeof(int), 4);
        kc_chan_set_undelivered(ch, sum_drop_fn, &sd);
        struct racer s[3], r[2];
        pthread_t ts[3], tr[2];
        for (int i = 0; i < 3; i++) {
            s[i] = (struct racer){ .ch = ch, .base = i * 100000 + 1, .n = 100000 };
            kt_start(&ts[i], race_send, &s[i]);
        }
        for (int i = 0; i < 2; i++) {
            r[i] = (struct racer){ .ch = ch };
            kt_start(&tr[i], race_recv, &r[i]);
        }
        kt_sleep_ms(2 + round % 5);
        kc_chan_close(ch);
        for (int i = 0; i < 3; i++)
            kt_join(ts[i], 15000);
        for (int i = 0; i < 2; i++)
            kt_join(tr[i], 15000);
        long long sent_sum = 0, recv_sum = 0;
        int sent = 0, received = 0;
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(s[i].bad, 0);
            sent += s[i].sent;
            sent_sum += (long long)s[i].sent * (2LL * s[i].base + s[i].sent - 1) / 2;
        }
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(r[i].bad, 0);
            received += r[i].received;
            recv_sum += r[i].sum;
        }
        /* sends that succeeded were received (the channel was drained); blocked
         * sends woken by close were reported, not received */
        size_t left = kc_chan_len(ch);
        cr_assert_eq(received, sent,
                     "kind %d round %d: sends returned 0 for %d elements but receivers got %d "
                     "before -EPIPE (%zu still buffered after close+drain)",
                     kind, round, sent, received, left);
        cr_assert_eq(recv_sum, sent_sum);
        kc_chan_destroy(ch);
        int epipe_sends = 0;
        for (int i = 0; i < 3; i++)
            epipe_sends += s[i].sent < s[i].n;
        cr_assert_eq(sd.n, epipe_sends, "each sender's one -EPIPE send is reported once");
    }
}

Test(close, close_racing_with_traffic_buffered) { close_race(KC_BUFFERED); }
Test(close, close_racing_with_traffic_rendezvous) { close_race(KC_RENDEZVOUS); }
