/* test_stats: per-channel counters, rates, and the live-channel registry. */
#include <math.h>
#include <sched.h>

#include "kt.h"

Test(stats, counts_every_outcome_exactly)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 2);
    kc_chan_set_name(ch, "stats-exact");
    kc_cancel_t *tok = kt_token(NULL);
    kc_cancel_trigger(tok);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.sends + s.recvs + s.bytes_sent + s.bytes_recv, 0);
    cr_assert_eq(s.fail_again + s.fail_timeout + s.fail_canceled + s.fail_closed + s.dropped, 0);

    int v = 1;
    cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    cr_assert_eq(kc_chan_send(ch, &v, -1), 0);
    cr_assert_eq(kc_chan_send(ch, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_send(ch, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_send(ch, &v, 10), -ETIME);
    cr_assert_eq(kc_chan_send_c(ch, &v, -1, tok), -ECANCELED);
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.sends, 2);
    cr_assert_eq(s.bytes_sent, 2 * sizeof(int));
    cr_assert_eq(s.fail_again, 2);
    cr_assert_eq(s.fail_timeout, 1);
    cr_assert_eq(s.fail_canceled, 1);
    cr_assert_eq(s.len, 2);

    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(kc_chan_recv(ch, &v, 10), 0);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_recv(ch, &v, 10), -ETIME);
    cr_assert_eq(kc_chan_recv_c(ch, &v, -1, tok), -ECANCELED);
    kc_chan_close(ch);
    cr_assert_eq(kc_chan_send(ch, &v, 0), -EPIPE);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EPIPE);
    cr_assert_eq(kc_chan_recv(ch, &v, -1), -EPIPE);

    uint64_t before = kc_now_ns();
    kc_chan_snapshot(ch, &s);
    uint64_t after = kc_now_ns();
    cr_assert_eq(s.sends, 2);
    cr_assert_eq(s.recvs, 2);
    cr_assert_eq(s.bytes_sent, 8);
    cr_assert_eq(s.bytes_recv, 8);
    cr_assert_eq(s.fail_again, 3, "fail_again %llu", (unsigned long long)s.fail_again);
    cr_assert_eq(s.fail_timeout, 2);
    cr_assert_eq(s.fail_canceled, 2);
    cr_assert_eq(s.fail_closed, 3);
    cr_assert_eq(s.dropped, 1, "the -EPIPE send hands its element over, -ECANCELED does not");
    cr_assert_eq(s.len, 0);
    cr_assert_eq(s.cap, 2);
    cr_assert_eq(s.kind, KC_BUFFERED);
    cr_assert(s.closed);
    cr_assert_str_eq(s.name, "stats-exact");
    cr_assert(s.t_ns >= before && s.t_ns <= after, "t_ns is not kc_now_ns time");
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
}

Test(stats, elem_size_counts_bytes_and_invalid_ops_count_nothing)
{
    char e[24] = { 0 };
    kc_chan_t *ch = kt_chan(KC_UNLIMITED, sizeof e, 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(kc_chan_send(ch, e, 0), 0);
    cr_assert_eq(kc_chan_recv(ch, e, 0), 0);
    kc_zdesc d;
    cr_assert_eq(kc_chan_recv_desc(ch, &d, 0), -EINVAL);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.bytes_sent, 120);
    cr_assert_eq(s.bytes_recv, 24);
    cr_assert_eq(s.len, 4);
    cr_assert_eq(s.cap, (uint64_t)SIZE_MAX);
    cr_assert_eq(s.kind, KC_UNLIMITED);
    cr_assert_not(s.closed);
    cr_assert_str_eq(s.name, "", "unnamed channel");
    cr_assert_eq(s.fail_again + s.fail_timeout + s.fail_canceled + s.fail_closed, 0,
                 "-EINVAL is not one of the counted failures");
    kc_chan_destroy(ch);
}

Test(stats, rendezvous_and_conflated_snapshot_fields)
{
    kc_chan_t *r = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_chan_t *c = kt_chan(KC_CONFLATED, sizeof(int), 0);
    int v = 1;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(kc_chan_send(c, &v, 0), 0);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(r, &s);
    cr_assert_eq(s.cap, 0);
    cr_assert_eq(s.len, 0);
    cr_assert_eq(s.kind, KC_RENDEZVOUS);
    kc_chan_snapshot(c, &s);
    cr_assert_eq(s.cap, 1);
    cr_assert_eq(s.len, 1);
    cr_assert_eq(s.sends, 3);
    cr_assert_eq(s.dropped, 2);
    kc_chan_destroy(r);
    kc_chan_destroy(c);
}

Test(stats, long_names_are_truncated)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    const char *longname = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
    kc_chan_set_name(ch, longname);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(strlen(s.name), 31);
    cr_assert_eq(strncmp(s.name, longname, 31), 0);
    kc_chan_set_name(ch, "short");
    kc_chan_snapshot(ch, &s);
    cr_assert_str_eq(s.name, "short");
    kc_chan_destroy(ch);
}

static kc_chan_snapshot_t snap_at(uint64_t t_ns, uint64_t sends, uint64_t recvs, uint64_t bytes,
                                  uint64_t fails)
{
    kc_chan_snapshot_t s;
    memset(&s, 0, sizeof s);
    s.t_ns = t_ns;
    s.sends = sends;
    s.recvs = recvs;
    s.bytes_sent = bytes;
    s.bytes_recv = bytes;
    s.fail_again = fails;
    s.fail_timeout = 2 * fails;
    s.fail_canceled = 3 * fails;
    s.fail_closed = 4 * fails;
    s.kind = KC_BUFFERED;
    s.cap = 8;
    return s;
}

Test(stats, compute_rate_from_synthetic_snapshots)
{
    kc_chan_snapshot_t a = snap_at(1000000000ull, 10, 5, 100, 1);
    kc_chan_snapshot_t b = snap_at(3000000000ull, 30, 45, 4100, 3);
    kc_chan_rate_t r;
    cr_assert_eq(kc_chan_compute_rate(&a, &b, &r), 0);
    cr_assert_float_eq(r.secs, 2.0, 1e-9);
    cr_assert_float_eq(r.sends_per_sec, 10.0, 1e-9);
    cr_assert_float_eq(r.recvs_per_sec, 20.0, 1e-9);
    cr_assert_float_eq(r.bytes_per_sec, 2000.0, 1e-9);
    cr_assert_eq(r.failures, 20, "failures %llu want 2+4+6+8", (unsigned long long)r.failures);
}

Test(stats, compute_rate_rejects_non_later_snapshot)
{
    kc_chan_snapshot_t a = snap_at(5000000000ull, 10, 5, 100, 1);
    kc_chan_snapshot_t b = snap_at(4000000000ull, 30, 45, 4100, 3);
    kc_chan_rate_t r, untouched;
    memset(&r, 0xab, sizeof r);
    memcpy(&untouched, &r, sizeof r);
    cr_assert_eq(kc_chan_compute_rate(&a, &b, &r), -EINVAL, "cur earlier than prev");
    cr_assert_eq(kc_chan_compute_rate(&a, &a, &r), -EINVAL, "cur at the same time");
    cr_assert_eq(memcmp(&r, &untouched, sizeof r), 0, "a failed call wrote its output");
}

Test(stats, compute_rate_from_real_snapshots)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(uint64_t), 128);
    kc_chan_snapshot_t a, b;
    kc_chan_snapshot(ch, &a);
    uint64_t v = 0;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    for (int i = 0; i < 60; i++)
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    kt_sleep_ms(20);
    kc_chan_snapshot(ch, &b);
    cr_assert_gt(b.t_ns, a.t_ns);
    kc_chan_rate_t r;
    cr_assert_eq(kc_chan_compute_rate(&a, &b, &r), 0);
    double secs = (double)(b.t_ns - a.t_ns) / 1e9;
    cr_assert_float_eq(r.secs, secs, 1e-9);
    cr_assert(r.secs >= 0.019 && r.secs < 5.0, "secs %f", r.secs);
    cr_assert(fabs(r.sends_per_sec - 100.0 / secs) <= 1e-6 * (100.0 / secs));
    cr_assert(fabs(r.recvs_per_sec - 61.0 / secs) <= 1e-6 * (61.0 / secs));
    cr_assert(fabs(r.bytes_per_sec - 61.0 * 8 / secs) <= 1e-6 * (61.0 * 8 / secs));
    cr_assert_eq(r.failures, 0);
    kc_chan_destroy(ch);
}

/* ---- registry ----------------------------------------------------------- */

struct finder {
    const char *name;
    kc_chan_t *want;
    size_t calls;
    size_t by_name;
    size_t by_ptr;
};

static void find_fn(void *user, kc_chan_t *ch)
{
    struct finder *f = user;
    f->calls++;
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    f->by_name += strcmp(s.name, f->name) == 0;
    f->by_ptr += ch == f->want;
}

Test(stats, foreach_visits_live_named_channels_only)
{
    struct finder f = { .name = "kt-foreach-alpha" };
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 4);
    kc_chan_set_name(ch, f.name);
    f.want = ch;
    size_t n = kc_chan_foreach(find_fn, &f);
    cr_assert_eq(n, f.calls, "returned %zu, visited %zu", n, f.calls);
    cr_assert_eq(f.by_name, 1);
    cr_assert_eq(f.by_ptr, 1);

    kc_chan_t *more[3];
    for (int i = 0; i < 3; i++)
        more[i] = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    struct finder g = { .name = "kt-foreach-alpha", .want = ch };
    size_t n2 = kc_chan_foreach(find_fn, &g);
    cr_assert_eq(n2, n + 3, "three more live channels");
    for (int i = 0; i < 3; i++)
        kc_chan_destroy(more[i]);

    kc_chan_destroy(ch);
    struct finder h = { .name = "kt-foreach-alpha", .want = ch };
    size_t n3 = kc_chan_foreach(find_fn, &h);
    cr_assert_eq(n3, n - 1);
    cr_assert_eq(h.by_name, 0, "a destroyed channel was visited");
    cr_assert_eq(h.by_ptr, 0, "a destroyed channel was visited");
}

Test(stats, channel_ids_are_unique_stable_and_never_reused)
{
    kc_chan_t *a = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *b = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    uint64_t ia = kc_chan_id(a), ib = kc_chan_id(b);
    cr_assert_neq(ia, ib);
    cr_assert_eq(kc_chan_id(a), ia, "id changed between calls");
    kc_chan_snapshot_t s;
    kc_chan_snapshot(a, &s);
    cr_assert_eq(s.id, ia);
    int v = 1;
    cr_assert_eq(kc_chan_send(a, &v, 0), 0);
    kc_chan_snapshot(a, &s);
    cr_assert_eq(s.id, ia, "snapshots of one channel share its id");
    kc_chan_destroy(a);
    /* a new channel may reuse the freed memory, never the id */
    for (int i = 0; i < 50; i++) {
        kc_chan_t *c = kt_chan(KC_BUFFERED, sizeof(int), 1);
        uint64_t ic = kc_chan_id(c);
        cr_assert(ic != ia && ic != ib, "id %llu reused", (unsigned long long)ic);
        kc_chan_destroy(c);
    }
    kc_chan_destroy(b);
}

/* ---- concurrent counting ------------------------------------------------ */

struct pump {
    kc_chan_t *ch;
    int n;
    bool send;
    int bad;
};

static void *pump_thread(void *arg)
{
    struct pump *p = arg;
    for (int i = 0; i < p->n; i++) {
        int v = i;
        int rc = p->send ? kc_chan_send(p->ch, &v, 20000) : kc_chan_recv(p->ch, &v, 20000);
        p->bad += rc != 0;
    }
    return NULL;
}

static void *snap_thread(void *arg)
{
    kc_chan_t *ch = arg;
    for (int i = 0; i < 2000; i++) {
        kc_chan_snapshot_t s;
        kc_chan_snapshot(ch, &s);
        (void)s;
    }
    return NULL;
}

Test(stats, counters_are_exact_under_concurrency)
{
    const int n = 20000 / KT_SCALE;
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 16);
    struct pump p[4];
    pthread_t t[5];
    for (int i = 0; i < 4; i++) {
        p[i] = (struct pump){ .ch = ch, .n = n, .send = i < 2 };
        kt_start(&t[i], pump_thread, &p[i]);
    }
    kt_start(&t[4], snap_thread, ch);
    for (int i = 0; i < 5; i++)
        kt_join(t[i], 60000);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(p[i].bad, 0);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.sends, 2u * (uint64_t)n);
    cr_assert_eq(s.recvs, 2u * (uint64_t)n);
    cr_assert_eq(s.bytes_sent, 2u * (uint64_t)n * sizeof(int));
    cr_assert_eq(s.bytes_recv, 2u * (uint64_t)n * sizeof(int));
    cr_assert_eq(s.len, 0);
    kc_chan_destroy(ch);
}

/* ---- issue 6 item 20: a snapshot is consistent under traffic ------------ */

/* Moves n elements one way (desc channels: descriptors of varying len). */
struct flow {
    kc_chan_t *ch;
    bool desc;              /* use the descriptor calls                  */
    bool send;              /* producer or consumer                      */
    int n;                  /* elements to move                          */
    int bad;                /* calls that did not return 0               */
};

static void *flow_thread(void *arg)
{
    struct flow *f = arg;
    for (int i = 0; i < f->n; i++) {
        int rc;
        if (f->desc) {
            kc_zdesc d = { .addr = NULL, .len = 1 + (size_t)(i % 100) };
            rc = f->send ? kc_chan_send_desc(f->ch, &d, 20000) : kc_chan_recv_desc(f->ch, &d, 20000);
        } else {
            int v = i;
            rc = f->send ? kc_chan_send(f->ch, &v, 20000) : kc_chan_recv(f->ch, &v, 20000);
        }
        f->bad += rc != 0;
    }
    return NULL;
}

/* Snapshots in a loop while the flows run; counts violations per rule and
 * records the first one. */
enum { R_ORDER, R_BYTES, R_MONO, R_LEN, R_N };
static const char *const rule_name[R_N] = { "recvs > sends", "bytes_recv > bytes_sent",
                                            "a counter went backwards", "len > sends - recvs" };

struct watcher {
    kc_chan_t *ch;
    _Atomic bool stop;      /* set by the test when the flows are done   */
    long snaps;             /* snapshots taken                           */
    uint64_t total;         /* sends the flows make in all               */
    long mid;               /* snapshots taken while traffic was moving  */
    long bad[R_N];          /* snapshots breaking each rule              */
    long nbad;              /* snapshots breaking any rule               */
    char first[200];        /* description of the first bad snapshot     */
};

static void *watch_thread(void *arg)
{
    struct watcher *w = arg;
    kc_chan_snapshot_t prev = { 0 };
    while (!atomic_load(&w->stop)) {
        kc_chan_snapshot_t s;
        kc_chan_snapshot(w->ch, &s);
        w->snaps++;
        bool broke[R_N] = {
            [R_ORDER] = s.recvs > s.sends,
            [R_BYTES] = s.bytes_recv > s.bytes_sent,
            [R_MONO] = s.sends < prev.sends || s.recvs < prev.recvs,
            [R_LEN] = s.recvs > s.sends || s.len > s.sends - s.recvs || s.len > s.cap,
        };
        bool any = false;
        for (int r = 0; r < R_N; r++) {
            w->bad[r] += broke[r];
            if (broke[r] && !any && w->nbad == 0)
                snprintf(w->first, sizeof w->first,
                         "%s: sends %llu recvs %llu bytes_sent %llu bytes_recv %llu len %llu",
                         rule_name[r], (unsigned long long)s.sends, (unsigned long long)s.recvs,
                         (unsigned long long)s.bytes_sent, (unsigned long long)s.bytes_recv,
                         (unsigned long long)s.len);
            any |= broke[r];
        }
        w->nbad += any;
        w->mid += s.sends > 0 && s.sends < w->total;
        prev = s;
        /* Yield between snapshots: a watcher that never lets go takes a CPU
         * and the channel lock from the four flow threads, and at load ~20
         * the rendezvous case once crawled past its 60 s join limit. The
         * test asserts that snapshots still land mid-traffic. */
        sched_yield();
    }
    return NULL;
}

static void snapshot_under_traffic(int kind, bool desc, size_t cap)
{
    const int n = 200000 / KT_SCALE;
    kc_chan_t *ch = NULL;
    int rc = desc ? kc_chan_make_desc(&ch, kind, cap) : kc_chan_make(&ch, kind, sizeof(int), cap);
    cr_assert_eq(rc, 0);
    struct flow f[4];
    struct watcher w = { .ch = ch, .total = 2u * (uint64_t)n };
    pthread_t t[4], tw;
    kt_start(&tw, watch_thread, &w);
    for (int i = 0; i < 4; i++) {
        f[i] = (struct flow){ .ch = ch, .desc = desc, .send = i % 2 == 0, .n = n };
        kt_start(&t[i], flow_thread, &f[i]);
    }
    for (int i = 0; i < 4; i++)
        kt_join(t[i], 60000);
    atomic_store(&w.stop, true);
    kt_join(tw, 60000);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(f[i].bad, 0);
    /* Without snapshots taken mid-traffic the checks below prove nothing. */
    cr_assert_gt(w.mid, 0, "no snapshot was taken while traffic moved (%ld in all)", w.snaps);
    cr_assert_eq(w.nbad, 0,
                 "kind %d desc %d: %ld of %ld snapshots inconsistent (%s %ld, %s %ld, %s %ld, "
                 "%s %ld); first: %s", kind, desc, w.nbad, w.snaps, rule_name[0], w.bad[0],
                 rule_name[1], w.bad[1], rule_name[2], w.bad[2], rule_name[3], w.bad[3], w.first);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.sends, 2u * (uint64_t)n);
    cr_assert_eq(s.recvs, 2u * (uint64_t)n);
    cr_assert_eq(s.bytes_sent, s.bytes_recv);
    cr_assert_eq(s.len, 0);
    kc_chan_destroy(ch);
}

Test(stats, snapshot_consistent_under_traffic_buffered) { snapshot_under_traffic(KC_BUFFERED, false, 8); }
Test(stats, snapshot_consistent_under_traffic_buffered_desc) { snapshot_under_traffic(KC_BUFFERED, true, 8); }
Test(stats, snapshot_consistent_under_traffic_rendezvous) { snapshot_under_traffic(KC_RENDEZVOUS, false, 0); }
Test(stats, snapshot_consistent_under_traffic_unlimited) { snapshot_under_traffic(KC_UNLIMITED, false, 0); }
