/* test_chan_kinds: rendezvous hand-over, conflation, unlimited growth, zero-copy descriptors. */
#include "kt.h"

/* ---- rendezvous --------------------------------------------------------- */

Test(chan_kinds, rendezvous_try_without_peer_is_eagain)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int v = 5;
    cr_assert_eq(kc_chan_send(ch, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN, "a failed rendezvous send must leave nothing");
    cr_assert_eq(v, 5);
    cr_assert_eq(kc_chan_len(ch), 0);
    kc_chan_destroy(ch);
}

Test(chan_kinds, rendezvous_blocked_receiver_gets_try_send)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    /* A receiver is waiting, so a try-once send can hand over at once. */
    kt_expect_handoff(ch, 10000, 4242, 0);
    kc_chan_destroy(ch);
}

Test(chan_kinds, rendezvous_blocked_receiver_gets_blocking_send)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kt_expect_handoff(ch, -1, 77, 10000);
    kc_chan_destroy(ch);
}

Test(chan_kinds, rendezvous_sender_blocks_until_receiver_arrives)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    pthread_t t;
    struct kt_op s;
    kt_op_start(&t, &s, ch, KT_SEND, 99, 10000, NULL);
    kt_wait_parked(&s.park);
    kt_sleep_ms(50);
    cr_assert_not(atomic_load(&s.park.done), "rendezvous send returned (%d) without a receiver",
                  s.rc);
    cr_assert_eq(kc_chan_len(ch), 0);
    int v = 0;
    /* A sender is waiting, so a try-once receive takes its element. */
    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(v, 99);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN, "the element was handed over once");
    kc_chan_destroy(ch);
}

struct seq_sender {
    kc_chan_t *ch;
    int n;
    int failures;
};

static void *seq_send_thread(void *arg)
{
    struct seq_sender *s = arg;
    for (int i = 0; i < s->n; i++)
        if (kc_chan_send(s->ch, &i, 10000) != 0)
            s->failures++;
    return NULL;
}

Test(chan_kinds, rendezvous_stream_in_order)
{
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    struct seq_sender s = { .ch = ch, .n = 5000 / KT_SCALE };
    pthread_t t;
    kt_start(&t, seq_send_thread, &s);
    for (int i = 0; i < s.n; i++) {
        int v = -1;
        int rc = kc_chan_recv(ch, &v, 10000);
        cr_assert_eq(rc, 0, "recv %d: %d", i, rc);
        cr_assert_eq(v, i);
    }
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.failures, 0);
    kc_chan_destroy(ch);
}

/* ---- conflated ---------------------------------------------------------- */

Test(chan_kinds, conflated_keeps_newest_and_reports_replaced)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *ch = kt_chan(KC_CONFLATED, sizeof(int), 0);
    kc_chan_set_undelivered(ch, kt_drops_fn, &d);
    for (int i = 1; i <= 5; i++) {
        cr_assert_eq(kc_chan_send(ch, &i, 0), 0, "conflated send never fails while open");
        cr_assert_eq(kc_chan_len(ch), 1);
    }
    cr_assert_eq(kt_drops_count(&d), 4);
    for (int i = 1; i <= 4; i++)
        cr_assert_eq(d.vals[i - 1], i, "replaced elements reported oldest first");
    int v = 0;
    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
    /* a send into an empty conflated channel replaces nothing */
    int w = 6;
    cr_assert_eq(kc_chan_send(ch, &w, 0), 0);
    cr_assert_eq(kt_drops_count(&d), 4);
    kc_chan_snapshot_t snap;
    kc_chan_snapshot(ch, &snap);
    cr_assert_eq(snap.dropped, 4);
    kc_chan_destroy(ch); /* the buffered 6 is undelivered too */
    cr_assert_eq(kt_drops_count(&d), 5);
    cr_assert_eq(d.vals[4], 6);
}

Test(chan_kinds, conflated_send_never_blocks)
{
    kc_chan_t *ch = kt_chan(KC_CONFLATED, sizeof(int), 0);
    uint64_t t0 = kt_now_ms();
    for (int i = 0; i < 100; i++)
        cr_assert_eq(kc_chan_send(ch, &i, -1), 0);
    cr_assert_lt(kt_now_ms() - t0, KT_PROMPT_MS);
    int v;
    cr_assert_eq(kc_chan_recv(ch, &v, -1), 0);
    cr_assert_eq(v, 99);
    kc_chan_destroy(ch);
}

Test(chan_kinds, conflated_blocked_receiver_gets_value)
{
    kc_chan_t *ch = kt_chan(KC_CONFLATED, sizeof(int), 0);
    kt_expect_handoff(ch, 10000, 31, 0);
    kc_chan_destroy(ch);
}

/* ---- unlimited ---------------------------------------------------------- */

static void unlimited_grows(size_t initial)
{
    const int n = 100000;
    kc_chan_t *ch = kt_chan(KC_UNLIMITED, sizeof(int), initial);
    for (int i = 0; i < n; i++) {
        int rc = kc_chan_send(ch, &i, 0);
        cr_assert_eq(rc, 0, "send %d into unlimited: %d", i, rc);
    }
    cr_assert_eq(kc_chan_len(ch), (size_t)n);
    cr_assert_eq(kc_chan_cap(ch), SIZE_MAX);
    for (int i = 0; i < n; i++) {
        int v = -1;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
        if (v != i)
            cr_assert_fail("element %d: got %d", i, v);
    }
    int v;
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
    cr_assert_eq(kc_chan_len(ch), 0);
    kc_chan_destroy(ch);
}

Test(chan_kinds, unlimited_grows_from_small_capacity) { unlimited_grows(4); }
Test(chan_kinds, unlimited_grows_from_default_capacity) { unlimited_grows(0); }

Test(chan_kinds, unlimited_grows_while_wrapped)
{
    /* Growth when the ring's live part wraps around the end of the storage. */
    kc_chan_t *ch = kt_chan(KC_UNLIMITED, sizeof(int), 4);
    int next_send = 0, next_recv = 0, v;
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < 3 + round * 5; i++) {
            cr_assert_eq(kc_chan_send(ch, &next_send, 0), 0);
            next_send++;
        }
        for (int i = 0; i < 2 + round * 3; i++) {
            cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
            cr_assert_eq(v, next_recv, "round %d: got %d want %d", round, v, next_recv);
            next_recv++;
        }
    }
    while (next_recv < next_send) {
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
        cr_assert_eq(v, next_recv);
        next_recv++;
    }
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
    kc_chan_destroy(ch);
}

/* ---- zero-copy descriptors --------------------------------------------- */

static void desc_roundtrip(int kind, size_t cap)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make_desc(&ch, kind, cap), 0);
    cr_assert_eq(kc_chan_kind(ch), kind);
    cr_assert_eq(kc_chan_elem_size(ch), sizeof(kc_zdesc));
    char *payload = malloc(4096);
    cr_assert_not_null(payload);
    memset(payload, 'p', 4096);
    kc_zdesc in = {
        .addr = payload + 100,
        .len = 3000,
        .region = 7,
        .flags = KC_ZDESC_READONLY | 0x10000u,
        .offset = 0x123456789ull,
    };
    cr_assert_eq(kc_chan_send_desc(ch, &in, 0), 0);
    kc_zdesc out;
    memset(&out, 0, sizeof out);
    cr_assert_eq(kc_chan_recv_desc(ch, &out, 0), 0);
    cr_assert_eq(out.addr, payload + 100, "pointer must be passed unchanged (no copy)");
    cr_assert_eq(out.len, 3000);
    cr_assert_eq(out.region, 7);
    cr_assert_eq(out.flags, KC_ZDESC_READONLY | 0x10000u);
    cr_assert_eq(out.offset, 0x123456789ull);
    /* the same bytes, not a copy: a write through one is seen through the other */
    ((char *)out.addr)[0] = 'X';
    cr_assert_eq(payload[100], 'X');
    free(payload);
    kc_chan_destroy(ch);
}

Test(chan_kinds, desc_buffered_fields_unchanged) { desc_roundtrip(KC_BUFFERED, 4); }
Test(chan_kinds, desc_unlimited_fields_unchanged) { desc_roundtrip(KC_UNLIMITED, 0); }
Test(chan_kinds, desc_conflated_fields_unchanged) { desc_roundtrip(KC_CONFLATED, 0); }

struct desc_peer {
    kc_chan_t *ch;
    kc_zdesc d;
    int rc;
    struct kt_park park;
};

static void *desc_recv_thread(void *arg)
{
    struct desc_peer *p = arg;
    kt_park_enter(&p->park);
    p->rc = kc_chan_recv_desc(p->ch, &p->d, 10000);
    atomic_store(&p->park.done, true);
    return NULL;
}

Test(chan_kinds, desc_rendezvous_hands_over_pointer)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make_desc(&ch, KC_RENDEZVOUS, 0), 0);
    kc_zdesc in = { .addr = NULL, .len = 64, .region = 3, .flags = KC_ZDESC_FREE, .offset = 64 };
    in.addr = malloc(64);
    cr_assert_not_null(in.addr);
    cr_assert_eq(kc_chan_send_desc(ch, &in, 0), -EAGAIN, "no receiver yet");
    struct desc_peer p = { .ch = ch, .rc = 1 };
    pthread_t t;
    kt_start(&t, desc_recv_thread, &p);
    kt_wait_parked(&p.park);
    cr_assert_eq(kc_chan_send_desc(ch, &in, 10000), 0);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(p.rc, 0);
    cr_assert_eq(p.d.addr, in.addr);
    cr_assert_eq(p.d.len, 64);
    cr_assert_eq(p.d.region, 3);
    cr_assert_eq(p.d.flags, KC_ZDESC_FREE);
    cr_assert_eq(p.d.offset, 64);
    free(p.d.addr); /* KC_ZDESC_FREE: the receiver frees */
    kc_chan_destroy(ch);
}

Test(chan_kinds, desc_ops_on_plain_channel_are_einval)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 4);
    kc_cancel_t *tok = kt_token(NULL);
    kc_zdesc d = { .addr = &d, .len = 1 };
    cr_assert_eq(kc_chan_send_desc(ch, &d, 0), -EINVAL);
    cr_assert_eq(kc_chan_send_desc_c(ch, &d, 0, tok), -EINVAL);
    cr_assert_eq(kc_chan_len(ch), 0, "a failed desc send must change nothing");
    int v = 1;
    cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    cr_assert_eq(kc_chan_recv_desc(ch, &d, 0), -EINVAL);
    cr_assert_eq(kc_chan_recv_desc_c(ch, &d, 0, tok), -EINVAL);
    cr_assert_eq(kc_chan_len(ch), 1, "a failed desc recv must change nothing");
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
}

Test(chan_kinds, desc_bytes_counted_from_len)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make_desc(&ch, KC_BUFFERED, 8), 0);
    static char area[1000];
    size_t lens[] = { 100, 200, 300, 0, 4096 * 1024 };
    uint64_t total = 0;
    for (size_t i = 0; i < 5; i++) {
        kc_zdesc d = { .addr = area, .len = lens[i] };
        cr_assert_eq(kc_chan_send_desc(ch, &d, 0), 0);
        total += lens[i];
    }
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.sends, 5);
    cr_assert_eq(s.bytes_sent, total, "bytes_sent %llu want %llu",
                 (unsigned long long)s.bytes_sent, (unsigned long long)total);
    cr_assert_eq(s.bytes_recv, 0);
    for (size_t i = 0; i < 3; i++) {
        kc_zdesc d;
        cr_assert_eq(kc_chan_recv_desc(ch, &d, 0), 0);
        cr_assert_eq(d.len, lens[i]);
    }
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.recvs, 3);
    cr_assert_eq(s.bytes_recv, 600);
    kc_chan_destroy(ch);
}

Test(chan_kinds, desc_closed_and_timeouts)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make_desc(&ch, KC_BUFFERED, 1), 0);
    kc_zdesc d = { .addr = &d, .len = 8 };
    cr_assert_eq(kc_chan_recv_desc(ch, &d, 0), -EAGAIN);
    cr_assert_eq(kc_chan_send_desc(ch, &d, 0), 0);
    cr_assert_eq(kc_chan_send_desc(ch, &d, 0), -EAGAIN);
    kc_cancel_t *tok = kt_token(NULL);
    kc_cancel_trigger(tok);
    cr_assert_eq(kc_chan_send_desc_c(ch, &d, -1, tok), -ECANCELED);
    kc_chan_close(ch);
    cr_assert_eq(kc_chan_send_desc(ch, &d, 0), -EPIPE);
    kc_zdesc out;
    cr_assert_eq(kc_chan_recv_desc(ch, &out, -1), 0);
    cr_assert_eq(out.addr, (void *)&d);
    cr_assert_eq(kc_chan_recv_desc(ch, &out, -1), -EPIPE);
    kc_cancel_destroy(tok);
    kc_chan_destroy(ch);
}

/* ---- issue 6 item 22: a huge buffered capacity costs nothing up front ---- */

static size_t rss_bytes(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%ld %ld", &pages, &res), 2);
    fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

Test(chan_kinds, huge_buffered_capacity_is_not_touched_at_creation, .timeout = 120)
{
    /* 2^26 cells of 16 bytes: 1 GiB if every cell were written at creation. */
    const size_t cap = (size_t)1 << 26, limit = (size_t)64 << 20;
    size_t before = rss_bytes();
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int64_t), cap);
    size_t grew = rss_bytes() - before;
    cr_assert_lt(grew, limit, "creating a %zu-cell channel made RSS grow by %zu MiB", cap,
                 grew >> 20);
    cr_assert_eq(kc_chan_cap(ch), cap);
    /* And it works as a channel: a long stretch of cells, in order. */
    for (int64_t i = 0; i < 100000; i++)
        cr_assert_eq(kc_chan_send(ch, &i, 0), 0);
    for (int64_t i = 0; i < 100000; i++) {
        int64_t v = -1;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
        cr_assert_eq(v, i);
    }
    int64_t v = -1;
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
    kc_chan_destroy(ch);
}

/* Lazily initialised cells must behave on every lap, for power-of-two and
 * other capacities, small and mapped. */
static void laps(size_t cap)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int64_t), cap);
    int64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 5; round++) {
        for (size_t i = 0; i < cap; i++, next_in++)
            cr_assert_eq(kc_chan_send(ch, &next_in, 0), 0, "cap %zu round %d", cap, round);
        cr_assert_eq(kc_chan_send(ch, &next_in, 0), -EAGAIN, "cap %zu: full", cap);
        for (size_t i = 0; i < cap / 2 + 1; i++, next_out++) {
            int64_t v = -1;
            cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
            cr_assert_eq(v, next_out, "cap %zu round %d", cap, round);
        }
        for (size_t i = 0; i < cap / 2 + 1; i++, next_in++)
            cr_assert_eq(kc_chan_send(ch, &next_in, 0), 0);
        for (size_t i = 0; i < cap; i++, next_out++) {
            int64_t v = -1;
            cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
            cr_assert_eq(v, next_out, "cap %zu round %d", cap, round);
        }
        int64_t v;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN);
    }
    kc_chan_destroy(ch);
}

Test(chan_kinds, buffered_cells_work_on_every_lap)
{
    size_t caps[] = { 1, 2, 3, 7, 64, 1000, 4096, 5000, 70000 };
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        laps(caps[i]);
}
