/* test_chan_basic: buffered FIFO, try-once results, close semantics, sizes, bad arguments. */
#include "kt.h"

Test(chan_basic, buffered_fifo_order)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 4);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++) {
            int v = round * 10 + i;
            cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
            cr_assert_eq(kc_chan_len(ch), (size_t)i + 1);
        }
        for (int i = 0; i < 4; i++) {
            int v = -1;
            cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
            cr_assert_eq(v, round * 10 + i, "round %d: got %d, want %d", round, v, round * 10 + i);
        }
        cr_assert_eq(kc_chan_len(ch), 0);
    }
    kc_chan_destroy(ch);
}

Test(chan_basic, interleaved_fifo_wraps_around)
{
    /* Head and tail chase each other around a small ring many times. */
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 3);
    int next_send = 0, next_recv = 0;
    for (int step = 0; step < 1000; step++) {
        int burst = step % 3 + 1;
        for (int i = 0; i < burst && kc_chan_len(ch) < 3; i++) {
            cr_assert_eq(kc_chan_send(ch, &next_send, 0), 0);
            next_send++;
        }
        int v;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
        cr_assert_eq(v, next_recv, "step %d: got %d want %d", step, v, next_recv);
        next_recv++;
    }
    kc_chan_destroy(ch);
}

Test(chan_basic, full_try_send_is_eagain_and_changes_nothing)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 2);
    int a = 1, b = 2, c = 3;
    cr_assert_eq(kc_chan_send(ch, &a, 0), 0);
    cr_assert_eq(kc_chan_send(ch, &b, 0), 0);
    cr_assert_eq(kc_chan_send(ch, &c, 0), -EAGAIN);
    cr_assert_eq(kc_chan_send(ch, &c, 0), -EAGAIN);
    cr_assert_eq(kc_chan_len(ch), 2);
    int v;
    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN, "the rejected element must not be queued");
    kc_chan_destroy(ch);
}

Test(chan_basic, empty_try_recv_is_eagain_and_leaves_out_alone)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED, KC_UNLIMITED, KC_CONFLATED };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 4);
        int v = 12345;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), -EAGAIN, "kind %d", kinds[k]);
        cr_assert_eq(v, 12345, "failed recv wrote its output (kind %d)", kinds[k]);
        kc_chan_destroy(ch);
    }
}

Test(chan_basic, closed_send_is_epipe_nonblocking_and_blocking)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 4);
    int v = 7;
    cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    kc_chan_close(ch);
    cr_assert(kc_chan_is_closed(ch));
    cr_assert_eq(kc_chan_send(ch, &v, 0), -EPIPE);
    cr_assert_eq(kc_chan_send(ch, &v, 100), -EPIPE);
    cr_assert_eq(kc_chan_send(ch, &v, -1), -EPIPE);
    cr_assert_eq(kc_chan_len(ch), 1, "a send on a closed channel must not queue");
    kc_chan_destroy(ch);
}

Test(chan_basic, closed_recv_drains_then_epipe)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 4);
    for (int i = 1; i <= 3; i++)
        cr_assert_eq(kc_chan_send(ch, &i, 0), 0);
    kc_chan_close(ch);
    kc_chan_close(ch); /* idempotent */
    int v = 0;
    cr_assert_eq(kc_chan_recv(ch, &v, 0), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(kc_chan_recv(ch, &v, -1), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(kc_chan_recv(ch, &v, 100), 0);
    cr_assert_eq(v, 3);
    uint64_t t0 = kt_now_ms();
    cr_assert_eq(kc_chan_recv(ch, &v, 0), -EPIPE);
    cr_assert_eq(kc_chan_recv(ch, &v, -1), -EPIPE, "closed+drained must not block");
    cr_assert_eq(kc_chan_recv(ch, &v, 10000), -EPIPE);
    cr_assert_lt(kt_now_ms() - t0, KT_PROMPT_MS);
    kc_chan_destroy(ch);
}

Test(chan_basic, closed_empty_recv_every_kind)
{
    int kinds[] = { KC_RENDEZVOUS, KC_BUFFERED, KC_UNLIMITED, KC_CONFLATED };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 2);
        kc_chan_close(ch);
        int v = 0;
        cr_assert_eq(kc_chan_recv(ch, &v, 0), -EPIPE, "kind %d", kinds[k]);
        cr_assert_eq(kc_chan_recv(ch, &v, -1), -EPIPE, "kind %d", kinds[k]);
        cr_assert_eq(kc_chan_send(ch, &v, 0), -EPIPE, "kind %d", kinds[k]);
        cr_assert_eq(kc_chan_send(ch, &v, -1), -EPIPE, "kind %d", kinds[k]);
        kc_chan_destroy(ch);
    }
}

Test(chan_basic, closed_unlimited_and_conflated_drain)
{
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof(int), 0);
    kc_chan_t *c = kt_chan(KC_CONFLATED, sizeof(int), 0);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(kc_chan_send(u, &i, 0), 0);
        cr_assert_eq(kc_chan_send(c, &i, 0), 0);
    }
    kc_chan_close(u);
    kc_chan_close(c);
    int v;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(kc_chan_recv(u, &v, -1), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(kc_chan_recv(u, &v, -1), -EPIPE);
    cr_assert_eq(kc_chan_recv(c, &v, -1), 0);
    cr_assert_eq(v, 9);
    cr_assert_eq(kc_chan_recv(c, &v, -1), -EPIPE);
    kc_chan_destroy(u);
    kc_chan_destroy(c);
}

Test(chan_basic, len_cap_kind_elem_size_per_kind)
{
    struct {
        int kind;
        size_t cap_in, cap_out;
    } cases[] = {
        { KC_RENDEZVOUS, 0, 0 }, { KC_RENDEZVOUS, 16, 0 }, { KC_BUFFERED, 1, 1 },
        { KC_BUFFERED, 7, 7 },   { KC_UNLIMITED, 0, SIZE_MAX }, { KC_UNLIMITED, 4, SIZE_MAX },
        { KC_CONFLATED, 0, 1 },  { KC_CONFLATED, 9, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kc_chan_t *ch = kt_chan(cases[i].kind, 24, cases[i].cap_in);
        cr_assert_eq(kc_chan_kind(ch), cases[i].kind);
        cr_assert_eq(kc_chan_elem_size(ch), 24);
        cr_assert_eq(kc_chan_cap(ch), cases[i].cap_out, "case %zu: cap %zu want %zu", i,
                     kc_chan_cap(ch), cases[i].cap_out);
        cr_assert_eq(kc_chan_len(ch), 0);
        cr_assert_not(kc_chan_is_closed(ch));
        kc_chan_destroy(ch);
    }
}

Test(chan_basic, len_tracks_elements_per_kind)
{
    char e[24] = { 0 };
    kc_chan_t *b = kt_chan(KC_BUFFERED, sizeof e, 3);
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof e, 2);
    kc_chan_t *c = kt_chan(KC_CONFLATED, sizeof e, 0);
    kc_chan_t *r = kt_chan(KC_RENDEZVOUS, sizeof e, 0);
    for (size_t i = 1; i <= 3; i++) {
        cr_assert_eq(kc_chan_send(b, e, 0), 0);
        cr_assert_eq(kc_chan_send(u, e, 0), 0);
        cr_assert_eq(kc_chan_send(c, e, 0), 0);
        cr_assert_eq(kc_chan_len(b), i);
        cr_assert_eq(kc_chan_len(u), i);
        cr_assert_eq(kc_chan_len(c), 1);
    }
    cr_assert_eq(kc_chan_send(r, e, 0), -EAGAIN);
    cr_assert_eq(kc_chan_len(r), 0);
    cr_assert_eq(kc_chan_recv(b, e, 0), 0);
    cr_assert_eq(kc_chan_recv(u, e, 0), 0);
    cr_assert_eq(kc_chan_recv(c, e, 0), 0);
    cr_assert_eq(kc_chan_len(b), 2);
    cr_assert_eq(kc_chan_len(u), 2);
    cr_assert_eq(kc_chan_len(c), 0);
    kc_chan_destroy(b);
    kc_chan_destroy(u);
    kc_chan_destroy(c);
    kc_chan_destroy(r);
}

Test(chan_basic, elements_are_copied_whole)
{
    struct big {
        uint64_t seq;
        char text[1000];
    };
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(struct big), 2);
    struct big in, out;
    memset(&in, 0, sizeof in);
    in.seq = 0x0123456789abcdefULL;
    for (size_t i = 0; i < sizeof in.text; i++)
        in.text[i] = (char)('a' + i % 26);
    cr_assert_eq(kc_chan_send(ch, &in, 0), 0);
    struct big expect = in;
    memset(&in, 0xff, sizeof in); /* the channel holds its own copy */
    memset(&out, 0, sizeof out);
    cr_assert_eq(kc_chan_recv(ch, &out, 0), 0);
    cr_assert_eq(memcmp(&out, &expect, sizeof out), 0);
    kc_chan_destroy(ch);
}

Test(chan_basic, largest_element_size)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, KC_ELEM_MAX, 1);
    unsigned char *in = malloc(KC_ELEM_MAX), *out = calloc(1, KC_ELEM_MAX);
    cr_assert(in && out);
    for (size_t i = 0; i < KC_ELEM_MAX; i++)
        in[i] = (unsigned char)(i * 31 + 7);
    cr_assert_eq(kc_chan_send(ch, in, 0), 0);
    cr_assert_eq(kc_chan_recv(ch, out, 0), 0);
    cr_assert_eq(memcmp(in, out, KC_ELEM_MAX), 0);
    free(in);
    free(out);
    kc_chan_destroy(ch);
}

Test(chan_basic, bad_arguments_are_einval)
{
    kc_chan_t *ch = NULL;
    cr_assert_eq(kc_chan_make(&ch, KC_BUFFERED, 0, 4), -EINVAL, "elem_size 0");
    cr_assert_eq(kc_chan_make(&ch, KC_RENDEZVOUS, 0, 0), -EINVAL, "elem_size 0");
    cr_assert_eq(kc_chan_make(&ch, KC_BUFFERED, sizeof(int), 0), -EINVAL, "buffered cap 0");
    cr_assert_eq(kc_chan_make(&ch, KC_BUFFERED, (size_t)KC_ELEM_MAX + 1, 1), -EINVAL,
                 "elem_size above KC_ELEM_MAX");
    cr_assert_eq(kc_chan_make(&ch, -1, sizeof(int), 4), -EINVAL, "kind -1");
    cr_assert_eq(kc_chan_make(&ch, 4, sizeof(int), 4), -EINVAL, "kind 4");
    cr_assert_eq(kc_chan_make(&ch, 1000, sizeof(int), 4), -EINVAL, "kind 1000");
    cr_assert_eq(kc_chan_make_desc(&ch, 4, 4), -EINVAL, "desc kind 4");
    cr_assert_eq(kc_chan_make_desc(&ch, KC_BUFFERED, 0), -EINVAL, "desc buffered cap 0");
}

Test(chan_basic, destroy_null_is_noop)
{
    kc_chan_destroy(NULL);
    kc_cancel_destroy(NULL);
    kc_scope_destroy(NULL);
}

Test(chan_basic, utilities)
{
    uint64_t a = kc_now_ns();
    kt_sleep_ms(5);
    uint64_t b = kc_now_ns();
    cr_assert_gt(b, a);
    cr_assert_geq(b - a, 4000000u, "kc_now_ns advanced %llu ns over a 5 ms sleep",
                  (unsigned long long)(b - a));
    /* CLOCK_MONOTONIC, same clock the tests use */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t mono = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    cr_assert_geq(mono, b);
    cr_assert_lt(mono - b, 1000000000u);

    int codes[] = { -EAGAIN, -ETIME, -ECANCELED, -EPIPE, -EINVAL, -ENOMEM };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = kc_strerror(codes[i]);
        cr_assert_not_null(s);
        cr_assert_gt(strlen(s), 0);
    }
    cr_assert_not_null(kc_strerror(0));
    cr_assert_not_null(kc_strerror(-123456));
    cr_assert_str_neq(kc_strerror(-EAGAIN), kc_strerror(-EPIPE));
}

/* A blocked single operation waits in one cache line and carries elements of
 * up to 8 bytes inside it (kc_wait1_t); larger ones go through the caller's
 * buffer. Both ways, for sizes around that boundary, on each side: the bytes
 * arrive whole and nothing next to the receiver's buffer is written. */
struct sized_op {
    kc_chan_t *ch;          /* the channel                                */
    bool send;              /* the blocked side sends (else receives)     */
    size_t esz;             /* element size                               */
    unsigned char buf[4096 + 32]; /* element, followed by a guard         */
    int rc;                 /* result of the blocking call                */
    struct kt_park park;    /* blocked/done signalling                    */
};

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 13);
}

static void *sized_thread(void *arg)
{
    struct sized_op *o = arg;
    kt_park_enter(&o->park);
    o->rc = o->send ? kc_chan_send(o->ch, o->buf, KT_PROMPT_MS)
                    : kc_chan_recv(o->ch, o->buf, KT_PROMPT_MS);
    atomic_store(&o->park.done, true);
    return NULL;
}

Test(chan_basic, blocked_hand_off_copies_exact_bytes_of_every_size, .timeout = 60)
{
    static const size_t sizes[] = {1, 3, 7, 8, 9, 16, 64, 4096};
    static const int kinds[] = {KC_RENDEZVOUS, KC_UNLIMITED};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            for (int send = 0; send < 2; send++) {
                /* Unlimited channels never block senders. */
                if (kinds[k] == KC_UNLIMITED && send)
                    continue;
                size_t esz = sizes[s];
                static struct sized_op o;
                memset(&o, 0, sizeof o);
                o.ch = kt_chan(kinds[k], esz, 0);
                o.send = send;
                o.esz = esz;
                unsigned char mine[4096 + 32], want[4096 + 32];
                if (send) {
                    fill(o.buf, esz, 1u + (unsigned)s);
                    memset(mine, 0xa5, sizeof mine);
                } else {
                    fill(mine, esz, 101u + (unsigned)s);
                    memset(o.buf, 0xa5, sizeof o.buf);
                }
                pthread_t t;
                kt_start(&t, sized_thread, &o);
                kt_wait_parked(&o.park);
                int rc = send ? kc_chan_recv(o.ch, mine, 0) : kc_chan_send(o.ch, mine, 0);
                kt_join(t, KT_PROMPT_MS);
                cr_assert_eq(rc, 0, "kind %d size %zu %s: other side rc %d", kinds[k], esz,
                             send ? "blocked send" : "blocked recv", rc);
                cr_assert_eq(o.rc, 0, "kind %d size %zu: blocked side rc %d", kinds[k], esz,
                             o.rc);
                /* The receiver's buffer: the element, then untouched guard bytes. */
                const unsigned char *got = send ? mine : o.buf;
                memset(want, 0xa5, sizeof want);
                fill(want, esz, send ? 1u + (unsigned)s : 101u + (unsigned)s);
                cr_assert_eq(memcmp(got, want, esz + 32), 0,
                             "kind %d size %zu %s: bytes differ", kinds[k], esz,
                             send ? "blocked send" : "blocked recv");
                kc_chan_destroy(o.ch);
            }
}
