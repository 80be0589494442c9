/* The MPMC ring: empty, full, wrap-around, many producers and consumers
 * (every item delivered exactly once), and repair of cells left half-done by
 * a process that died inside push or pop. */
#include "ring.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

static void *ring_mem(uint32_t cap)
{
    void *m = aligned_alloc(128, (fshm__ring_bytes(cap) + 127) / 128 * 128);
    cr_assert_not_null(m);
    return m;
}

Test(ring, empty_pop_says_eagain, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(8);
    fshm__ring_init(&r, m, 8);
    uint64_t v = 42;
    cr_expect_eq(fshm__ring_pop(&r, &v, NULL, NULL), -EAGAIN);
    cr_expect_eq(v, 42, "a failed pop must not touch the output");
    cr_expect_not(fshm__ring_ready(&r));
    cr_expect_eq(fshm__ring_count(&r), 0);
    free(m);
}

Test(ring, full_push_says_eagain_then_recovers, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(4);
    fshm__ring_init(&r, m, 4);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert_eq(fshm__ring_push(&r, i + 100, NULL), 0);
    cr_expect_eq(fshm__ring_push(&r, 999, NULL), -EAGAIN);
    cr_expect_eq(fshm__ring_count(&r), 4);
    uint64_t v;
    cr_assert_eq(fshm__ring_pop(&r, &v, NULL, NULL), 0);
    cr_expect_eq(v, 100);
    cr_expect_eq(fshm__ring_push(&r, 104, NULL), 0, "a freed cell is usable again");
    for (uint64_t want = 101; want <= 104; want++) {
        cr_assert_eq(fshm__ring_pop(&r, &v, NULL, NULL), 0);
        cr_expect_eq(v, want);
    }
    cr_expect_eq(fshm__ring_pop(&r, &v, NULL, NULL), -EAGAIN);
    free(m);
}

Test(ring, wraps_around_many_laps_in_order, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(4);
    fshm__ring_init(&r, m, 4);
    uint64_t next_in = 0, next_out = 0, v;
    /* Uneven batches so the head and tail cross the cell boundary at
     * every offset. */
    for (int round = 0; round < 5000; round++) {
        int k = 1 + round % 4;
        for (int i = 0; i < k; i++)
            if (fshm__ring_push(&r, next_in, NULL) == 0)
                next_in++;
        int j = 1 + (round * 7) % 4;
        for (int i = 0; i < j; i++)
            if (fshm__ring_pop(&r, &v, NULL, NULL) == 0)
                cr_assert_eq(v, next_out++, "FIFO broken at lap %d", round);
    }
    while (fshm__ring_pop(&r, &v, NULL, NULL) == 0)
        cr_assert_eq(v, next_out++);
    cr_expect_eq(next_in, next_out);
    cr_expect_gt(next_in, 4 * 1000, "enough laps to wrap many times");
    free(m);
}

Test(ring, intent_and_popped_words_are_maintained, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(4);
    fshm__ring_init(&r, m, 4);
    _Atomic uint64_t intent = 0, popped = 0;
    cr_assert_eq(fshm__ring_push(&r, 7, &intent), 0);
    cr_expect_eq(intent, 0, "intent cleared after a finished push");
    uint64_t v;
    cr_assert_eq(fshm__ring_pop(&r, &v, &intent, &popped), 0);
    cr_expect_eq(v, 7);
    cr_expect_eq(popped, 7, "popped value recorded before the cell is reused");
    cr_expect_eq(intent, 0);
    cr_expect_eq(fshm__ring_pop(&r, &v, &intent, &popped), -EAGAIN);
    cr_expect_eq(intent, 0, "no intent left behind by a failed pop");
    free(m);
}

Test(ring, repair_pop_left_by_a_dead_consumer, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(4);
    fshm__ring_init(&r, m, 4);
    _Atomic uint64_t intent = 0;
    cr_assert_eq(fshm__ring_push(&r, 11, NULL), 0);
    cr_assert_eq(fshm__ring_push(&r, 12, NULL), 0);
    /* A consumer claims position 0 and "dies". */
    cr_assert_eq(fshm__ring_pop_claim_only(&r, &intent), 0);
    cr_assert_eq(intent, 1, "intent names position 0");
    uint64_t v;
    cr_assert_eq(fshm__ring_pop(&r, &v, NULL, NULL), 0);
    cr_expect_eq(v, 12, "later cells stay usable");
    /* Producers wrap around to the wedged cell: the ring is not full (two
     * values in four cells) but that cell is not back: -EBUSY, not -EAGAIN
     * (a caller that took it for "full" would compact a ring it cannot
     * refill). */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(fshm__ring_push(&r, 20 + i, NULL), 0);
    cr_expect_eq(fshm__ring_push(&r, 99, NULL), -EBUSY, "wedged cell blocks the lap");
    cr_expect_eq(fshm__ring_repair_pop(&r, 1, &v), 0, "position 1 is not wedged");
    cr_assert_eq(fshm__ring_repair_pop(&r, intent - 1, &v), 1);
    cr_expect_eq(v, 11, "the value the dead consumer held is recovered");
    cr_expect_eq(fshm__ring_repair_pop(&r, intent - 1, &v), 0, "repair is idempotent");
    cr_expect_eq(fshm__ring_push(&r, 22, NULL), 0, "the lap continues");
    cr_expect_eq(fshm__ring_push(&r, 23, NULL), 0);
    for (uint64_t want = 20; want <= 23; want++) {
        cr_assert_eq(fshm__ring_pop(&r, &v, NULL, NULL), 0);
        cr_expect_eq(v, want);
    }
    free(m);
}

Test(ring, repair_push_left_by_a_dead_producer, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(4);
    fshm__ring_init(&r, m, 4);
    _Atomic uint64_t intent = 0;
    cr_assert_eq(fshm__ring_push_claim_only(&r, &intent), 0);
    cr_assert_eq(intent, 1);
    cr_assert_eq(fshm__ring_push(&r, 5, NULL), 0);
    uint64_t v;
    cr_expect_eq(fshm__ring_pop(&r, &v, NULL, NULL), -EAGAIN,
                 "the consumer waits at the unpublished cell");
    cr_assert_eq(fshm__ring_repair_push(&r, intent - 1), 1);
    cr_expect_eq(fshm__ring_repair_push(&r, intent - 1), 0, "repair is idempotent");
    cr_assert_eq(fshm__ring_pop(&r, &v, NULL, NULL), 0);
    cr_expect_eq(v, FSHM_RING_HOLE, "the hole is marked");
    cr_assert_eq(fshm__ring_pop(&r, &v, NULL, NULL), 0);
    cr_expect_eq(v, 5);
    free(m);
}

/* ---- MPMC stress ---- */

#define PRODUCERS 3
#define CONSUMERS 3
#ifdef FERRY_SANITIZED
#define PER_PRODUCER 20000
#else
#define PER_PRODUCER 200000
#endif

typedef struct stress {
    fshm_ring_t ring;                             /* shared ring (cap 64) */
    _Atomic uint8_t seen[PRODUCERS][PER_PRODUCER]; /* deliveries per item */
    _Atomic uint64_t consumed;                    /* items popped so far */
    _Atomic uint32_t bad;                         /* out-of-range values */
} stress_t;

typedef struct role {
    stress_t *st; /* the shared state */
    int id;       /* producer id */
} role_t;

static void *producer(void *arg)
{
    role_t *r = arg;
    for (uint64_t i = 0; i < PER_PRODUCER; i++) {
        uint64_t v = (uint64_t)r->id << 32 | i;
        /* -EAGAIN full, -EBUSY a consumer still empties the next cell. */
        while (fshm__ring_push(&r->st->ring, v, NULL) < 0)
            sched_yield();
    }
    return NULL;
}

static void *consumer(void *arg)
{
    role_t *r = arg;
    stress_t *st = r->st;
    const uint64_t total = (uint64_t)PRODUCERS * PER_PRODUCER;
    uint64_t last[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++)
        last[p] = UINT64_MAX;
    while (atomic_load(&st->consumed) < total) {
        uint64_t v;
        if (fshm__ring_pop(&st->ring, &v, NULL, NULL) < 0) {
            sched_yield();
            continue;
        }
        uint32_t p = (uint32_t)(v >> 32), i = (uint32_t)v;
        if (p >= PRODUCERS || i >= PER_PRODUCER) {
            atomic_fetch_add(&st->bad, 1);
        } else {
            atomic_fetch_add(&st->seen[p][i], 1);
            /* One consumer sees each producer's items in increasing order. */
            if (last[p] != UINT64_MAX && i <= last[p])
                atomic_fetch_add(&st->bad, 1);
            last[p] = i;
        }
        atomic_fetch_add(&st->consumed, 1);
    }
    return NULL;
}

Test(ring, mpmc_stress_every_item_exactly_once, .timeout = 60)
{
    stress_t *st = calloc(1, sizeof(*st));
    cr_assert_not_null(st);
    void *m = ring_mem(64);
    fshm__ring_init(&st->ring, m, 64);
    pthread_t th[PRODUCERS + CONSUMERS];
    role_t roles[PRODUCERS + CONSUMERS];
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        roles[i] = (role_t){.st = st, .id = i < PRODUCERS ? i : i - PRODUCERS};
        cr_assert_eq(pthread_create(&th[i], NULL, i < PRODUCERS ? producer : consumer, &roles[i]),
                     0);
    }
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        pthread_join(th[i], NULL);
    cr_expect_eq(st->bad, 0, "no garbage and no reordering per producer");
    cr_expect_eq(st->consumed, (uint64_t)PRODUCERS * PER_PRODUCER);
    uint64_t missing = 0, dup = 0;
    for (int p = 0; p < PRODUCERS; p++)
        for (int i = 0; i < PER_PRODUCER; i++) {
            missing += st->seen[p][i] == 0;
            dup += st->seen[p][i] > 1;
        }
    cr_expect_eq(missing, 0, "%llu items lost", (unsigned long long)missing);
    cr_expect_eq(dup, 0, "%llu items delivered twice", (unsigned long long)dup);
    uint64_t v;
    cr_expect_eq(fshm__ring_pop(&st->ring, &v, NULL, NULL), -EAGAIN);
    free(m);
    free(st);
}

/* Inline messages: bytes, status and length come out as they went in;
 * FSHM_NOT_INLINE carries none; a length too large is refused on push and
 * read as "not inline" from a corrupted cell. */
Test(ring, inline_messages, .timeout = 10)
{
    fshm_ring_t r;
    void *m = ring_mem(4);
    fshm__ring_init(&r, m, 4);
    uint8_t in[FSHM_INLINE_MAX], out[FSHM_INLINE_MAX];
    for (unsigned i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 5 + 1);
    cr_assert_eq(fshm__ring_push_msg(&r, 1, -5, in, FSHM_INLINE_MAX, NULL), 0);
    cr_assert_eq(fshm__ring_push_msg(&r, 2, 0, NULL, FSHM_NOT_INLINE, NULL), 0);
    cr_expect_eq(fshm__ring_push_msg(&r, 3, 0, in, FSHM_INLINE_MAX + 1, NULL), -EMSGSIZE);
    uint64_t v;
    int32_t st;
    uint32_t len;
    cr_assert_eq(fshm__ring_pop_msg(&r, &v, &st, out, &len, NULL, NULL), 0);
    cr_expect_eq(v, 1);
    cr_expect_eq(st, -5);
    cr_expect_eq(len, FSHM_INLINE_MAX);
    cr_expect_eq(memcmp(in, out, FSHM_INLINE_MAX), 0);
    cr_assert_eq(fshm__ring_pop_msg(&r, &v, &st, out, &len, NULL, NULL), 0);
    cr_expect_eq(v, 2);
    cr_expect_eq(len, FSHM_NOT_INLINE);
    /* A cell whose length was corrupted in the segment. */
    cr_assert_eq(fshm__ring_push_msg(&r, 4, 0, in, 8, NULL), 0);
    r.sh->cells[2].len = 5000;
    cr_assert_eq(fshm__ring_pop_msg(&r, &v, &st, out, &len, NULL, NULL), 0);
    cr_expect_eq(v, 4);
    cr_expect_eq(len, FSHM_NOT_INLINE, "an impossible length is not trusted");
    free(m);
}
