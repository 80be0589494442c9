/* Worker death, with real processes: a worker SIGKILLed mid-task is
 * detected, its task queued again and finished by another worker, or failed
 * with -EOWNERDEAD once attempts are used up; its table entry is reclaimed;
 * a stopped worker is declared dead by its stale heartbeat and its late
 * answer refused; ring cells a worker left half-done are repaired. */
#define _GNU_SOURCE
#include "segment.h"
#include "shm_setup.h"
#include "shm_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static fshm_server_t *open_srv(const char *name, uint32_t attempts, uint32_t workers, uint32_t hb)
{
    fshm_config_t cfg;
    shm_test_config(&cfg, name, 8, 512, workers, hb);
    cfg.max_attempts = attempts;
    return shm_test_open(&cfg);
}

typedef struct child {
    pid_t pid;  /* the process */
    int rd;     /* its reports: one byte per step */
    int wr;     /* our go-ahead to it */
} child_t;

/* Child side of the pipes. */
static int c_report, c_go;

static void report(char c)
{
    if (write(c_report, &c, 1) != 1)
        _exit(90);
}

/* Child side: attach as a worker or end the child with status 10 (the
 * parent reports a child that exits instead of reporting). */
static fshm_worker_t *attach_or_exit(const char *name)
{
    fshm_worker_t *w;
    if (fshm_worker_attach(&w, name) < 0)
        _exit(10);
    return w;
}

static void wait_go(void)
{
    char c;
    if (read(c_go, &c, 1) != 1)
        _exit(91);
}

/* Forks a child that waits for start() and then runs fn(name). Tests fork
 * every child before opening the server: the test process then has no
 * other thread yet, so the child inherits no lock held by one (fork of a
 * threaded process is also refused by ThreadSanitizer). */
static child_t spawn(void (*fn)(const char *name), const char *name)
{
    int up[2], down[2];
    cr_assert_eq(pipe(up), 0);
    cr_assert_eq(pipe(down), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Never outlive a test that failed or timed out. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(up[0]);
        close(down[1]);
        c_report = up[1];
        c_go = down[0];
        wait_go();
        fn(name);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    return (child_t){.pid = pid, .rd = up[0], .wr = down[1]};
}

static void start(child_t *c)
{
    cr_assert_eq(write(c->wr, "g", 1), 1);
}

static char expect_report(child_t *c)
{
    char ch = 0;
    cr_assert_eq(read(c->rd, &ch, 1), 1, "child died before reporting");
    return ch;
}

static int reap(child_t *c)
{
    int st;
    cr_assert_eq(waitpid(c->pid, &st, 0), c->pid);
    close(c->rd);
    close(c->wr);
    return st;
}

/* Attaches, claims one task, says 'c', then waits to be killed. */
static void claimer(const char *name)
{
    fshm_worker_t *w = attach_or_exit(name);
    uint64_t id;
    const void *req;
    size_t len;
    if (fshm_worker_next(w, &id, &req, &len, 10000) < 0)
        _exit(11);
    report('c');
    for (;;)
        pause();
}

/* Attaches, says 'a', then waits to be killed (idle worker). */
static void idler(const char *name)
{
    attach_or_exit(name); /* stays attached until killed */
    report('a');
    for (;;)
        pause();
}

/* Answers tasks with "done:" + request until the server closes. */
static void finisher(const char *name)
{
    fshm_worker_t *w = attach_or_exit(name);
    report('a');
    for (;;) {
        uint64_t id;
        const void *req;
        size_t len;
        int rc = fshm_worker_next(w, &id, &req, &len, -1);
        if (rc == -ESHUTDOWN)
            break;
        if (rc < 0)
            _exit(12);
        char out[600];
        memcpy(out, "done:", 5);
        memcpy(out + 5, req, len);
        fshm_worker_reply(w, id, 0, out, len + 5);
    }
    fshm_worker_detach(w);
    _exit(0);
}

static void kill_and_reap(child_t *c)
{
    kill(c->pid, SIGKILL);
    int st = reap(c);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

Test(death, killed_mid_task_is_requeued_and_finished_by_another, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "rq");
    child_t a = spawn(claimer, name), b = spawn(finisher, name);
    fshm_server_t *srv = open_srv(name, 3, 4, 50);
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "job", 3, &id), 0);
    start(&a);
    cr_assert_eq(expect_report(&a), 'c');

    fshm_worker_info_t info[4];
    cr_assert_eq(fshm_server_workers(srv, info, 4), 1);
    cr_expect_str_eq(info[0].state, "busy");
    cr_expect_eq(info[0].current_task, id);
    cr_expect_eq(info[0].pid, a.pid);

    kill_and_reap(&a);
    cr_expect_eq(fshm_server_check_workers(srv), 1, "the dead worker is found");
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.requeued, 1);
    cr_expect_eq(st.workers_live, 0);
    cr_expect_eq(st.queue_depth, 1, "the task is back in the queue");
    cr_expect_eq(fshm_server_workers(srv, info, 4), 0, "its entry was reclaimed");
    cr_expect_eq(fshm_server_check_workers(srv), 0, "reaped once");

    start(&b);
    cr_assert_eq(expect_report(&b), 'a');
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 1);
    cr_expect_eq(sink.items[0].task_id, id);
    cr_expect_eq(sink.items[0].status, 0);
    cr_expect_str_eq(sink.items[0].resp, "done:job");
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.in_flight, 0);
    fshm_server_close(srv);
    int status = reap(&b);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(death, attempts_exhausted_fails_with_eownerdead, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "ex");
    child_t c[2] = {spawn(claimer, name), spawn(claimer, name)};
    fshm_server_t *srv = open_srv(name, 2, 4, 50);
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "doomed", 6, &id), 0);
    shm_sink_t sink = {0};
    for (int i = 0; i < 2; i++) {
        start(&c[i]);
        cr_assert_eq(expect_report(&c[i]), 'c', "attempt %d", i + 1);
        kill_and_reap(&c[i]);
        cr_expect_eq(fshm_server_check_workers(srv), 1);
        cr_assert_geq(fshm_server_poll(srv, shm_sink_cb, &sink), 0);
    }
    shm_sink_wait(srv, &sink, 1);
    cr_expect_eq(sink.count, 1);
    cr_expect_eq(sink.items[0].task_id, id);
    cr_expect_eq(sink.items[0].status, -EOWNERDEAD);
    cr_expect(strstr(sink.items[0].resp, "gave up after 2 attempts") != NULL, "clear text: %s",
              sink.items[0].resp);
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.failed, 1);
    cr_expect_eq(st.requeued, 1);
    cr_expect_eq(st.in_flight, 0);
    cr_expect_eq(st.queue_depth, 0);
    fshm_server_close(srv);
}

Test(death, dead_idle_worker_entry_is_reclaimed_for_a_new_one, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "tab");
    child_t a = spawn(idler, name);
    fshm_server_t *srv = open_srv(name, 3, 1, 50);
    start(&a);
    cr_assert_eq(expect_report(&a), 'a');
    fshm_worker_t *w;
    cr_expect_eq(fshm_worker_attach(&w, name), -ENOSPC, "table of one is taken");
    kill(a.pid, SIGKILL);
    /* Not reaped yet: a zombie must count as dead too. */
    int reaped;
    while ((reaped = fshm_server_check_workers(srv)) == 0)
        fshm_server_wait(srv, 10);
    cr_expect_eq(reaped, 1);
    reap(&a);
    cr_assert_eq(fshm_worker_attach(&w, name), 0, "%s", fshm_last_error());
    fshm_worker_info_t info;
    cr_assert_eq(fshm_server_workers(srv, &info, 1), 1);
    cr_expect_eq(info.pid, getpid());
    cr_expect_str_eq(info.state, "idle");
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

/* Claims a task, says 'c', waits for go, then tries to answer: expects to
 * be told it was declared dead. Exit 0 on the expected refusals. */
static void late_answerer(const char *name)
{
    fshm_worker_t *w = attach_or_exit(name);
    uint64_t id;
    const void *req;
    size_t len;
    if (fshm_worker_next(w, &id, &req, &len, 10000) < 0)
        _exit(11);
    report('c');
    wait_go();
    if (fshm_worker_reply(w, id, 0, "late", 4) != -ENOLINK)
        _exit(20);
    if (fshm_worker_next(w, &id, &req, &len, 0) != -ENOLINK)
        _exit(21);
    fshm_worker_detach(w);
    _exit(0);
}

Test(death, stopped_worker_declared_dead_by_stale_heartbeat, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "hb");
    child_t a = spawn(late_answerer, name), b = spawn(finisher, name);
    fshm_server_t *srv = open_srv(name, 3, 4, 20);
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "slow", 4, &id), 0);
    start(&a);
    cr_assert_eq(expect_report(&a), 'c');
    kill(a.pid, SIGSTOP);
    /* Its process lives on; only the heartbeat goes stale (4 x 20 ms). */
    while (fshm_server_check_workers(srv) == 0)
        fshm_server_wait(srv, 20);
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.requeued, 1);
    kill(a.pid, SIGCONT);
    start(&a); /* second go: answer now */
    int status = reap(&a);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "late answer refused with -ENOLINK (exit %d)", WEXITSTATUS(status));

    start(&b);
    cr_assert_eq(expect_report(&b), 'a');
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 1);
    cr_expect_str_eq(sink.items[0].resp, "done:slow", "the live answer, not the late one");
    fshm_server_close(srv);
    reap(&b);
}

/* Takes an entry, then claims a request-ring position exactly as a pop does
 * and stops there (as if killed inside fshm_worker_next). */
static void dies_inside_pop(const char *name)
{
    fshm_worker_t *w;
    fshm_seg_t seg;
    if (fshm_worker_attach(&w, name) < 0 || fshm__seg_attach(&seg, name) < 0)
        _exit(10);
    fshm_wentry_t *me = &seg.workers[fshm_worker_index(w)];
    if (fshm__ring_pop_claim_only(&seg.req, &me->req_intent) < 0)
        _exit(11);
    report('c');
    for (;;)
        pause();
}

static void pump_until(fshm_server_t *srv, shm_sink_t *sink, size_t n)
{
    while (sink->count < n) {
        fshm_server_check_workers(srv);
        fshm_server_wait(srv, 20);
        cr_assert_geq(fshm_server_poll(srv, shm_sink_cb, sink), 0);
    }
}

Test(death, request_cell_left_by_a_worker_dying_in_pop_is_repaired, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "rp");
    child_t a = spawn(dies_inside_pop, name), b = spawn(finisher, name);
    fshm_server_t *srv = open_srv(name, 3, 4, 20);
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "lost", 4, &id), 0);
    start(&a);
    cr_assert_eq(expect_report(&a), 'c');
    kill_and_reap(&a);
    cr_expect_eq(fshm_server_check_workers(srv), 1);
    start(&b);
    cr_assert_eq(expect_report(&b), 'a');
    shm_sink_t sink = {0};
    pump_until(srv, &sink, 1); /* repaired one heartbeat period later */
    cr_expect_eq(sink.items[0].task_id, id);
    cr_expect_str_eq(sink.items[0].resp, "done:lost");
    /* The ring works normally afterwards, lap after lap. */
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(fshm_server_submit(srv, "more", 4, &id), 0);
        shm_sink_wait(srv, &sink, 2 + (size_t)i);
    }
    fshm_server_close(srv);
    reap(&b);
}

/* Claims a task, writes its answer completely (DONE), then claims a
 * completion-ring position and stops (killed inside the publish). */
static void dies_inside_push(const char *name)
{
    fshm_worker_t *w;
    fshm_seg_t seg;
    if (fshm_worker_attach(&w, name) < 0 || fshm__seg_attach(&seg, name) < 0)
        _exit(10);
    uint32_t me_idx = fshm_worker_index(w);
    fshm_wentry_t *me = &seg.workers[me_idx];
    uint64_t id;
    const void *req;
    size_t len;
    if (fshm_worker_next(w, &id, &req, &len, 10000) < 0)
        _exit(11);
    uint32_t idx = (uint32_t)(id & 0xffff);
    fshm_slot_t *s = &seg.slots[idx];
    uint64_t sw = atomic_load(&s->word);
    memcpy(fshm__slot_resp(&seg, idx), "answered", 8);
    s->resp_len = 8;
    s->status = 0;
    atomic_store(&s->word, fshm__slot_word(fshm__sw_seq(sw), FSHM_SLOT_DONE, me_idx));
    if (fshm__ring_push_claim_only(&seg.cmp, &me->cmp_intent) < 0)
        _exit(12);
    report('c');
    for (;;)
        pause();
}

Test(death, completion_cell_left_by_a_worker_dying_in_push_is_repaired, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "cp");
    child_t a = spawn(dies_inside_push, name), b = spawn(finisher, name);
    fshm_server_t *srv = open_srv(name, 3, 4, 20);
    uint64_t first, second;
    cr_assert_eq(fshm_server_submit(srv, "one", 3, &first), 0);
    start(&a);
    cr_assert_eq(expect_report(&a), 'c');
    kill_and_reap(&a);
    start(&b);
    cr_assert_eq(expect_report(&b), 'a');
    cr_assert_eq(fshm_server_submit(srv, "two", 3, &second), 0);
    shm_sink_t sink = {0};
    pump_until(srv, &sink, 2);
    fshm_server_poll(srv, shm_sink_cb, &sink);
    cr_expect_eq(sink.count, 2, "each task delivered exactly once");
    for (int i = 0; i < 2; i++) {
        if (sink.items[i].task_id == first)
            cr_expect_str_eq(sink.items[i].resp, "answered", "written answer kept");
        else
            cr_expect_str_eq(sink.items[i].resp, "done:two");
    }
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(fshm_server_submit(srv, "more", 4, &second), 0);
        shm_sink_wait(srv, &sink, 3 + (size_t)i);
    }
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.in_flight, 0);
    fshm_server_close(srv);
    reap(&b);
}

/* ---- ghosts, busy workers, fast replacement (issue 6 items 2 and 3) ---- */

/* Attaches, says 'a', waits for work forever; a worker declared dead while
 * alive must be told (-ENOLINK) and leave: says 'L' and exits 0. */
static void ghost(const char *name)
{
    fshm_worker_t *w = attach_or_exit(name);
    report('a');
    uint64_t id;
    const void *req;
    size_t len;
    int rc = fshm_worker_next(w, &id, &req, &len, -1);
    if (rc != -ENOLINK)
        _exit(30);
    report('L');
    fshm_worker_detach(w);
    _exit(0);
}

/* Loops until check_workers() reaps one; returns the reaped entry's pid. */
static int32_t reap_one(fshm_server_t *srv, uint32_t max)
{
    fshm_worker_info_t before[8];
    int n = fshm_server_workers(srv, before, max);
    while (fshm_server_check_workers(srv) == 0)
        fshm_server_wait(srv, 20);
    fshm_worker_info_t after[8];
    int m = fshm_server_workers(srv, after, max);
    for (int i = 0; i < n; i++) {
        bool still = false;
        for (int j = 0; j < m; j++)
            still |= after[j].pid == before[i].pid && strcmp(after[j].state, "dead") != 0;
        if (!still)
            return before[i].pid;
    }
    return 0;
}

Test(death, ghost_heartbeats_do_not_hide_the_new_owners_hang, .timeout = 30)
{
    char name[40];
    shm_test_name(name, sizeof(name), "gh");
    child_t a = spawn(ghost, name), b = spawn(idler, name);
    fshm_server_t *srv = open_srv(name, 3, 1, 20); /* one entry: b must reuse a's */
    start(&a);
    cr_assert_eq(expect_report(&a), 'a');
    kill(a.pid, SIGSTOP); /* stuck: declared dead by its stale heartbeat */
    cr_assert_eq(reap_one(srv, 1), a.pid);
    start(&b);
    cr_assert_eq(expect_report(&b), 'a');
    fshm_worker_info_t info;
    cr_assert_eq(fshm_server_workers(srv, &info, 1), 1);
    cr_assert_eq(info.pid, b.pid, "b took a's entry");
    /* b hangs; a resumes and its heartbeat thread runs again. Its beats
     * must not land in b's entry, or b's hang is never noticed. */
    kill(b.pid, SIGSTOP);
    kill(a.pid, SIGCONT);
    cr_expect_eq(reap_one(srv, 1), b.pid, "the hung new owner is found");
    cr_expect_eq(expect_report(&a), 'L', "the ghost noticed and left");
    int st = reap(&a);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ghost exit %d", WEXITSTATUS(st));
    kill(b.pid, SIGKILL);
    reap(&b);
    fshm_server_close(srv);
}

/* Writes entry i of the table by hand, as a busy worker whose heartbeat
 * thread has not run for age_ms would have left it. */
static void fake_entry(fshm_seg_t *seg, uint32_t i, pid_t pid, pid_t tid, uint64_t age_ms)
{
    fshm_wentry_t *e = &seg->workers[i];
    uint64_t start = 0;
    cr_assert_eq(fshm__proc_stat(pid, &start, NULL), 0);
    uint64_t ew = atomic_load(&e->word);
    cr_assert_eq(fshm__ww_state(ew), FSHM_W_FREE);
    uint32_t gen = fshm__ww_gen(ew) + 1;
    atomic_store(&e->start_time, start);
    atomic_store(&e->heartbeat, fshm__hb(gen, fshm__now_ms() - age_ms));
    atomic_store(&e->hb_tid, (uint32_t)tid);
    atomic_store(&e->word, fshm__wword(gen, FSHM_W_BUSY, pid));
}

Test(death, running_process_is_not_reaped_for_a_stale_heartbeat, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "run");
    fshm_server_t *srv = open_srv(name, 3, 2, 10);
    fshm_seg_t seg;
    cr_assert_eq(fshm__seg_attach(&seg, name), 0);
    /* This very process, busy (running) while the server looks at it, with
     * a heartbeat 10 s old: starved of CPU, not stuck. */
    fake_entry(&seg, 0, getpid(), gettid(), 10000);
    cr_expect_eq(fshm_server_check_workers(srv), 0, "a running process is not reaped");
    fshm_worker_info_t info;
    cr_assert_eq(fshm_server_workers(srv, &info, 1), 1);
    cr_expect_str_eq(info.state, "busy");
    atomic_store(&seg.workers[0].word, fshm__wword(1, FSHM_W_FREE, 0));
    fshm__seg_destroy(&seg, false);
    fshm_server_close(srv);
}

static void sleeper(const char *name)
{
    (void)name;
    report('s');
    for (;;)
        pause();
}

Test(death, heartbeat_staleness_has_a_floor, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "fl");
    child_t c = spawn(sleeper, name);
    fshm_server_t *srv = open_srv(name, 3, 2, 10); /* 4 periods = 40 ms */
    start(&c);
    cr_assert_eq(expect_report(&c), 's');
    fshm_seg_t seg;
    cr_assert_eq(fshm__seg_attach(&seg, name), 0);
    /* A sleeping process 100 ms without a beat: 10 periods, but far below
     * the floor (FSHM_STALE_FLOOR_MS): a loaded machine, not a hung worker.
     * Only a check made within the floor counts (a check delayed past it
     * may rightly reap, so that round is repeated). */
    for (;;) {
        fake_entry(&seg, 0, c.pid, 0, 100);
        uint64_t t0 = fshm__now_ms() - 100;
        int n = fshm_server_check_workers(srv);
        if (fshm__now_ms() - t0 < 900) {
            cr_expect_eq(n, 0, "not reaped 10 periods after its last beat");
            break;
        }
        atomic_store(&seg.workers[0].word, fshm__wword(1, FSHM_W_FREE, 0));
    }
    atomic_store(&seg.workers[0].word, fshm__wword(1, FSHM_W_FREE, 0));
    fshm__seg_destroy(&seg, false);
    fshm_server_close(srv);
    kill_and_reap(&c);
}

/* Attaches on go and says 'a', or 'f' if attach failed; then idles. */
static void late_attacher(const char *name)
{
    fshm_worker_t *w;
    if (fshm_worker_attach(&w, name) < 0) {
        report('f');
        _exit(0);
    }
    report('a');
    for (;;)
        pause();
}

Test(death, attach_reclaims_an_entry_whose_process_is_gone, .timeout = 20)
{
    char name[40];
    shm_test_name(name, sizeof(name), "re");
    child_t a = spawn(idler, name), b = spawn(idler, name), c = spawn(late_attacher, name);
    /* Heartbeat 60 s: no periodic check will find the dead worker; only
     * the attach itself can get its entry back. */
    fshm_server_t *srv = open_srv(name, 3, 2, 60000);
    start(&a);
    cr_assert_eq(expect_report(&a), 'a');
    start(&b);
    cr_assert_eq(expect_report(&b), 'a');
    kill_and_reap(&a);
    start(&c);
    /* Serve the loop as the Kolosal server does until c says how it went. */
    shm_sink_t sink = {0};
    char got = 0;
    for (;;) {
        struct pollfd pfd = {.fd = c.rd, .events = POLLIN};
        if (poll(&pfd, 1, 0) == 1) {
            cr_assert_eq(read(c.rd, &got, 1), 1);
            break;
        }
        if (fshm_server_wait(srv, 20) >= 0)
            fshm_server_poll(srv, shm_sink_cb, &sink);
    }
    cr_expect_eq(got, 'a', "the replacement attached instead of 'worker table full'");
    fshm_worker_info_t info[2];
    cr_expect_eq(fshm_server_workers(srv, info, 2), 2);
    fshm_server_close(srv);
    kill_and_reap(&b);
    kill(c.pid, SIGKILL);
    reap(&c);
}
