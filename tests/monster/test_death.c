/* Apps killed with SIGKILL: their pipe ends and wait states are reclaimed
 * (pid gone) and the peers blocked on them are woken; a process killed while
 * blocked, or while holding a pipe's lock, wedges nothing. Real processes:
 * every child is forked before the test creates any thread. */
#include "monster_test.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>


typedef struct child {
    pid_t pid; /* the process               */
    int rd;    /* its reports: one byte each */
} child_t;

static int c_report;

static void report(char c)
{
    if (write(c_report, &c, 1) != 1)
        _exit(90);
}

/* Forks a child running fn (which reports, then blocks or pauses). */
static child_t spawn(void (*fn)(void))
{
    int up[2];
    cr_assert_eq(pipe(up), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        close(up[0]);
        c_report = up[1];
        fn();
        _exit(0);
    }
    close(up[1]);
    return (child_t){pid, up[0]};
}

static char expect_report(child_t *c)
{
    char b = 0;
    cr_assert_eq(read(c->rd, &b, 1), 1, "child %d ended before reporting", (int)c->pid);
    return b;
}

static void kill_child(child_t *c)
{
    kill(c->pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(c->pid, &st, 0), c->pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    close(c->rd);
}

/* Child bodies: each opens its own context on the test's segment. */
static zkprologml_ctx_t *child_ctx(void)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = mt_seg_name(); /* inherited: the parent's pid */
    cfg.backend = mt_backend();
    zkprologml_ctx_t *ctx;
    if (zkprologml_open(&ctx, &cfg) < 0)
        _exit(10);
    return ctx;
}

static void child_consumer_blocked(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 0, false);
    if (!r)
        _exit(11);
    report('r');
    zkprologml_sample_t s;
    zkprologml_pipe_read(r, &s, -1); /* blocks: no producer */
    _exit(12);
}

static void child_consumer_idle(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    if (!zkprologml_pipe_open(ctx, 1, false))
        _exit(11);
    report('c');
    for (;;)
        pause();
}

static void child_producer_two(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 2, true);
    if (!w)
        _exit(11);
    for (uint32_t i = 0; i < 2; i++) {
        zkprologml_sample_t s = mt_sample(77, i);
        if (zkprologml_pipe_write(w, &s, -1) != 0)
            _exit(13);
    }
    report('p');
    for (;;)
        pause();
}

static void child_wait_ready(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    zkprologml_wait_t *w = zkprologml_wait_create(ctx, 7);
    if (!w || zkprologml_signal_ready(w) < 0)
        _exit(11);
    report('w');
    zkprologml_wait_for_coord(w, -1);
    _exit(12);
}

static void child_holds_lock(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    if (!zkprologml_pipe_open(ctx, 3, true))
        _exit(11);
    fmon_plock(&mt_seg(ctx)->pipes[3].lock);
    report('l');
    for (;;)
        pause();
}

static void child_holds_segment_lock(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    if (fmon_lock(&mt_seg(ctx)->hdr->lock) < 0)
        _exit(11);
    report('L');
    for (;;)
        pause();
}

static void child_streams(void)
{
    zkprologml_ctx_t *ctx = child_ctx();
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 4, true);
    if (!w)
        _exit(11);
    report('s');
    for (uint32_t i = 0; i < 5000; i++) {
        zkprologml_sample_t s = mt_sample(44, i);
        if (zkprologml_pipe_write(w, &s, -1) != 0)
            _exit(13);
    }
    zkprologml_pipe_close(w);
    zkprologml_close(ctx);
    _exit(0);
}

Test(death, killed_blocked_reader_is_reclaimed, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    child_t c = spawn(child_consumer_blocked);
    expect_report(&c);
    mt_wait_sleepers(&mt_seg(ctx)->pipes[0].data, 1); /* really blocked */
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[0].readers, 1u);
    cr_assert_eq(st[0].consumer_pid, (int32_t)c.pid);
    kill_child(&c);
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[0].readers, 0u, "registration reclaimed");
    cr_assert_eq(st[0].consumer_pid, 0);
    /* The pipe is not wedged: a new session works. */
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 0, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 0, false);
    zkprologml_sample_t s = mt_sample(1, 1), got;
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
    cr_assert_eq(zkprologml_pipe_read(r, &got, 0), 0);
    cr_assert(mt_sample_ok(&got));
    zkprologml_close(ctx);
}

typedef struct op {
    zkprologml_pipe_t *pipe; /* handle  */
    int rc;                  /* result  */
    int n;                   /* reads   */
} op_t;

static void *write_until_error(void *p)
{
    op_t *o = p;
    zkprologml_sample_t s = mt_sample(5, 5);
    while ((o->rc = zkprologml_pipe_write(o->pipe, &s, -1)) == 0)
        o->n++;
    return NULL;
}

static void *read_until_error(void *p)
{
    op_t *o = p;
    zkprologml_sample_t s;
    while ((o->rc = zkprologml_pipe_read(o->pipe, &s, -1)) == 0)
        o->n++;
    return NULL;
}

Test(death, killed_consumer_wakes_blocked_writer, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(2);
    child_t c = spawn(child_consumer_idle);
    expect_report(&c);
    op_t o = {.pipe = zkprologml_pipe_open(ctx, 1, true)};
    pthread_t t;
    pthread_create(&t, NULL, write_until_error, &o); /* fills 2, then blocks on full */
    mt_wait_sleepers(&mt_seg(ctx)->pipes[1].space, 1);
    kill_child(&c);
    pthread_join(t, NULL);
    cr_assert_eq(o.rc, -EPIPE, "writer woken by the reclaim: %d", o.rc);
    cr_assert_eq((uint32_t)o.n, mt_capacity(ctx, 1), "it filled the ring first");
    zkprologml_close(ctx);
}

Test(death, killed_producer_wakes_blocked_reader, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    op_t o = {.pipe = zkprologml_pipe_open(ctx, 2, false)};
    child_t c = spawn(child_producer_two);
    expect_report(&c);
    pthread_t t;
    pthread_create(&t, NULL, read_until_error, &o); /* reads 2, then blocks */
    mt_wait_sleepers(&mt_seg(ctx)->pipes[2].data, 1);
    kill_child(&c);
    pthread_join(t, NULL);
    cr_assert_eq(o.rc, -EPIPE);
    cr_assert_eq(o.n, 2, "what it wrote is still read");
    zkprologml_close(ctx);
}

Test(death, killed_wait_state_holder_is_not_coordinated, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    child_t c = spawn(child_wait_ready);
    expect_report(&c);
    cr_assert_eq(zkprologml_wait_ready(ctx, 7, 1, -1), 1);
    zkprologml_wait_status_t st[ZKPROLOGML_WAIT_STATES];
    cr_assert_eq(zkprologml_wait_status(ctx, st), 1);
    cr_assert_eq(st[0].pid, (int32_t)c.pid);
    mt_wait_sleepers(&mt_seg(ctx)->hdr->coord[7], 1);
    kill_child(&c);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 7), 0, "the dead app is not counted");
    cr_assert_eq(zkprologml_wait_status(ctx, st), 0, "its slot was reclaimed");
    zkprologml_close(ctx);
}

Test(death, killed_while_holding_the_pipe_lock, .fini = mt_cleanup)
{
    mt_user_only("takes the segment's pipe lock by hand");
    zkprologml_ctx_t *ctx = mt_open(4);
    child_t c = spawn(child_holds_lock);
    expect_report(&c);
    kill_child(&c);
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 3, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 3, false);
    cr_assert(w && r);
    zkprologml_sample_t s = mt_sample(3, 3), got;
    cr_assert_eq(zkprologml_pipe_write(w, &s, 1000), 0, "robust lock recovered");
    cr_assert_eq(zkprologml_pipe_read(r, &got, 1000), 0);
    cr_assert(mt_sample_ok(&got));
    zkprologml_close(ctx);
}

Test(death, killed_while_holding_the_segment_lock, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    child_t c = spawn(child_holds_segment_lock);
    expect_report(&c);
    kill_child(&c);
    /* Every call that takes the segment lock still works (robust mutex). */
    zkprologml_wait_t *w = zkprologml_wait_create(ctx, 8);
    cr_assert_not_null(w, "wait_create after the holder died: %s", zkprologml_last_error());
    cr_assert_eq(zkprologml_signal_ready(w), 0);
    cr_assert_eq(zkprologml_wait_ready(ctx, 8, 1, 1000), 1);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 8), 1);
    cr_assert_eq(zkprologml_wait_for_coord(w, 0), 0);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 5, true);
    cr_assert_not_null(p);
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[5].writers, 1u);
    zkprologml_close(ctx);
}

Test(death, killed_ready_app_does_not_count_in_the_barrier, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(4);
    child_t c = spawn(child_wait_ready); /* ready on shard 7, then blocked */
    expect_report(&c);
    zkprologml_wait_t *w = zkprologml_wait_create(ctx, 7);
    cr_assert_not_null(w);
    cr_assert_eq(zkprologml_signal_ready(w), 0);
    cr_assert_eq(zkprologml_wait_ready(ctx, 7, 2, -1), 2, "both ready");
    kill_child(&c);
    cr_assert_eq(zkprologml_wait_ready(ctx, 7, 2, 0), -EAGAIN, "the dead app no longer counts");
    cr_assert_eq(zkprologml_wait_ready(ctx, 7, 2, 300), -ETIME);
    cr_assert_eq(zkprologml_wait_ready(ctx, 7, 1, 0), 1, "the live one still does");
    zkprologml_close(ctx);
}

Test(death, samples_cross_processes_in_order, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(64);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 4, false);
    child_t c = spawn(child_streams);
    expect_report(&c);
    zkprologml_sample_t got;
    uint32_t n = 0;
    int rc;
    while ((rc = zkprologml_pipe_read(r, &got, -1)) == 0) {
        cr_assert_eq(got.tid, n, "FIFO across processes");
        cr_assert(mt_sample_ok(&got));
        n++;
    }
    cr_assert_eq(rc, -EPIPE);
    cr_assert_eq(n, 5000u);
    int st;
    cr_assert_eq(waitpid(c.pid, &st, 0), c.pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    zkprologml_close(ctx);
}
