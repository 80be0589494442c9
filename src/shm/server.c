/* Server side: task slots, submission, cancellation, delivery of completions,
 * and the helper thread that turns futex wakes into event-fd readiness.
 *
 * Workload: one loop thread submits and polls; workers complete tasks in
 * microseconds. The hot path (submit, poll of a ready completion) makes no
 * system call when workers are spinning; a sleeping worker costs one
 * FUTEX_WAKE per submit. Slots are allocated from a private free stack, so a
 * worker can never make the server hand out a slot twice. */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* How long fshm_server_wait() spins before sleeping. */
#define FSHM_SERVER_SPIN_NS 20000ull

int fshm__srv_check_workers(fshm_server_t *srv); /* workers.c */

static void efd_write(fshm_server_t *srv)
{
    uint64_t one = 1;
    ssize_t rc = write(srv->efd, &one, sizeof(one));
    (void)rc; /* EAGAIN only when the counter is saturated: still readable */
}

static void efd_drain(fshm_server_t *srv)
{
    uint64_t v;
    ssize_t rc = read(srv->efd, &v, sizeof(v));
    (void)rc; /* EAGAIN: nothing pending */
    srv->efd_dirty = false;
}

/* The loop thread makes the event fd readable (deferred deliveries, or a
 * poll that ran out of budget); poll() clears it. */
static void efd_signal(fshm_server_t *srv)
{
    srv->efd_dirty = true;
    efd_write(srv);
}

/* ---- helper thread ---- */

static bool helper_ready(fshm_server_t *srv, uint32_t seen_events)
{
    return fshm__ring_ready(&srv->seg.cmp) ||
           atomic_load_explicit(&srv->seg.hdr->worker_events, memory_order_acquire) !=
               seen_events;
}

/* Sleeps on the segment's done_want word; workers that publish a completion
 * (or attach/detach) clear it and wake us; we make the event fd readable and
 * wait until poll() has consumed it, so a burst of completions costs one
 * wake-up, not one per completion. */
static void *helper_main(void *arg)
{
    fshm_server_t *srv = arg;
    fshm_hdr_t *h = srv->seg.hdr;
    uint32_t seen = atomic_load(&h->worker_events);

    atomic_store(&srv->started, 1);
    fshm__futex_wake(&srv->started, 1, false);
    while (!atomic_load(&srv->stop)) {
        if (atomic_load(&srv->spin_mode)) {
            fshm__futex_wait(&srv->spin_mode, 1, NULL, false);
            continue;
        }
        atomic_store(&h->done_want, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (!helper_ready(srv, seen) && !atomic_load(&srv->stop) &&
            !atomic_load(&srv->spin_mode))
            fshm__futex_wait(&h->done_want, 1, NULL, true);
        if (atomic_load(&srv->stop))
            break;
        if (atomic_load(&srv->spin_mode) || !helper_ready(srv, seen))
            continue;
        seen = atomic_load(&h->worker_events);
        /* Flag before writing: if poll() clears the flag before our write
         * lands, we do not wait below, and the fd stays readable, so poll()
         * runs again and reads it. The other order could leave us waiting
         * for an acknowledgement with the fd already drained. */
        atomic_store(&srv->signaled, 1);
        efd_write(srv);
        while (atomic_load(&srv->signaled) && !atomic_load(&srv->stop))
            fshm__futex_wait(&srv->signaled, 1, NULL, false);
    }
    return NULL;
}

/* ---- open / close ---- */

int fshm_server_open(fshm_server_t **out, const fshm_config_t *cfg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    fshm_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->efd = -1;
    int rc = fshm__seg_create(&srv->seg, cfg);
    if (rc < 0)
        goto fail_seg;
    /* Keep the detail (e.g. "replaced a stale segment") for the caller. */
    char note[256];
    snprintf(note, sizeof(note), "%s", fshm_last_error());

    /* Only the server pops completions. */
    srv->seg.cmp.single_consumer = true;
    uint32_t n = srv->seg.cfg.ring_slots;
    srv->max_repairs = 2 * srv->seg.cfg.max_workers + 16;
    srv->tasks = calloc(n, sizeof(*srv->tasks));
    srv->free_stack = calloc(n, sizeof(*srv->free_stack));
    srv->deferred = calloc(n, sizeof(*srv->deferred));
    srv->scratch = calloc(srv->seg.lay.req_cells, sizeof(*srv->scratch));
    srv->backlog = calloc(srv->seg.lay.req_cells, sizeof(*srv->backlog));
    srv->repairs = calloc(srv->max_repairs, sizeof(*srv->repairs));
    if (!srv->tasks || !srv->free_stack || !srv->deferred || !srv->scratch || !srv->backlog ||
        !srv->repairs) {
        rc = -ENOMEM;
        goto fail_alloc;
    }
    /* Lowest index on top: keeps the touched part of the payload area small. */
    for (uint32_t i = 0; i < n; i++)
        srv->free_stack[i] = n - 1 - i;
    srv->nfree = n;
    srv->last_check_ms = fshm__now_coarse_ms();
    srv->seen_events = atomic_load(&srv->seg.hdr->worker_events);

    srv->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->efd < 0) {
        rc = fshm__fail(-errno, "eventfd: %s", strerror(errno));
        goto fail_alloc;
    }
    rc = pthread_create(&srv->helper, NULL, helper_main, srv);
    if (rc != 0) {
        rc = fshm__fail(-rc, "pthread_create: %s", strerror(rc));
        goto fail_thread;
    }
    srv->helper_started = true;
    /* Return only once the helper runs its loop: a thread still starting
     * up may hold allocator locks, and a fork() right after open() would
     * give the child those locks held forever. */
    while (!atomic_load(&srv->started))
        fshm__futex_wait(&srv->started, 0, NULL, false);
    fshm__fail(0, "%s", note);
    *out = srv;
    return 0;

fail_thread:
    close(srv->efd);
fail_alloc:
    free(srv->tasks);
    free(srv->free_stack);
    free(srv->deferred);
    free(srv->scratch);
    free(srv->backlog);
    free(srv->repairs);
    fshm__seg_destroy(&srv->seg, true);
fail_seg:
    free(srv);
    return rc;
}

void fshm_server_close(fshm_server_t *srv)
{
    if (!srv)
        return;
    fshm_hdr_t *h = srv->seg.hdr;
    /* Workers check state after every wake: they return -ESHUTDOWN. */
    atomic_store(&h->state, FSHM_SEG_CLOSED);
    fshm__evc_broadcast(&h->work);
    if (srv->helper_started) {
        atomic_store(&srv->stop, 1);
        atomic_store(&h->done_want, 0);
        fshm__futex_wake(&h->done_want, INT_MAX, true);
        fshm__futex_wake(&srv->signaled, INT_MAX, false);
        fshm__futex_wake(&srv->spin_mode, INT_MAX, false);
        pthread_join(srv->helper, NULL);
    }
    if (srv->efd >= 0)
        close(srv->efd);
    fshm__seg_destroy(&srv->seg, true);
    free(srv->tasks);
    free(srv->free_stack);
    free(srv->deferred);
    free(srv->scratch);
    free(srv->backlog);
    free(srv->repairs);
    free(srv);
}

const char *fshm_server_path(const fshm_server_t *srv)
{
    return srv ? srv->seg.path : "";
}

int fshm_server_event_fd(const fshm_server_t *srv)
{
    return srv ? srv->efd : -EINVAL;
}

/* ---- submit / cancel ---- */

/* A ticket that still stands for a queued dispatch of a live task. */
static bool ticket_live(fshm_server_t *srv, uint64_t ticket)
{
    uint32_t idx = (uint32_t)(ticket >> 32), seq = (uint32_t)ticket;
    if (ticket == FSHM_RING_HOLE || idx >= srv->seg.cfg.ring_slots)
        return false;
    fshm_task_t *t = &srv->tasks[idx];
    return t->busy && t->seq == seq &&
           atomic_load(&srv->seg.slots[idx].word) == fshm__slot_word(seq, FSHM_SLOT_QUEUED, 0);
}

/* ---- the request ring and the backlog ----
 * A push can find the next cell still being emptied by a worker that was
 * preempted (or died) between claiming it and handing it back, one lap
 * earlier: the ring is not full, but that ticket cannot go in yet. It then
 * waits in a private FIFO, the backlog, behind which every later ticket
 * queues (order is kept), and is pushed by the next submit, poll, wait or
 * worker check. Nothing is ever dropped: a slot is QUEUED exactly while its
 * live ticket is in the ring, in the backlog, or held by a worker. */

static uint32_t bl_cap(const fshm_server_t *srv)
{
    return srv->seg.lay.req_cells;
}

/* One push of a ticket into the request ring, carrying the request inline
 * when it is small (the server's own copy stays in the slot's buffer, for
 * a re-queue and for large requests; a worker never reads that line for a
 * small request, so it costs no cache-line move). */
static int ring_put(fshm_server_t *srv, uint64_t ticket)
{
    uint32_t idx = (uint32_t)(ticket >> 32);
    if (ticket == FSHM_RING_HOLE || idx >= srv->seg.cfg.ring_slots)
        return fshm__ring_push(&srv->seg.req, ticket, NULL);
    uint32_t len = srv->tasks[idx].req_len;
    if (len > FSHM_INLINE_MAX)
        return fshm__ring_push(&srv->seg.req, ticket, NULL);
    return fshm__ring_push_msg(&srv->seg.req, ticket, 0, fshm__slot_req(&srv->seg, idx), len,
                               NULL);
}

/* Keeps only the live tickets of the backlog (stale ones are tickets of
 * tasks cancelled while waiting there). */
static void backlog_prune(fshm_server_t *srv)
{
    uint32_t cap = bl_cap(srv), n = 0;
    for (uint32_t i = 0; i < srv->bl_count; i++) {
        uint64_t t = srv->backlog[(srv->bl_head + i) % cap];
        if (ticket_live(srv, t))
            srv->scratch[n++] = t;
    }
    memcpy(srv->backlog, srv->scratch, n * sizeof(*srv->backlog));
    srv->bl_head = 0;
    srv->bl_count = n;
}

static void backlog_add(fshm_server_t *srv, uint64_t ticket)
{
    uint32_t cap = bl_cap(srv);
    /* A slot has at most one live ticket, so after pruning there is room
     * (cap = 2 x ring_slots). */
    if (srv->bl_count == cap)
        backlog_prune(srv);
    if (srv->bl_count == cap)
        return; /* cannot happen: more live tickets than slots */
    srv->backlog[(srv->bl_head + srv->bl_count) % cap] = ticket;
    srv->bl_count++;
}

/* The ring is really full: with no worker taking tickets, tickets of
 * cancelled tasks pile up. The ring has twice as many cells as there are
 * slots and a slot has at most one live ticket, so at least half of it is
 * stale: take everything out and queue the live tickets again, in order,
 * ahead of the backlog. Rare (only with no worker taking tickets), O(ring). */
static void compact_requests(fshm_server_t *srv)
{
    uint32_t cap = bl_cap(srv), n = 0;
    uint64_t v;
    for (uint32_t i = 0; i < srv->seg.lay.req_cells; i++) {
        if (fshm__ring_pop(&srv->seg.req, &v, NULL, NULL) < 0)
            break;
        if (ticket_live(srv, v) && n < cap)
            srv->scratch[n++] = v;
    }
    for (uint32_t i = 0; i < srv->bl_count && n < cap; i++) {
        uint64_t t = srv->backlog[(srv->bl_head + i) % cap];
        if (ticket_live(srv, t))
            srv->scratch[n++] = t;
    }
    memcpy(srv->backlog, srv->scratch, n * sizeof(*srv->backlog));
    srv->bl_head = 0;
    srv->bl_count = n;
}

void fshm__srv_flush(fshm_server_t *srv)
{
    uint32_t cap = bl_cap(srv);
    int pushed = 0;
    bool compacted = false;
    while (srv->bl_count) {
        int rc = ring_put(srv, srv->backlog[srv->bl_head]);
        if (rc == 0) {
            srv->bl_head = (srv->bl_head + 1) % cap;
            srv->bl_count--;
            pushed++;
        } else if (rc == -EAGAIN && !compacted) {
            compact_requests(srv);
            compacted = true;
        } else {
            break; /* -EBUSY: a worker still empties that cell; next time */
        }
    }
    /* Wake as many workers as tickets went in (a worker that looked while
     * the ring was being compacted went back to sleep). */
    if (pushed && fshm__evc_notify(&srv->seg.hdr->work, pushed))
        srv->woke = true;
}

/* Queues a ticket: into the ring at once if nothing waits before it. */
static void push_request(fshm_server_t *srv, uint64_t ticket)
{
    if (srv->bl_count == 0 && ring_put(srv, ticket) == 0) {
        if (fshm__evc_notify(&srv->seg.hdr->work, 1))
            srv->woke = true;
        return;
    }
    backlog_add(srv, ticket);
    fshm__srv_flush(srv);
}

int fshm_server_submit(fshm_server_t *srv, const void *req, size_t len, uint64_t *task_id_out)
{
    if (!srv || !task_id_out || (!req && len))
        return -EINVAL;
    if (len > srv->seg.cfg.payload_max)
        return -EMSGSIZE;
    if (srv->nfree == 0)
        return -EAGAIN;

    uint32_t idx = srv->free_stack[srv->nfree - 1];
    fshm_task_t *t = &srv->tasks[idx];
    fshm_slot_t *s = &srv->seg.slots[idx];
    uint32_t seq = t->seq + 1;
    uint64_t id = (srv->serial + 1) << 16 | idx;

    if (len)
        memcpy(fshm__slot_req(&srv->seg, idx), req, len);
    s->task_id = id;
    s->req_len = (uint32_t)len;
    s->resp_len = 0;
    s->status = 0;
    s->attempt = 1;
    atomic_store_explicit(&s->word, fshm__slot_word(seq, FSHM_SLOT_QUEUED, 0),
                          memory_order_release);
    srv->nfree--;
    srv->serial++;
    t->seq = seq;
    t->id = id;
    t->attempts = 1;
    t->fail_status = 0;
    t->req_len = (uint32_t)len;
    t->busy = 1;
    t->cancelled = 0;
    srv->stats.submitted++;
    /* After the task record: the push may compact, which asks ticket_live(). */
    push_request(srv, fshm__ticket(idx, seq));
    *task_id_out = id;
    return 0;
}

static fshm_task_t *task_lookup(fshm_server_t *srv, uint64_t task_id, uint32_t *idx_out)
{
    uint32_t idx = (uint32_t)(task_id & 0xffff);
    if (task_id == 0 || idx >= srv->seg.cfg.ring_slots)
        return NULL;
    fshm_task_t *t = &srv->tasks[idx];
    if (!t->busy || t->id != task_id)
        return NULL;
    *idx_out = idx;
    return t;
}

static void release_slot(fshm_server_t *srv, uint32_t idx);

int fshm_server_cancel(fshm_server_t *srv, uint64_t task_id)
{
    uint32_t idx;
    if (!srv)
        return -EINVAL;
    fshm_task_t *t = task_lookup(srv, task_id, &idx);
    if (!t || t->cancelled)
        return -ENOENT;
    srv->stats.cancelled++;
    /* Still queued (no worker has claimed it): free the slot now, so a
     * cancelled task never holds one while nobody takes tickets. The seq
     * bump in release_slot makes the ticket in the ring stale; a worker
     * that pops it drops it, and compact_requests() drops it if the ring
     * fills up first. Deferred slots (HELD, DONE) are never QUEUED. */
    uint64_t w = fshm__slot_word(t->seq, FSHM_SLOT_QUEUED, 0);
    if (!t->deferred && atomic_compare_exchange_strong(
                            &srv->seg.slots[idx].word, &w,
                            fshm__slot_word(t->seq, FSHM_SLOT_HELD, 0))) {
        release_slot(srv, idx);
        return 0;
    }
    /* A worker has it: its answer is dropped on delivery, which frees the
     * slot; until then it is counted as cancelled_held, not in_flight. */
    t->cancelled = 1;
    srv->ncancelled++;
    return 0;
}

/* ---- reaping helpers used by workers.c ---- */

void fshm__srv_defer(fshm_server_t *srv, uint32_t idx)
{
    fshm_task_t *t = &srv->tasks[idx];
    if (t->deferred)
        return;
    uint32_t n = srv->seg.cfg.ring_slots;
    t->deferred = 1;
    srv->deferred[(srv->def_head + srv->def_count) % n] = idx;
    srv->def_count++;
    efd_signal(srv);
}

static void hold_and_fail(fshm_server_t *srv, uint32_t idx, uint64_t expect, int status)
{
    fshm_task_t *t = &srv->tasks[idx];
    if (!atomic_compare_exchange_strong(&srv->seg.slots[idx].word, &expect,
                                        fshm__slot_word(t->seq, FSHM_SLOT_HELD, 0)))
        return; /* the worker moved on meanwhile: its own path handles it */
    t->fail_status = status;
    fshm__srv_defer(srv, idx);
}

void fshm__srv_requeue(fshm_server_t *srv, uint32_t idx, uint64_t expect_word)
{
    fshm_task_t *t = &srv->tasks[idx];
    fshm_slot_t *s = &srv->seg.slots[idx];
    uint32_t st = fshm__sw_state(expect_word);
    /* A lost ticket (QUEUED) was never run: no attempt used up. */
    bool ran = st == FSHM_SLOT_CLAIMED || st == FSHM_SLOT_WRITING;

    if (t->cancelled) {
        hold_and_fail(srv, idx, expect_word, -ECANCELED);
        return;
    }
    if (ran && t->attempts >= srv->seg.cfg.max_attempts) {
        hold_and_fail(srv, idx, expect_word, -EOWNERDEAD);
        return;
    }
    uint32_t seq = t->seq + 1;
    if (!atomic_compare_exchange_strong(&s->word, &expect_word,
                                        fshm__slot_word(seq, FSHM_SLOT_QUEUED, 0)))
        return;
    t->seq = seq;
    if (ran) {
        t->attempts++;
        srv->stats.requeued++;
    }
    s->attempt = t->attempts;
    push_request(srv, fshm__ticket(idx, seq));
}

/* ---- delivery ---- */

static void release_slot(fshm_server_t *srv, uint32_t idx)
{
    fshm_task_t *t = &srv->tasks[idx];
    t->seq++; /* every ticket of the old dispatch is now stale */
    atomic_store_explicit(&srv->seg.slots[idx].word, fshm__slot_word(t->seq, FSHM_SLOT_FREE, 0),
                          memory_order_release);
    if (t->cancelled)
        srv->ncancelled--;
    t->busy = 0;
    t->id = 0;
    t->cancelled = 0;
    srv->free_stack[srv->nfree++] = idx;
}

/* An answer that came inside its completion cell (copied to srv->inbuf). */
typedef struct fshm_inline {
    int32_t status; /* the worker's status */
    uint32_t len;   /* bytes in srv->inbuf */
} fshm_inline_t;

/* Delivers slot idx if it really is finished with dispatch seq. Everything
 * the worker wrote is checked before use. Returns 1 if cb was called. */
static int deliver(fshm_server_t *srv, uint32_t idx, uint32_t seq, bool from_deferred,
                   const fshm_inline_t *in, fshm_done_cb cb, void *arg)
{
    fshm_task_t *t = &srv->tasks[idx];
    fshm_slot_t *s = &srv->seg.slots[idx];
    if (from_deferred) {
        t->deferred = 0;
        seq = t->seq;
    }
    if (!t->busy || t->seq != seq)
        return 0; /* stale ticket */

    int status;
    const void *resp;
    size_t len;
    uint32_t st;
    if (in && !t->deferred) {
        /* The answer came inline: no need to read the slot line. A
         * completion ticket with the current seq can only come from the
         * worker that moved this dispatch to DONE (every other path that
         * changes a claimed slot bumps seq or holds it, and a worker
         * pushes only after its CAS to WRITING succeeded). */
        st = FSHM_SLOT_DONE;
    } else {
        uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
        if (fshm__sw_seq(w) != seq)
            return 0;
        st = fshm__sw_state(w);
        in = NULL;
    }
    if (st == FSHM_SLOT_DONE && in) {
        status = in->status;
        len = in->len;
        resp = srv->inbuf;
        if (status > 0 || status < -4095 || len > srv->seg.cfg.payload_max) {
            status = -EPROTO;
            len = (size_t)snprintf(srv->errtext, sizeof(srv->errtext),
                                   "worker returned an invalid answer");
            resp = srv->errtext;
        }
    } else if (st == FSHM_SLOT_DONE) {
        status = s->status;
        len = s->resp_len;
        resp = fshm__slot_resp(&srv->seg, idx);
        if (status > 0 || status < -4095 || len > srv->seg.cfg.payload_max) {
            status = -EPROTO;
            len = (size_t)snprintf(srv->errtext, sizeof(srv->errtext),
                                   "worker returned an invalid answer");
            resp = srv->errtext;
        }
    } else if (st == FSHM_SLOT_HELD && from_deferred) {
        status = t->fail_status;
        if (status == -EOWNERDEAD)
            len = (size_t)snprintf(srv->errtext, sizeof(srv->errtext),
                                   "worker died while running the task; gave up after %u "
                                   "attempts",
                                   t->attempts);
        else
            len = (size_t)snprintf(srv->errtext, sizeof(srv->errtext), "%s",
                                   fshm_strerror(status));
        resp = srv->errtext;
    } else {
        return 0; /* not finished with this dispatch */
    }

    uint64_t id = t->id;
    bool cancelled = t->cancelled;
    t->id = 0; /* cancel() from the callback must say -ENOENT */
    if (!cancelled) {
        if (status == 0)
            srv->stats.completed++;
        else
            srv->stats.failed++;
        cb(arg, id, status, resp, len);
    }
    release_slot(srv, idx);
    return cancelled ? 0 : 1;
}

static void maybe_check_workers(fshm_server_t *srv)
{
    uint32_t ev = atomic_load_explicit(&srv->seg.hdr->worker_events, memory_order_acquire);
    if (ev != srv->seen_events ||
        fshm__now_coarse_ms() - srv->last_check_ms >= srv->seg.cfg.heartbeat_ms)
        fshm__srv_check_workers(srv);
}

int fshm_server_poll(fshm_server_t *srv, fshm_done_cb cb, void *arg)
{
    if (!srv || !cb)
        return -EINVAL;
    /* Clear the event fd first: completions published after this point
     * signal it again, so none is left unannounced. */
    /* In spin mode (fshm_server_wait) nobody sleeps on the fd: skip the
     * system call; wait() drains leftovers before it sleeps. */
    if (!atomic_load(&srv->spin_mode) || srv->efd_dirty)
        efd_drain(srv);
    if (atomic_load(&srv->signaled)) {
        atomic_store(&srv->signaled, 0);
        fshm__futex_wake(&srv->signaled, 1, false);
    }
    maybe_check_workers(srv);
    if (srv->bl_count)
        fshm__srv_flush(srv);

    int n = 0;
    /* Bounded so one poll cannot starve the loop under a flood. */
    uint32_t budget = 2 * srv->seg.cfg.ring_slots;
    for (;;) {
        while (srv->def_count) {
            uint32_t idx = srv->deferred[srv->def_head];
            srv->def_head = (srv->def_head + 1) % srv->seg.cfg.ring_slots;
            srv->def_count--;
            n += deliver(srv, idx, 0, true, NULL, cb, arg);
        }
        if (budget-- == 0) {
            efd_signal(srv); /* come back for the rest */
            break;
        }
        uint64_t ticket;
        fshm_inline_t in;
        if (fshm__ring_pop_msg(&srv->seg.cmp, &ticket, &in.status, srv->inbuf, &in.len, NULL,
                               NULL) < 0)
            break;
        if (ticket == FSHM_RING_HOLE)
            continue; /* left by the repair of a dead worker's push */
        uint32_t idx = (uint32_t)(ticket >> 32);
        if (idx >= srv->seg.cfg.ring_slots)
            continue; /* garbage from a worker: ignore */
        n += deliver(srv, idx, (uint32_t)ticket, false,
                     in.len == FSHM_NOT_INLINE ? NULL : &in, cb, arg);
    }
    return n;
}

/* Where the workers that could answer us are, from their run words (each
 * on a line written only when it changes: reading it moves nothing while
 * they spin). One running on another CPU: spinning pays. Only on ours:
 * hand it the CPU. All asleep: nobody can answer before something wakes
 * them, so sleep at once. A worker our submit just woke is about to run
 * somewhere: unknown, the learned budget decides. */
static fshm_peer_t workers_peer(fshm_server_t *srv)
{
    if (srv->woke) {
        srv->woke = false;
        return FSHM_PEER_UNKNOWN;
    }
    fshm_peer_t peer = FSHM_PEER_ASLEEP;
    for (uint32_t i = 0; i < srv->live_hi && i < srv->seg.cfg.max_workers; i++) {
        uint32_t v = atomic_load_explicit(&srv->seg.workers[i].run_cpu, memory_order_relaxed);
        if (v == FSHM_RUN_ASLEEP)
            continue;
        fshm_peer_t p = fshm__peer(v);
        if (p != FSHM_PEER_HERE)
            return p; /* ELSEWHERE or UNKNOWN: spinning may pay */
        peer = p;
    }
    return peer;
}

static bool loop_ready(void *arg)
{
    fshm_server_t *srv = arg;
    return srv->def_count > 0 || fshm__ring_ready(&srv->seg.cmp);
}

int fshm_server_wait(fshm_server_t *srv, int timeout_ms)
{
    if (!srv)
        return -EINVAL;
    if (srv->bl_count)
        fshm__srv_flush(srv);
    if (loop_ready(srv))
        return 1;
    /* Stand the helper down while we spin: a worker then publishes without
     * any wake-up system call. */
    if (!atomic_load(&srv->spin_mode)) {
        atomic_store(&srv->spin_mode, 1);
        atomic_store(&srv->seg.hdr->done_want, 0);
    }
    /* Tell workers where we are (they spin only while we run elsewhere). */
    fshm__run_here(&srv->seg.hdr->srv_cpu);
    if (fshm__spin_peer(loop_ready, srv, FSHM_SERVER_SPIN_NS, workers_peer(srv)))
        return 1;
    if (timeout_ms == 0)
        return 0;
    /* Sleep: drop what the fd holds from before, then let the helper take
     * over again; it signals the fd for anything from now on. */
    efd_drain(srv);
    if (atomic_load(&srv->signaled)) {
        atomic_store(&srv->signaled, 0);
        fshm__futex_wake(&srv->signaled, 1, false);
    }
    /* The helper may still sleep on done_want from before we cleared it;
     * set it again so a publishing worker wakes it (it re-arms by itself if
     * it was parked on spin_mode instead). */
    atomic_store(&srv->seg.hdr->done_want, 1);
    atomic_store(&srv->spin_mode, 0);
    fshm__futex_wake(&srv->spin_mode, 1, false);
    atomic_thread_fence(memory_order_seq_cst);
    struct timespec ts;
    const struct timespec *dl = fshm__deadline(&ts, timeout_ms);
    for (;;) {
        if (srv->bl_count)
            fshm__srv_flush(srv);
        if (loop_ready(srv))
            return 1;
        /* Tickets still wait for a cell a worker is emptying: look again
         * soon (nothing else would push them while we sleep). */
        int ms = srv->bl_count ? 1 : -1;
        if (dl) {
            uint64_t now = fshm__now_ns();
            uint64_t end = (uint64_t)dl->tv_sec * 1000000000ull + (uint64_t)dl->tv_nsec;
            if (now >= end)
                return 0;
            int left = (int)((end - now + 999999) / 1000000);
            ms = ms < 0 || left < ms ? left : ms;
        }
        struct pollfd pfd = {.fd = srv->efd, .events = POLLIN};
        fshm__run_asleep(&srv->seg.hdr->srv_cpu);
        int rc = poll(&pfd, 1, ms);
        fshm__run_here(&srv->seg.hdr->srv_cpu);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -errno;
    }
}

/* ---- introspection ---- */

void fshm_server_stats(fshm_server_t *srv, fshm_stats_t *out)
{
    if (!srv || !out)
        return;
    *out = srv->stats;
    /* Counted from the slots, not the ring: the ring may also hold stale
     * tickets of cancelled tasks. */
    uint64_t queued = 0;
    for (uint32_t i = 0; i < srv->seg.cfg.ring_slots; i++) {
        const fshm_task_t *t = &srv->tasks[i];
        queued += t->busy && !t->cancelled &&
                  atomic_load_explicit(&srv->seg.slots[i].word, memory_order_relaxed) ==
                      fshm__slot_word(t->seq, FSHM_SLOT_QUEUED, 0);
    }
    out->queue_depth = queued;
    out->cancelled_held = srv->ncancelled;
    out->in_flight = srv->seg.cfg.ring_slots - srv->nfree - srv->ncancelled;
    uint32_t live = 0;
    for (uint32_t i = 0; i < srv->seg.cfg.max_workers; i++) {
        uint32_t st = fshm__ww_state(atomic_load(&srv->seg.workers[i].word));
        live += st == FSHM_W_IDLE || st == FSHM_W_BUSY;
    }
    out->workers_live = live;
}

int fshm_server_workers(fshm_server_t *srv, fshm_worker_info_t *out, size_t max)
{
    static const char *const names[] = {"free", "idle", "busy", "dead"};
    if (!srv || (!out && max))
        return -EINVAL;
    size_t n = 0;
    uint64_t now = fshm__now_ms();
    for (uint32_t i = 0; i < srv->seg.cfg.max_workers && n < max; i++) {
        fshm_wentry_t *e = &srv->seg.workers[i];
        uint64_t w = atomic_load(&e->word);
        uint32_t st = fshm__ww_state(w);
        if (st == FSHM_W_FREE)
            continue;
        uint64_t hbw = atomic_load(&e->heartbeat);
        uint64_t hb = fshm__hb_gen(hbw) == fshm__ww_gen(w) ? fshm__hb_ms(hbw) : 0;
        uint64_t cur = atomic_load(&e->current_task);
        /* A worker leaves its state word IDLE while it runs a task (no
         * extra CAS per task): running is current_task != 0. */
        if (st == FSHM_W_IDLE && cur)
            st = FSHM_W_BUSY;
        out[n] = (fshm_worker_info_t){
            .pid = fshm__ww_pid(w),
            .index = i,
            .state = st < 4 ? names[st] : "dead",
            .tasks_done = atomic_load(&e->tasks_done),
            .tasks_failed = atomic_load(&e->tasks_failed),
            .current_task = cur,
            .heartbeat_age_ms = hb && now > hb ? now - hb : 0,
        };
        n++;
    }
    return (int)n;
}
