/* Pipes: bad ids, FIFO, each blocking rule (full, empty, no consumer, no
 * producer), the three timeout kinds, close waking every waiter, draining
 * then -EPIPE, sessions, MPMC order per producer with intact samples, and
 * corrupt positions refused. */
#include "monster_test.h"

#include <stdlib.h>


Test(pipe, bad_ids_are_einval, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    errno = 0;
    cr_assert_null(zkprologml_pipe_open(ctx, 15, true));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(zkprologml_pipe_open(ctx, -1, false));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(zkprologml_wait_create(ctx, 256));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(zkprologml_wait_create(ctx, -1));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 256), -EINVAL);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, -1), -EINVAL);
    cr_assert_eq(zkprologml_wait_ready(ctx, 256, 1, 0), -EINVAL);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 14, true);
    cr_assert_not_null(p, "ring 14 is valid");
    zkprologml_sample_t s;
    cr_assert_eq(zkprologml_pipe_read(p, &s, 0), -EBADF, "read on a producer handle");
    zkprologml_pipe_close(p);
    zkprologml_pipe_close(NULL);
    zkprologml_close(ctx);
}

Test(pipe, fifo_in_order, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(128);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 0, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 0, false);
    cr_assert(w && r);
    for (uint32_t i = 0; i < 3 * 128; i++) {
        zkprologml_sample_t s = mt_sample(1, i);
        cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
        if (i % 3 == 2) /* keep the ring partly full across wraps */
            for (int k = 0; k < 3; k++) {
                zkprologml_sample_t got;
                cr_assert_eq(zkprologml_pipe_read(r, &got, 0), 0);
                cr_assert_eq(got.tid, i - 2 + (uint32_t)k, "FIFO order");
                cr_assert(mt_sample_ok(&got));
            }
    }
    zkprologml_sample_t got;
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), -EAGAIN);
    zkprologml_close(ctx); /* closes both handles */
}

Test(pipe, full_blocks_writer_with_try_and_timeout, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 2, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 2, false);
    zkprologml_sample_t s = mt_sample(2, 0);
    uint32_t cap = mt_capacity(ctx, 2); /* 4, or the module's */
    for (uint32_t i = 0; i < cap; i++)
        cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), -EAGAIN, "full: try");
    cr_assert_eq(zkprologml_pipe_write(w, &s, 30), -ETIME, "full: timeout");
    zkprologml_sample_t got;
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), 0);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0, "space again");
    zkprologml_close(ctx);
}

Test(pipe, empty_blocks_reader_with_try_and_timeout, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 3, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 3, false);
    zkprologml_sample_t got;
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), -EAGAIN);
    cr_assert_eq(zkprologml_pipe_read(r, &got, 30), -ETIME);
    zkprologml_sample_t s = mt_sample(3, 1);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
    cr_assert_eq(zkprologml_pipe_read(r, &got, 30), 0);
    cr_assert(mt_sample_ok(&got));
    zkprologml_close(ctx);
}

Test(pipe, writer_blocks_without_consumer, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 4, true);
    zkprologml_sample_t s = mt_sample(4, 0);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), -EAGAIN, "no consumer: ring empty, still blocks");
    cr_assert_eq(zkprologml_pipe_write(w, &s, 20), -ETIME);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 4, false);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0, "a consumer registered");
    zkprologml_pipe_close(r);
    zkprologml_pipe_close(w);
    zkprologml_close(ctx);
}

Test(pipe, reader_blocks_without_producer, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 5, false);
    zkprologml_sample_t got;
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), -EAGAIN, "no producer yet: blocks, not -EPIPE");
    cr_assert_eq(zkprologml_pipe_read(r, &got, 20), -ETIME);
    zkprologml_close(ctx);
}

typedef struct op_arg {
    zkprologml_pipe_t *pipe; /* handle to use          */
    int timeout_ms;          /* for the call            */
    int rc;                  /* result                  */
    zkprologml_sample_t s;   /* written / read sample   */
} op_arg_t;

static void *reader(void *p)
{
    op_arg_t *a = p;
    a->rc = zkprologml_pipe_read(a->pipe, &a->s, a->timeout_ms);
    return NULL;
}

static void *writer(void *p)
{
    op_arg_t *a = p;
    a->rc = zkprologml_pipe_write(a->pipe, &a->s, a->timeout_ms);
    return NULL;
}

Test(pipe, forever_reader_woken_by_write, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 6, true);
    op_arg_t a = {.pipe = zkprologml_pipe_open(ctx, 6, false), .timeout_ms = -1, .rc = 1};
    pthread_t t;
    pthread_create(&t, NULL, reader, &a);
    mt_wait_sleepers(&mt_seg(ctx)->pipes[6].data, 1);
    zkprologml_sample_t s = mt_sample(6, 42);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
    pthread_join(t, NULL);
    cr_assert_eq(a.rc, 0);
    cr_assert_eq(a.s.tid, 42u);
    zkprologml_close(ctx);
}

Test(pipe, forever_writer_woken_when_consumer_registers, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    op_arg_t a = {.pipe = zkprologml_pipe_open(ctx, 7, true), .timeout_ms = -1, .rc = 1,
                  .s = mt_sample(7, 1)};
    pthread_t t;
    pthread_create(&t, NULL, writer, &a);
    mt_wait_sleepers(&mt_seg(ctx)->pipes[7].space, 1);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 7, false);
    pthread_join(t, NULL);
    cr_assert_eq(a.rc, 0);
    zkprologml_sample_t got;
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), 0);
    cr_assert(mt_sample_ok(&got));
    zkprologml_close(ctx);
}

Test(pipe, close_wakes_every_waiter, .fini = mt_cleanup)
{
    enum { N = 4 };
    zkprologml_ctx_t *ctx = mt_open(2);
    /* Readers of ring 8, blocked on empty; writers of ring 9, blocked on full. */
    zkprologml_pipe_t *p8 = zkprologml_pipe_open(ctx, 8, true);
    zkprologml_pipe_t *c9 = zkprologml_pipe_open(ctx, 9, false);
    zkprologml_pipe_t *r8[N], *w9[N];
    op_arg_t ra[N], wa[N];
    pthread_t rt[N], wt[N];
    for (int i = 0; i < N; i++) {
        r8[i] = zkprologml_pipe_open(ctx, 8, false);
        w9[i] = zkprologml_pipe_open(ctx, 9, true);
    }
    zkprologml_sample_t s = mt_sample(9, 0);
    for (uint32_t i = mt_capacity(ctx, 9); i > 0; i--) /* 2, or the module's */
        cr_assert_eq(zkprologml_pipe_write(w9[0], &s, 0), 0);
    cr_assert_eq(zkprologml_pipe_write(w9[0], &s, 0), -EAGAIN, "ring 9 full");
    for (int i = 0; i < N; i++) {
        ra[i] = (op_arg_t){.pipe = r8[i], .timeout_ms = -1, .rc = 1};
        wa[i] = (op_arg_t){.pipe = w9[i], .timeout_ms = -1, .rc = 1, .s = s};
        pthread_create(&rt[i], NULL, reader, &ra[i]);
        pthread_create(&wt[i], NULL, writer, &wa[i]);
    }
    mt_wait_sleepers(&mt_seg(ctx)->pipes[8].data, N);
    mt_wait_sleepers(&mt_seg(ctx)->pipes[9].space, N);
    /* Blocked calls also re-check every ZKPROLOGML_LIVENESS_MS; the event
     * counts' sequence words show that close itself woke them. */
    uint32_t seq8 = atomic_load(&mt_seg(ctx)->pipes[8].data.seq);
    uint32_t seq9 = atomic_load(&mt_seg(ctx)->pipes[9].space.seq);
    zkprologml_pipe_close(p8); /* the only producer of 8 */
    zkprologml_pipe_close(c9); /* the only consumer of 9 */
    if (!mt_kernel()) { /* the kernel has no liveness re-check to rule out */
        cr_assert_neq(atomic_load(&mt_seg(ctx)->pipes[8].data.seq), seq8, "close woke the readers");
        cr_assert_neq(atomic_load(&mt_seg(ctx)->pipes[9].space.seq), seq9, "close woke the writers");
    }
    for (int i = 0; i < N; i++) {
        pthread_join(rt[i], NULL);
        pthread_join(wt[i], NULL);
        cr_assert_eq(ra[i].rc, -EPIPE, "reader %d woken with -EPIPE", i);
        cr_assert_eq(wa[i].rc, -EPIPE, "writer %d woken with -EPIPE", i);
    }
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[8].closed, 1u);
    cr_assert_eq(st[9].closed, 1u);
    zkprologml_close(ctx);
}

Test(pipe, readers_drain_then_epipe_and_new_session, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 10, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 10, false);
    for (uint32_t i = 0; i < 3; i++) {
        zkprologml_sample_t s = mt_sample(10, i);
        cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
    }
    zkprologml_pipe_close(w);
    zkprologml_sample_t got;
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(zkprologml_pipe_read(r, &got, 0), 0, "drains after close");
        cr_assert_eq(got.tid, i);
    }
    cr_assert_eq(zkprologml_pipe_read(r, &got, -1), -EPIPE, "closed and drained");
    zkprologml_pipe_close(r);
    /* Nobody left: the next open starts a fresh session. */
    r = zkprologml_pipe_open(ctx, 10, false);
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[10].closed, 0u);
    cr_assert_eq(st[10].readers, 1u);
    cr_assert_eq(st[10].writers, 0u);
    cr_assert_eq(st[10].consumer_pid, (int32_t)getpid());
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), -EAGAIN);
    zkprologml_close(ctx);
}

/* MPMC: P producers write K samples each (tid = sequence), C consumers read;
 * every sample arrives once, intact, and each consumer sees each producer's
 * samples in increasing order. */
enum { P = 4, C = 3, K = 20000 };

typedef struct mp_arg {
    zkprologml_pipe_t *pipe;   /* handle            */
    uint32_t id;               /* producer id       */
    uint8_t *seen;             /* [P][K], consumers */
    pthread_mutex_t *lock;     /* guards seen       */
    uint64_t got;              /* consumer: count   */
    int bad;                   /* first problem     */
} mp_arg_t;

static void *mp_producer(void *p)
{
    mp_arg_t *a = p;
    for (uint32_t i = 0; i < K; i++) {
        zkprologml_sample_t s = mt_sample(a->id, i);
        int rc = zkprologml_pipe_write(a->pipe, &s, -1);
        if (rc != 0) {
            a->bad = rc;
            break;
        }
    }
    zkprologml_pipe_close(a->pipe);
    return NULL;
}

static void *mp_consumer(void *p)
{
    mp_arg_t *a = p;
    int64_t last[P];
    for (int i = 0; i < P; i++)
        last[i] = -1;
    for (;;) {
        zkprologml_sample_t s;
        int rc = zkprologml_pipe_read(a->pipe, &s, -1);
        if (rc == -EPIPE)
            break;
        if (rc != 0 || s.pid >= P || s.tid >= K || !mt_sample_ok(&s)) {
            a->bad = rc ? rc : 1;
            break;
        }
        if ((int64_t)s.tid <= last[s.pid]) {
            a->bad = 2; /* out of order for this producer */
            break;
        }
        last[s.pid] = s.tid;
        pthread_mutex_lock(a->lock);
        a->seen[s.pid * K + s.tid]++;
        pthread_mutex_unlock(a->lock);
        a->got++;
    }
    return NULL;
}

Test(pipe, mpmc_fifo_per_producer_and_atomic_samples, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(64);
    uint8_t *seen = calloc(P * K, 1);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    mp_arg_t pa[P], ca[C];
    pthread_t pt[P], ct[C];
    /* Register every end before any starts, so no producer can close the
     * pipe before the others registered. */
    for (int i = 0; i < C; i++)
        ca[i] = (mp_arg_t){.pipe = zkprologml_pipe_open(ctx, 11, false), .seen = seen, .lock = &lock};
    for (int i = 0; i < P; i++)
        pa[i] = (mp_arg_t){.pipe = zkprologml_pipe_open(ctx, 11, true), .id = (uint32_t)i};
    for (int i = 0; i < C; i++)
        pthread_create(&ct[i], NULL, mp_consumer, &ca[i]);
    for (int i = 0; i < P; i++)
        pthread_create(&pt[i], NULL, mp_producer, &pa[i]);
    uint64_t total = 0;
    for (int i = 0; i < P; i++) {
        pthread_join(pt[i], NULL);
        cr_expect_eq(pa[i].bad, 0, "producer %d: %d", i, pa[i].bad);
    }
    for (int i = 0; i < C; i++) {
        pthread_join(ct[i], NULL);
        cr_expect_eq(ca[i].bad, 0, "consumer %d: %d", i, ca[i].bad);
        total += ca[i].got;
    }
    cr_assert_eq(total, (uint64_t)P * K);
    for (int i = 0; i < P * K; i++)
        cr_assert_eq(seen[i], 1, "sample %d seen %d times", i, seen[i]);
    free(seen);
    zkprologml_close(ctx);
}

Test(pipe, corrupt_positions_are_refused, .fini = mt_cleanup)
{
    mt_user_only("scribbles on the segment's ring positions");
    zkprologml_ctx_t *ctx = mt_open(4);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 12, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 12, false);
    fmon_pipe_t *p = &mt_seg(ctx)->pipes[12];
    /* Another process scribbles: more samples than the capacity. */
    fmon_plock(&p->lock);
    p->tail = p->head + 5;
    fmon_punlock(&p->lock);
    zkprologml_sample_t s = mt_sample(12, 0);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), -EIO);
    cr_assert_eq(zkprologml_pipe_read(r, &s, 0), -EIO);
    fmon_plock(&p->lock);
    p->head = 100;
    p->tail = 50; /* head past tail: wraps to a huge count */
    fmon_punlock(&p->lock);
    cr_assert_eq(zkprologml_pipe_read(r, &s, 0), -EIO);
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[12].count, 0u, "status shows no bogus count");
    zkprologml_close(ctx);
}
