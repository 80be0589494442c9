/* Wait states: increasing sequence numbers (also across contexts),
 * broadcast counts per shard, every blocked waiter woken by one
 * coordination, no lost coordination, timeouts, the ready barrier, slot
 * exhaustion, and the coordination log. */
#include "monster_test.h"


Test(wait, sequences_increase_across_contexts, .fini = mt_cleanup)
{
    zkprologml_ctx_t *a = mt_open(8), *b = mt_open(8);
    uint64_t last = 0;
    zkprologml_wait_t *w[20];
    for (int i = 0; i < 20; i++) {
        w[i] = zkprologml_wait_create(i % 2 ? a : b, i % 3);
        cr_assert_not_null(w[i]);
        uint64_t s = zkprologml_wait_sequence(w[i]);
        cr_assert_gt(s, last, "sequence %llu after %llu", (unsigned long long)s,
                     (unsigned long long)last);
        last = s;
    }
    /* A freed slot is reused with a new, larger sequence. */
    int id = zkprologml_wait_id(w[3]);
    zkprologml_wait_free(w[3]);
    zkprologml_wait_t *again = zkprologml_wait_create(a, 0);
    cr_assert_eq(zkprologml_wait_id(again), id);
    cr_assert_gt(zkprologml_wait_sequence(again), last);
    zkprologml_close(a);
    zkprologml_close(b);
}

Test(wait, coordinate_counts_the_shard_only, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_wait_t *five[5], *six[2];
    for (int i = 0; i < 5; i++)
        five[i] = zkprologml_wait_create(ctx, 5);
    for (int i = 0; i < 2; i++)
        six[i] = zkprologml_wait_create(ctx, 6);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 5), 5);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 7), 0, "nobody on shard 7");
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(zkprologml_wait_for_coord(five[i], 0), 0, "coordinated, not lost");
        cr_assert_eq(zkprologml_wait_for_coord(five[i], 0), -EAGAIN, "consumed once");
    }
    for (int i = 0; i < 2; i++)
        cr_assert_eq(zkprologml_wait_for_coord(six[i], 0), -EAGAIN);
    zkprologml_wait_free(five[0]);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 5), 4, "freed ones are not counted");
    zkprologml_close(ctx);
}

Test(wait, timeouts, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_wait_t *w = zkprologml_wait_create(ctx, 1);
    cr_assert_eq(zkprologml_wait_for_coord(w, 0), -EAGAIN);
    cr_assert_eq(zkprologml_wait_for_coord(w, 30), -ETIME);
    cr_assert_eq(zkprologml_wait_ready(ctx, 1, 1, 0), -EAGAIN);
    cr_assert_eq(zkprologml_wait_ready(ctx, 1, 1, 30), -ETIME);
    zkprologml_close(ctx);
}

typedef struct waiter {
    zkprologml_wait_t *w; /* its wait state */
    int rc;               /* result         */
} waiter_t;

static void *wait_forever(void *p)
{
    waiter_t *a = p;
    a->rc = zkprologml_wait_for_coord(a->w, -1);
    return NULL;
}

Test(wait, one_coordination_wakes_every_blocked_waiter, .fini = mt_cleanup)
{
    enum { N = ZKPROLOGML_WAIT_STATES }; /* all 256 on one shard */
    zkprologml_ctx_t *ctx = mt_open(8);
    static waiter_t a[N];
    static pthread_t t[N];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < N; i++) {
        a[i] = (waiter_t){.w = zkprologml_wait_create(ctx, 3), .rc = 1};
        cr_assert_not_null(a[i].w, "wait state %d", i);
        cr_assert_eq(pthread_create(&t[i], &attr, wait_forever, &a[i]), 0);
    }
    pthread_attr_destroy(&attr);
    mt_wait_sleepers(&mt_seg(ctx)->hdr->coord[3], N);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 3), N);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].rc, 0, "waiter %d", i);
    }
    zkprologml_close(ctx);
}

typedef struct ready_arg {
    zkprologml_wait_t *w; /* its wait state                    */
    int rc;               /* wait_for_coord after ready        */
} ready_arg_t;

static void *ready_then_wait(void *p)
{
    ready_arg_t *a = p;
    zkprologml_signal_ready(a->w);
    a->rc = zkprologml_wait_for_coord(a->w, -1);
    return NULL;
}

Test(wait, barrier_on_n_ready_apps, .fini = mt_cleanup)
{
    enum { N = 4 };
    zkprologml_ctx_t *ctx = mt_open(8);
    ready_arg_t a[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        a[i] = (ready_arg_t){.w = zkprologml_wait_create(ctx, 9), .rc = 1};
    cr_assert_eq(zkprologml_wait_ready(ctx, 9, 1, 0), -EAGAIN, "nobody ready yet");
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, ready_then_wait, &a[i]);
    int rc = zkprologml_wait_ready(ctx, 9, N, -1); /* the barrier */
    cr_assert_eq(rc, N);
    zkprologml_wait_status_t st[ZKPROLOGML_WAIT_STATES];
    cr_assert_eq(zkprologml_wait_status(ctx, st), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(st[zkprologml_wait_id(a[i].w)].ready, 1u);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 9), N);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].rc, 0);
    }
    cr_assert_eq(zkprologml_wait_ready(ctx, 9, 1, 0), -EAGAIN, "coordination cleared ready");
    zkprologml_close(ctx);
}

Test(wait, all_256_slots_then_enospc, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_wait_t *w[ZKPROLOGML_WAIT_STATES];
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        w[i] = zkprologml_wait_create(ctx, i);
        cr_assert_not_null(w[i], "slot %d", i);
    }
    errno = 0;
    cr_assert_null(zkprologml_wait_create(ctx, 0));
    cr_assert_eq(errno, ENOSPC);
    zkprologml_wait_free(w[100]);
    cr_assert_not_null(zkprologml_wait_create(ctx, 0));
    zkprologml_wait_free(NULL);
    zkprologml_close(ctx); /* frees the other 256 */
    ctx = mt_open(8);
    zkprologml_wait_status_t st[ZKPROLOGML_WAIT_STATES];
    cr_assert_eq(zkprologml_wait_status(ctx, st), 0, "close released every wait state");
    zkprologml_close(ctx);
}

Test(wait, coordinations_are_logged, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    /* A fresh segment's log is empty; the module's holds what earlier
     * tests coordinated: count from what is there (seq0). */
    zkprologml_log_entry_t e[ZKPROLOGML_LOG_ENTRIES];
    int before = zkprologml_log_read(ctx, e, ZKPROLOGML_LOG_ENTRIES);
    cr_assert_geq(before, 0);
    uint64_t seq0 = before > 0 ? e[before - 1].seq : 0;
    for (int i = 0; i < 3; i++)
        zkprologml_wait_create(ctx, 5);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 5), 3);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 0), 0);
    int n = zkprologml_log_read(ctx, e, ZKPROLOGML_LOG_ENTRIES);
    cr_assert_eq(n, before + 2 < ZKPROLOGML_LOG_ENTRIES ? before + 2 : ZKPROLOGML_LOG_ENTRIES);
    zkprologml_log_entry_t *a = &e[n - 2], *b = &e[n - 1];
    cr_assert_eq(a->count, 3u);
    cr_assert_eq(a->shard, 5u);
    cr_assert_eq(a->pid, (int32_t)getpid());
    cr_assert_eq(a->seq, seq0 + 1);
    cr_assert_eq(b->count, 0u);
    cr_assert_eq(b->seq, seq0 + 2);
    /* The ring keeps the last ZKPROLOGML_LOG_ENTRIES, oldest first. */
    for (int i = 0; i < ZKPROLOGML_LOG_ENTRIES + 5; i++)
        zkprologml_coordinate_shard(ctx, 1);
    cr_assert_eq(zkprologml_log_read(ctx, e, ZKPROLOGML_LOG_ENTRIES), ZKPROLOGML_LOG_ENTRIES);
    cr_assert_eq(e[ZKPROLOGML_LOG_ENTRIES - 1].seq, seq0 + ZKPROLOGML_LOG_ENTRIES + 7);
    cr_assert_eq(e[0].seq, seq0 + 8);
    zkprologml_close(ctx);
}
