/* test_stress_pc: P producers x C consumers; every message arrives exactly once. */
#include "kt.h"

enum { P = 4, C = 4 };

struct prod {
    kc_chan_t *ch;
    int id;
    int per;
    const kc_cancel_t *cancel; /* use the _c forms with a token never triggered */
    int bad;
};

struct cons {
    kc_chan_t *ch;
    const kc_cancel_t *cancel;
    uint64_t count;
    uint64_t sum;
    int *last;      /* per producer: last sequence seen (FIFO per producer) */
    int order_errs;
    int bad;
    unsigned char *seen; /* shared bitmap slot per value; written only by the receiver of it */
};

/* Values encode producer and sequence: id * per + seq + 1 (never 0). */
static void *produce(void *arg)
{
    struct prod *p = arg;
    for (int i = 0; i < p->per; i++) {
        int v = p->id * p->per + i + 1;
        int rc = p->cancel ? kc_chan_send_c(p->ch, &v, -1, p->cancel)
                           : kc_chan_send(p->ch, &v, -1);
        if (rc != 0) {
            p->bad++;
            break;
        }
    }
    return NULL;
}

static void *consume(void *arg)
{
    struct cons *c = arg;
    for (;;) {
        int v;
        int rc = c->cancel ? kc_chan_recv_c(c->ch, &v, -1, c->cancel)
                           : kc_chan_recv(c->ch, &v, -1);
        if (rc == -EPIPE)
            break;
        if (rc != 0) {
            c->bad++;
            break;
        }
        c->count++;
        c->sum += (uint64_t)v;
        if (c->seen[v]++ != 0)
            c->bad++;
        /* one consumer sees each producer's values in send order */
        int prod = (v - 1) / (int)c->last[P];
        int seq = (v - 1) % (int)c->last[P];
        if (seq <= c->last[prod])
            c->order_errs++;
        c->last[prod] = seq;
    }
    return NULL;
}

static void run(int kind, size_t cap, int per, bool cancellable)
{
    kc_chan_t *ch = kt_chan(kind, sizeof(int), cap);
    kc_cancel_t *tok = cancellable ? kt_token(NULL) : NULL;
    int total = P * per;
    unsigned char *seen = calloc((size_t)total + 1, 1);
    cr_assert_not_null(seen);
    struct prod pr[P];
    struct cons co[C];
    int last[C][P + 1];
    pthread_t tp[P], tc[C];
    for (int i = 0; i < C; i++) {
        for (int k = 0; k < P; k++)
            last[i][k] = -1;
        last[i][P] = per; /* smuggles `per` to the consumer */
        co[i] = (struct cons){ .ch = ch, .cancel = tok, .last = last[i], .seen = seen };
        kt_start(&tc[i], consume, &co[i]);
    }
    uint64_t t0 = kt_now_ms();
    for (int i = 0; i < P; i++) {
        pr[i] = (struct prod){ .ch = ch, .id = i, .per = per, .cancel = tok };
        kt_start(&tp[i], produce, &pr[i]);
    }
    for (int i = 0; i < P; i++)
        kt_join(tp[i], 100000);
    kc_chan_close(ch);
    for (int i = 0; i < C; i++)
        kt_join(tc[i], 30000);
    uint64_t el = kt_now_ms() - t0;

    uint64_t count = 0, sum = 0;
    for (int i = 0; i < P; i++)
        cr_assert_eq(pr[i].bad, 0, "producer %d failed", i);
    for (int i = 0; i < C; i++) {
        cr_assert_eq(co[i].bad, 0, "consumer %d: bad result or duplicate", i);
        cr_assert_eq(co[i].order_errs, 0, "consumer %d saw a producer's values out of order", i);
        count += co[i].count;
        sum += co[i].sum;
    }
    uint64_t want_sum = (uint64_t)total * ((uint64_t)total + 1) / 2;
    cr_assert_eq(count, (uint64_t)total, "received %llu of %d", (unsigned long long)count, total);
    cr_assert_eq(sum, want_sum, "sum %llu want %llu", (unsigned long long)sum,
                 (unsigned long long)want_sum);
    kc_chan_snapshot_t s;
    kc_chan_snapshot(ch, &s);
    cr_assert_eq(s.sends, (uint64_t)total);
    cr_assert_eq(s.recvs, (uint64_t)total);
    cr_log_info("kind %d cap %zu: %d msgs in %llu ms", kind, cap, total, (unsigned long long)el);
    free(seen);
    kc_chan_destroy(ch);
    kc_cancel_destroy(tok);
}

Test(stress_pc, buffered_4x4x100k) { run(KC_BUFFERED, 64, 100000 / KT_SCALE, false); }
Test(stress_pc, buffered_cap1_4x4) { run(KC_BUFFERED, 1, 20000 / KT_SCALE, false); }
Test(stress_pc, rendezvous_4x4x20k) { run(KC_RENDEZVOUS, 0, 20000 / KT_SCALE, false); }
Test(stress_pc, unlimited_4x4) { run(KC_UNLIMITED, 0, 50000 / KT_SCALE, false); }
Test(stress_pc, cancellable_forms_buffered) { run(KC_BUFFERED, 16, 20000 / KT_SCALE, true); }
