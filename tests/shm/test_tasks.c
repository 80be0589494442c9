/* Tasks end to end inside one process (workers are threads): round trips,
 * worker errors, size limits, back-pressure, cancellation, the event fd,
 * the worker table view, and a multi-worker stress run. */
#include "segment.h"
#include "shm_setup.h"
#include "shm_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>

static fshm_server_t *open_srv(char *name, size_t size, const char *tag, uint32_t slots)
{
    fshm_config_t cfg;
    shm_test_config(&cfg, shm_test_name(name, size, tag), slots, 1024, 8, 100);
    return shm_test_open(&cfg);
}

/* A worker thread: answers "rev:" + reversed request; "fail" gets -EIO with
 * a text; exits on -ESHUTDOWN or after `limit` tasks (0: no limit). */
typedef struct wthread {
    const char *name;       /* segment name */
    int limit;              /* tasks to answer */
    _Atomic int answered;   /* tasks answered */
    int exit_rc;            /* last error of next() */
    pthread_t th;           /* the thread */
} wthread_t;

static void *worker_main(void *arg)
{
    wthread_t *wt = arg;
    fshm_worker_t *w;
    if ((wt->exit_rc = fshm_worker_attach(&w, wt->name)) < 0)
        return NULL;
    char out[1100];
    while (wt->limit == 0 || atomic_load(&wt->answered) < wt->limit) {
        uint64_t id;
        const void *req;
        size_t len;
        int rc = fshm_worker_next(w, &id, &req, &len, -1);
        if (rc < 0) {
            wt->exit_rc = rc;
            break;
        }
        if (len == 4 && memcmp(req, "fail", 4) == 0) {
            fshm_worker_reply(w, id, -EIO, "handler failed", 14);
        } else {
            memcpy(out, "rev:", 4);
            for (size_t i = 0; i < len; i++)
                out[4 + i] = ((const char *)req)[len - 1 - i];
            fshm_worker_reply(w, id, 0, out, len + 4);
        }
        atomic_fetch_add(&wt->answered, 1);
    }
    fshm_worker_detach(w);
    return NULL;
}

static void start_worker(wthread_t *wt, const char *name, int limit)
{
    memset(wt, 0, sizeof(*wt));
    wt->name = name;
    wt->limit = limit;
    cr_assert_eq(pthread_create(&wt->th, NULL, worker_main, wt), 0);
}

Test(tasks, round_trip_and_worker_error, .timeout = 20)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "rt", 16);
    wthread_t wt;
    start_worker(&wt, name, 0);
    uint64_t a, b, c;
    cr_assert_eq(fshm_server_submit(srv, "hello", 5, &a), 0);
    cr_assert_eq(fshm_server_submit(srv, "fail", 4, &b), 0);
    cr_assert_eq(fshm_server_submit(srv, NULL, 0, &c), 0, "empty request is fine");
    cr_expect(a != b && b != c && a && b && c);
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 3);
    cr_assert_eq(sink.count, 3);
    for (size_t i = 0; i < 3; i++) {
        shm_done_t *d = &sink.items[i];
        if (d->task_id == a) {
            cr_expect_eq(d->status, 0);
            cr_expect_str_eq(d->resp, "rev:olleh");
        } else if (d->task_id == b) {
            cr_expect_eq(d->status, -EIO);
            cr_expect_str_eq(d->resp, "handler failed");
        } else {
            cr_expect_eq(d->task_id, c);
            cr_expect_str_eq(d->resp, "rev:");
        }
    }
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.submitted, 3);
    cr_expect_eq(st.completed, 2);
    cr_expect_eq(st.failed, 1);
    cr_expect_eq(st.in_flight, 0, "every slot reclaimed");
    cr_expect_eq(st.queue_depth, 0);
    cr_expect_eq(fshm_server_cancel(srv, a), -ENOENT, "finished task");
    fshm_server_close(srv);
    pthread_join(wt.th, NULL);
    cr_expect_eq(wt.exit_rc, -ESHUTDOWN);
}

Test(tasks, size_limits_and_arguments, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "size", 4);
    char big[2048] = {0};
    uint64_t id;
    cr_expect_eq(fshm_server_submit(srv, big, 1025, &id), -EMSGSIZE);
    cr_expect_eq(fshm_server_submit(srv, big, 1024, &id), 0, "exactly payload_max fits");
    cr_expect_eq(fshm_server_submit(srv, NULL, 3, &id), -EINVAL);
    cr_expect_eq(fshm_server_submit(srv, big, 3, NULL), -EINVAL);
    cr_expect_eq(fshm_server_poll(srv, NULL, NULL), -EINVAL);

    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0);
    cr_expect_eq(fshm_worker_payload_max(w), 1024);
    uint64_t got;
    const void *req;
    size_t len;
    cr_assert_eq(fshm_worker_next(w, &got, &req, &len, 1000), 0);
    cr_expect_eq(got, id);
    cr_expect_eq(len, 1024);
    cr_expect_eq(fshm_worker_next(w, &got, &req, &len, 0), -EBUSY, "one task at a time");
    cr_expect_eq(fshm_worker_reply(w, got + 1, 0, "x", 1), -EINVAL, "not our task");
    cr_expect_eq(fshm_worker_reply(w, got, 1, "x", 1), -EINVAL, "positive status");
    cr_expect_eq(fshm_worker_reply(w, got, 0, big, 1025), -EMSGSIZE);
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 1);
    cr_expect_eq(sink.items[0].status, -EMSGSIZE, "oversized answer fails the task");
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

Test(tasks, full_slots_say_eagain_at_once, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "full", 4);
    uint64_t id;
    for (int i = 0; i < 4; i++)
        cr_assert_eq(fshm_server_submit(srv, "x", 1, &id), 0);
    cr_expect_eq(fshm_server_submit(srv, "x", 1, &id), -EAGAIN);
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.queue_depth, 4);
    cr_expect_eq(st.in_flight, 4);
    cr_expect_eq(st.submitted, 4);
    fshm_server_close(srv);
}

Test(tasks, next_times_out_when_idle, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "idle", 4);
    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0);
    uint64_t id;
    const void *req;
    size_t len;
    cr_expect_eq(fshm_worker_next(w, &id, &req, &len, 0), -ETIME);
    cr_expect_eq(fshm_worker_next(w, &id, &req, &len, 30), -ETIME);
    cr_expect_eq(fshm_server_wait(srv, 30), 0, "server wait times out too");
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

Test(tasks, cancel_queued_task_is_skipped_and_reclaimed, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "cq", 4);
    uint64_t a, b;
    cr_assert_eq(fshm_server_submit(srv, "a", 1, &a), 0);
    cr_assert_eq(fshm_server_submit(srv, "b", 1, &b), 0);
    cr_expect_eq(fshm_server_cancel(srv, a), 0);
    cr_expect_eq(fshm_server_cancel(srv, a), -ENOENT, "already cancelled");
    cr_expect_eq(fshm_server_cancel(srv, 12345), -ENOENT);
    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0);
    uint64_t got;
    const void *req;
    size_t len;
    cr_assert_eq(fshm_worker_next(w, &got, &req, &len, 1000), 0);
    cr_expect_eq(got, b, "the cancelled task is skipped");
    cr_expect_eq(fshm_worker_reply(w, got, 0, "B", 1), 0);
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 1);
    fshm_server_poll(srv, shm_sink_cb, &sink);
    cr_expect_eq(sink.count, 1, "no callback for the cancelled task");
    cr_expect_eq(sink.items[0].task_id, b);
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.in_flight, 0, "the cancelled slot came back too");
    cr_expect_eq(st.cancelled, 1);
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

Test(tasks, cancel_running_task_drops_the_answer, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "cr", 4);
    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0);
    uint64_t a, got;
    const void *req;
    size_t len;
    cr_assert_eq(fshm_server_submit(srv, "a", 1, &a), 0);
    cr_assert_eq(fshm_worker_next(w, &got, &req, &len, 1000), 0);
    cr_expect_eq(fshm_server_cancel(srv, a), 0);
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.in_flight, 0, "a cancelled task is not in flight");
    cr_expect_eq(st.cancelled_held, 1, "but its worker still holds the slot");
    cr_expect_eq(st.submitted, st.completed + st.failed + st.cancelled + st.in_flight);
    cr_expect_eq(fshm_worker_reply(w, got, 0, "A", 1), 0);
    shm_sink_t sink = {0};
    do {
        fshm_server_wait(srv, 100);
        fshm_server_poll(srv, shm_sink_cb, &sink);
        fshm_server_stats(srv, &st);
    } while (st.cancelled_held != 0);
    cr_expect_eq(sink.count, 0);
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

Test(tasks, event_fd_becomes_readable, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "efd", 4);
    int fd = fshm_server_event_fd(srv);
    cr_assert_geq(fd, 0);
    wthread_t wt;
    start_worker(&wt, name, 1);
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "abc", 3, &id), 0);
    shm_sink_t sink = {0};
    /* As a libuv loop would: sleep on the fd, poll when it fires. */
    while (sink.count == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 5000), 1, "event fd never fired");
        cr_assert_geq(fshm_server_poll(srv, shm_sink_cb, &sink), 0);
    }
    cr_expect_str_eq(sink.items[0].resp, "rev:cba");
    pthread_join(wt.th, NULL);
    fshm_server_close(srv);
}

Test(tasks, worker_table_view, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "view", 4);
    fshm_worker_t *a, *b;
    cr_assert_eq(fshm_worker_attach(&a, name), 0);
    cr_assert_eq(fshm_worker_attach(&b, name), 0);
    uint64_t id, got;
    const void *req;
    size_t len;
    cr_assert_eq(fshm_server_submit(srv, "x", 1, &id), 0);
    cr_assert_eq(fshm_worker_next(a, &got, &req, &len, 1000), 0);
    fshm_worker_info_t info[8];
    int n = fshm_server_workers(srv, info, 8);
    cr_assert_eq(n, 2);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(info[i].pid, getpid());
        if (info[i].index == fshm_worker_index(a)) {
            cr_expect_str_eq(info[i].state, "busy");
            cr_expect_eq(info[i].current_task, id);
        } else {
            cr_expect_str_eq(info[i].state, "idle");
            cr_expect_eq(info[i].current_task, 0);
        }
    }
    cr_assert_eq(fshm_worker_reply(a, got, 0, "y", 1), 0);
    n = fshm_server_workers(srv, info, 8);
    for (int i = 0; i < n; i++) {
        cr_expect_str_eq(info[i].state, "idle");
        if (info[i].index == fshm_worker_index(a))
            cr_expect_eq(info[i].tasks_done, 1);
    }
    cr_expect_eq(fshm_server_workers(srv, info, 1), 1, "max respected");
    fshm_worker_detach(a);
    fshm_worker_detach(b);
    cr_expect_eq(fshm_server_workers(srv, info, 8), 0);
    fshm_server_close(srv);
}

#ifdef FERRY_SANITIZED
#define STRESS_TASKS 3000
#else
#define STRESS_TASKS 30000
#endif

typedef struct tally {
    uint8_t *seen;  /* deliveries per request number */
    size_t bad;     /* wrong status or content */
    size_t count;   /* deliveries */
} tally_t;

static void tally_cb(void *arg, uint64_t task_id, int status, const void *resp, size_t len)
{
    tally_t *t = arg;
    t->count++;
    unsigned n;
    char tail[16];
    /* The answer is "rev:" + the reversed decimal: reverse it back. */
    if (status != 0 || len < 5 || len > 14) {
        t->bad++;
        return;
    }
    size_t digits = len - 4;
    for (size_t i = 0; i < digits; i++)
        tail[i] = ((const char *)resp)[len - 1 - i];
    tail[digits] = '\0';
    if (sscanf(tail, "%u", &n) != 1 || n >= STRESS_TASKS) {
        t->bad++;
        return;
    }
    t->seen[n]++;
}

Test(tasks, stress_three_workers_every_task_once, .timeout = 60)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "stress", 64);
    wthread_t wt[3];
    for (int i = 0; i < 3; i++)
        start_worker(&wt[i], name, 0);
    tally_t t = {.seen = calloc(STRESS_TASKS, 1)};
    unsigned next = 0;
    while (t.count < STRESS_TASKS) {
        while (next < STRESS_TASKS) {
            char buf[16];
            int n = snprintf(buf, sizeof(buf), "%u", next);
            uint64_t id;
            int rc = fshm_server_submit(srv, buf, (size_t)n, &id);
            if (rc == -EAGAIN)
                break; /* back-pressure: collect answers first */
            cr_assert_eq(rc, 0);
            next++;
        }
        if (fshm_server_wait(srv, 1000) >= 0)
            cr_assert_geq(fshm_server_poll(srv, tally_cb, &t), 0);
    }
    cr_expect_eq(t.bad, 0);
    size_t wrong = 0;
    for (unsigned i = 0; i < STRESS_TASKS; i++)
        wrong += t.seen[i] != 1;
    cr_expect_eq(wrong, 0, "%zu tasks not delivered exactly once", wrong);
    fshm_stats_t st;
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.completed, STRESS_TASKS);
    cr_expect_eq(st.in_flight, 0);
    fshm_server_close(srv);
    int total = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(wt[i].th, NULL);
        total += wt[i].answered;
    }
    cr_expect_eq(total, STRESS_TASKS);
    free(t.seen);
}

static void *answer_after_a_while(void *arg)
{
    wthread_t *wt = arg;
    fshm_worker_t *w;
    if ((wt->exit_rc = fshm_worker_attach(&w, wt->name)) < 0)
        return NULL;
    uint64_t id;
    const void *req;
    size_t len;
    if ((wt->exit_rc = fshm_worker_next(w, &id, &req, &len, 5000)) == 0) {
        /* Long past the server's spin: it sleeps on the event fd by now. */
        usleep(50 * 1000);
        wt->exit_rc = fshm_worker_reply(w, id, 0, "ok", 2);
    }
    fshm_worker_detach(w);
    return NULL;
}

/* Regression: after wait() timed out (helper asleep, armed) a later wait()
 * that spins and then sleeps again must still be woken by a completion. */
Test(tasks, wait_after_idle_timeouts_is_still_woken, .timeout = 10)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "wake", 4);
    cr_expect_eq(fshm_server_wait(srv, 5), 0);
    cr_expect_eq(fshm_server_wait(srv, 5), 0);
    wthread_t wt = {.name = name};
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "x", 1, &id), 0);
    cr_assert_eq(pthread_create(&wt.th, NULL, answer_after_a_while, &wt), 0);
    shm_sink_t sink = {0};
    /* The worker's attach also signals (a worker event): loop until the
     * completion itself arrives; a lost wake-up hangs here. */
    while (sink.count == 0) {
        cr_assert_eq(fshm_server_wait(srv, -1), 1);
        cr_assert_geq(fshm_server_poll(srv, shm_sink_cb, &sink), 0);
    }
    cr_expect_str_eq(sink.items[0].resp, "ok");
    pthread_join(wt.th, NULL);
    cr_expect_eq(wt.exit_rc, 0);
    fshm_server_close(srv);
}

/* Issue 6 item 5: with no worker, cancelled (timed out) tasks used to keep
 * their slots until a worker skipped them, so the queue looked full while
 * nothing was pending. */
Test(tasks, cancelled_queued_tasks_free_their_slots_at_once, .timeout = 20)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "cslot", 4);
    uint64_t id[4];
    fshm_stats_t st;
    for (int lap = 0; lap < 50; lap++) {
        for (int i = 0; i < 4; i++)
            cr_assert_eq(fshm_server_submit(srv, "x", 1, &id[i]), 0, "lap %d task %d", lap, i);
        fshm_server_stats(srv, &st);
        cr_assert_eq(st.in_flight, 4);
        cr_assert_eq(st.queue_depth, 4);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(fshm_server_cancel(srv, id[i]), 0);
        fshm_server_stats(srv, &st);
        cr_assert_eq(st.in_flight, 0, "lap %d: cancelled tasks are not pending", lap);
        cr_assert_eq(st.queue_depth, 0, "lap %d: nor queued", lap);
    }
    /* Four live tasks behind 200 cancelled ones: a worker gets exactly
     * those four, in order, and nothing else. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(fshm_server_submit(srv, "y", 1, &id[i]), 0);
    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0);
    for (int i = 0; i < 4; i++) {
        uint64_t got;
        const void *req;
        size_t len;
        cr_assert_eq(fshm_worker_next(w, &got, &req, &len, 1000), 0);
        cr_expect_eq(got, id[i]);
        cr_assert_eq(fshm_worker_reply(w, got, 0, "Y", 1), 0);
    }
    uint64_t got;
    const void *req;
    size_t len;
    cr_expect_eq(fshm_worker_next(w, &got, &req, &len, 0), -ETIME, "no cancelled task runs");
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 4);
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.in_flight, 0);
    cr_expect_eq(st.completed, 4);
    cr_expect_eq(st.cancelled, 200);
    cr_expect_eq(st.submitted, st.completed + st.failed + st.cancelled + st.in_flight,
                 "the counters reconcile");
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

/* Regression (the TSan hang of stress_three_workers_every_task_once): a
 * worker preempted between claiming a request-ring position and handing
 * the cell back leaves that cell busy for a lap. The server's push at the
 * same cell one lap later found it "full", compacted the ring (popped every
 * ticket) and could not push the live tickets back: they were lost, their
 * slots stayed QUEUED forever and the workers slept. Made deterministic
 * here: a position claimed and not handed back, a lap of tickets (some
 * live, some of cancelled tasks), one more submit, then the cell comes
 * back: every live task must still reach a worker. */
Test(tasks, slow_hand_back_of_a_request_cell_loses_no_ticket, .timeout = 20)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "handback", 4);
    fshm_seg_t seg; /* our own view, to act as the preempted worker */
    cr_assert_eq(fshm__seg_attach(&seg, name), 0, "%s", fshm_last_error());
    uint32_t cells = seg.lay.req_cells; /* 8 for 4 slots */
    uint64_t t0, a, b, x, c;
    cr_assert_eq(fshm_server_submit(srv, "t0", 2, &t0), 0);
    /* A worker claims position 0 and is preempted before the hand-back. */
    cr_assert_eq(fshm__ring_pop_claim_only(&seg.req, NULL), 0);
    cr_assert_eq(fshm_server_submit(srv, "a", 1, &a), 0);
    cr_assert_eq(fshm_server_submit(srv, "b", 1, &b), 0);
    /* Fill the rest of the lap with stale tickets of cancelled tasks. */
    for (uint32_t i = 3; i < cells; i++) {
        cr_assert_eq(fshm_server_submit(srv, "x", 1, &x), 0, "position %u", i);
        cr_assert_eq(fshm_server_cancel(srv, x), 0);
    }
    /* Position 8 is cell 0 again, still not handed back: the ring is not
     * full (7 tickets in 8 cells), so this task must be taken. */
    cr_expect_eq(fshm_server_submit(srv, "c", 1, &c), 0,
                 "submit with a free slot and a ring that is not full");
    /* The preempted worker resumes and hands the cell back. */
    uint64_t v;
    cr_assert_eq(fshm__ring_repair_pop(&seg.req, 0, &v), 1);
    cr_expect_eq((uint32_t)(v >> 32), (uint32_t)(t0 & 0xffff), "position 0 held t0's ticket");
    fshm_server_poll(srv, shm_sink_cb, &(shm_sink_t){0});
    fshm__seg_destroy(&seg, false);

    /* A worker must now get a, b and c (t0's ticket is with the fake worker). */
    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0, "%s", fshm_last_error());
    const char *want[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        uint64_t id;
        const void *req;
        size_t len;
        int rc = fshm_worker_next(w, &id, &req, &len, 2000);
        cr_assert_eq(rc, 0, "task %s never reached a worker (rc %d): its ticket was lost", want[i],
                     rc);
        cr_expect_eq(len, 1);
        cr_expect_eq(memcmp(req, want[i], 1), 0, "task %d is %.*s", i, (int)len,
                     (const char *)req);
        cr_assert_eq(fshm_worker_reply(w, id, 0, "ok", 2), 0);
    }
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 3);
    cr_expect_eq(sink.count, 3);
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

/* Issue 6 item 23: small messages travel inside the ring cells, large ones
 * through the slot's buffers. Both directions, on both sides of the
 * boundary (FSHM_INLINE_MAX), with contents that differ per size so a
 * message read from the wrong place (a stale cell, the other buffer) shows. */
Test(tasks, inline_and_out_of_line_messages_round_trip, .timeout = 20)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "inl", 4);
    fshm_worker_t *w;
    cr_assert_eq(fshm_worker_attach(&w, name), 0);
    const size_t sizes[] = {0, 1, 40, 41, FSHM_INLINE_MAX, FSHM_INLINE_MAX + 1, 1000, 1024, 3};
    char req[1024], ans[1024];
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        for (size_t i = 0; i < n; i++)
            req[i] = (char)('a' + (i * 7 + k) % 26);
        uint64_t id, got;
        cr_assert_eq(fshm_server_submit(srv, req, n, &id), 0);
        const void *r;
        size_t len;
        cr_assert_eq(fshm_worker_next(w, &got, &r, &len, 2000), 0);
        cr_assert_eq(len, n, "request of %zu bytes", n);
        cr_expect_eq(memcmp(r, req, n), 0, "request of %zu bytes arrives intact", n);
        /* The answer is 1024 - n bytes: small answers to large requests and
         * the other way round. */
        size_t m = 1024 - n;
        for (size_t i = 0; i < m; i++)
            ans[i] = (char)('A' + (i * 3 + k) % 26);
        cr_assert_eq(fshm_worker_reply(w, got, k % 2 ? -EIO : 0, ans, m), 0);
        shm_sink_t sink = {0};
        shm_sink_wait(srv, &sink, 1);
        cr_expect_eq(sink.items[0].task_id, id);
        cr_expect_eq(sink.items[0].status, k % 2 ? -EIO : 0, "status of answer %zu", k);
        cr_expect_eq(sink.items[0].len, m, "answer of %zu bytes", m);
        size_t cmp = m < sizeof(sink.items[0].resp) - 1 ? m : sizeof(sink.items[0].resp) - 1;
        cr_expect_eq(memcmp(sink.items[0].resp, ans, cmp), 0, "answer of %zu bytes intact", m);
    }
    /* And the small sizes in the other direction too. */
    for (size_t n = 0; n <= FSHM_INLINE_MAX + 1; n += 13) {
        uint64_t id, got;
        memset(req, (int)('0' + n % 10), n);
        cr_assert_eq(fshm_server_submit(srv, req, n, &id), 0);
        const void *r;
        size_t len;
        cr_assert_eq(fshm_worker_next(w, &got, &r, &len, 2000), 0);
        cr_assert_eq(len, n);
        cr_expect_eq(memcmp(r, req, n), 0);
        cr_assert_eq(fshm_worker_reply(w, got, 0, r, len), 0);
        shm_sink_t sink = {0};
        shm_sink_wait(srv, &sink, 1);
        cr_expect_eq(sink.items[0].len, n);
        cr_expect_eq(memcmp(sink.items[0].resp, req, n < 255 ? n : 255), 0, "echo of %zu", n);
    }
    fshm_worker_detach(w);
    fshm_server_close(srv);
}

/* ---- run words (issue 6 item 23): where server and workers are ---- */

typedef struct srv_waiter {
    fshm_server_t *srv;         /* the server (only this thread calls it meanwhile) */
    _Atomic int seen_asleep;    /* the main thread saw srv_cpu say "asleep" */
    pthread_t th;               /* the thread */
} srv_waiter_t;

static void *srv_wait_main(void *arg)
{
    srv_waiter_t *sw = arg;
    /* Nothing is pending: every wait sleeps until its timeout. */
    while (!atomic_load(&sw->seen_asleep))
        fshm_server_wait(sw->srv, 50);
    return NULL;
}

Test(tasks, run_words_follow_server_and_worker, .timeout = 30)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "run", 4);
    fshm_seg_t seg; /* a view of the segment, to read the run words */
    cr_assert_eq(fshm__seg_attach(&seg, name), 0);
    cr_expect_eq(atomic_load(&seg.hdr->srv_cpu), FSHM_RUN_UNKNOWN,
                 "a server that never waited tells nothing");

    /* A worker that waits for a task sleeps soon, and says so. */
    wthread_t wt;
    start_worker(&wt, name, 1);
    while (atomic_load(&seg.workers[0].word) == 0 ||
           atomic_load(&seg.workers[0].run_cpu) != FSHM_RUN_ASLEEP)
        usleep(1000);

    /* Woken by a task, it runs (CPU + 1) and answers. */
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, "abc", 3, &id), 0);
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 1);
    cr_expect_str_eq(sink.items[0].resp, "rev:cba");
    /* A wait that finds nothing ready (the answer above may have been
     * there before any wait began) spins, saying where it runs. */
    cr_expect_eq(fshm_server_wait(srv, 0), 0);
    uint32_t v = atomic_load(&seg.hdr->srv_cpu);
    cr_expect(v != FSHM_RUN_ASLEEP && v != FSHM_RUN_UNKNOWN,
              "a server that waited says where it runs (%u)", v);
    pthread_join(wt.th, NULL);
    cr_expect_eq(atomic_load(&seg.workers[0].run_cpu), FSHM_RUN_ASLEEP,
                 "a detached worker's entry says asleep");

    /* The server asleep in fshm_server_wait() says so too. */
    srv_waiter_t sw = {.srv = srv};
    cr_assert_eq(pthread_create(&sw.th, NULL, srv_wait_main, &sw), 0);
    while (atomic_load(&seg.hdr->srv_cpu) != FSHM_RUN_ASLEEP)
        usleep(1000);
    atomic_store(&sw.seen_asleep, 1);
    pthread_join(sw.th, NULL);

    fshm__seg_destroy(&seg, false);
    fshm_server_close(srv);
}
