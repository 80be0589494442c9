/* Worker side: attach to a server's segment, claim tasks, answer them.
 *
 * Workload: a process that runs one task at a time and waits for the next.
 * Waiting spins for a short while (a busy server usually has the next task
 * ready within microseconds), then sleeps on the segment's work futex. A
 * helper thread writes the heartbeat every heartbeat_ms, independent of how
 * long the handler runs, and notices a server that closed or died.
 *
 * Every write into the worker's table entry proves that the entry is still
 * this attach's: the heartbeat is a CAS on a word carrying the entry's gen
 * (see fshm__hb), so a worker the server declared dead and whose entry went
 * to another worker (a ghost) cannot keep that worker looking alive; it
 * notices, stops beating, and its next() returns -ENOLINK. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long fshm_worker_next() spins before sleeping on the futex. */
#define FSHM_WORKER_SPIN_NS 50000ull

struct fshm_worker {
    fshm_seg_t seg;            /* the mapping */
    fshm_wentry_t *me;         /* our entry */
    uint32_t index;            /* our entry's index */
    uint32_t gen;              /* our entry's gen: a different one means it was taken */
    int32_t pid;               /* our pid */
    bool has_task;             /* a task is claimed and not answered */
    uint64_t task_id;          /* its id */
    uint32_t task_idx;         /* its slot */
    uint32_t task_seq;         /* its dispatch seq */
    pthread_t hb;              /* heartbeat thread */
    bool hb_started;           /* hb must be joined */
    _Atomic uint32_t hb_stop;  /* tells hb to exit (private futex word) */
    _Atomic uint32_t hb_up;    /* hb runs its loop (attach waits for it) */
    _Atomic uint32_t gone;     /* hb saw the server die */
    _Atomic uint32_t evicted;  /* hb saw our entry taken from us: we are a ghost */
    _Atomic uint32_t interrupted; /* fshm_worker_interrupt() called */
    uint32_t task_inline;      /* request bytes in inbuf, or FSHM_NOT_INLINE (in the slot) */
    _Alignas(16) uint8_t inbuf[FSHM_INLINE_MAX]; /* a small request, copied out of its cell */
};

static void notify_server(fshm_worker_t *w)
{
    fshm_hdr_t *h = w->seg.hdr;
    /* Pairs with the fence in the server's helper between setting
     * done_want and re-checking the ring. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&h->done_want, memory_order_relaxed) &&
        atomic_exchange(&h->done_want, 0))
        fshm__futex_wake(&h->done_want, INT_MAX, true);
}

static void worker_event(fshm_worker_t *w)
{
    atomic_fetch_add(&w->seg.hdr->worker_events, 1);
    notify_server(w);
}

static bool server_gone(fshm_worker_t *w)
{
    return atomic_load(&w->gone) ||
           atomic_load_explicit(&w->seg.hdr->state, memory_order_acquire) != FSHM_SEG_OPEN;
}

/* Our entry still ours (not declared dead, not handed to someone else)? */
static bool entry_ours(fshm_worker_t *w)
{
    if (atomic_load_explicit(&w->evicted, memory_order_relaxed))
        return false;
    uint64_t ew = atomic_load(&w->me->word);
    uint32_t st = fshm__ww_state(ew);
    return fshm__ww_gen(ew) == w->gen && fshm__ww_pid(ew) == w->pid &&
           (st == FSHM_W_IDLE || st == FSHM_W_BUSY);
}

/* One heartbeat, written only while the entry is ours: the CAS expects a
 * value carrying our gen, so once the entry was reclaimed (the server
 * rewrote the word) or taken by another worker (new gen), nothing lands.
 * Returns false when the entry is no longer ours. */
static bool beat(fshm_worker_t *w)
{
    for (;;) {
        if (!entry_ours(w))
            return false;
        uint64_t hb = atomic_load(&w->me->heartbeat);
        if (fshm__hb_gen(hb) != w->gen)
            return false;
        if (atomic_compare_exchange_strong(&w->me->heartbeat, &hb,
                                           fshm__hb(w->gen, fshm__now_ms())))
            return true;
        /* Someone else wrote it (the server reclaiming the entry): look again. */
    }
}

static void *hb_main(void *arg)
{
    fshm_worker_t *w = arg;
    uint32_t period = w->seg.cfg.heartbeat_ms;
    /* The server looks at this thread's state to tell "stuck" (stopped)
     * from "waiting for a CPU" (runnable) when our beat is late. */
    atomic_store(&w->me->hb_tid, (uint32_t)gettid());
    atomic_store(&w->hb_up, 1);
    fshm__futex_wake(&w->hb_up, 1, false);
    while (!atomic_load(&w->hb_stop)) {
        struct timespec ts;
        fshm__futex_wait(&w->hb_stop, 0, fshm__deadline(&ts, (int)period), false);
        if (atomic_load(&w->hb_stop))
            break;
        if (!atomic_load(&w->evicted) && !beat(w)) {
            /* Declared dead while alive (we were stuck): leave the entry
             * alone from now on and wake our next() so it says -ENOLINK. */
            atomic_store(&w->evicted, 1);
            fshm__evc_broadcast(&w->seg.hdr->work);
        }
        if (!atomic_load(&w->gone) && !fshm__seg_owner_alive(&w->seg)) {
            /* The server died without closing: wake every sleeper on this
             * (orphaned) segment so our next() returns -ESHUTDOWN. */
            atomic_store(&w->gone, 1);
            fshm__evc_broadcast(&w->seg.hdr->work);
        }
    }
    return NULL;
}

/* Takes a free entry. Returns 1 if there is none, or -errno. */
static int take_free(fshm_worker_t *w, uint64_t start)
{
    for (uint32_t i = 0; i < w->seg.cfg.max_workers; i++) {
        fshm_wentry_t *e = &w->seg.workers[i];
        uint64_t ew = atomic_load(&e->word);
        if (fshm__ww_state(ew) != FSHM_W_FREE)
            continue;
        uint32_t gen = (fshm__ww_gen(ew) + 1) & 0xffffff;
        if (!atomic_compare_exchange_strong(&e->word, &ew, fshm__wword(gen, FSHM_W_IDLE, w->pid)))
            continue;
        /* Until these land the server sees a heartbeat of an older gen and
         * start time 0, which it reads as "not yet known", never as stale. */
        atomic_store(&e->start_time, start);
        atomic_store(&e->hb_tid, 0);
        atomic_store(&e->current_task, 0);
        atomic_store(&e->tasks_done, 0);
        atomic_store(&e->tasks_failed, 0);
        atomic_store(&e->popped, 0);
        atomic_store(&e->req_intent, 0);
        atomic_store(&e->cmp_intent, 0);
        atomic_store(&e->heartbeat, fshm__hb(gen, fshm__now_ms()));
        fshm__run_here(&e->run_cpu);
        w->me = e;
        w->index = i;
        w->gen = gen;
        return 0;
    }
    return 1;
}

/* An entry the server will free soon: its process is gone (a worker killed
 * a moment ago that no heartbeat check has seen yet). Returns its pid or 0. */
static int32_t dead_entry(fshm_worker_t *w)
{
    for (uint32_t i = 0; i < w->seg.cfg.max_workers; i++) {
        fshm_wentry_t *e = &w->seg.workers[i];
        uint64_t ew = atomic_load(&e->word);
        uint32_t st = fshm__ww_state(ew);
        int32_t pid = fshm__ww_pid(ew);
        if (st != FSHM_W_FREE && pid > 0 && !fshm__proc_alive(pid, atomic_load(&e->start_time)))
            return pid;
    }
    return 0;
}

/* Takes a free entry. With none free but some held by processes that are
 * gone, asks the server to look (a worker event makes it check the table
 * at once) and waits until it frees one, so that a worker started right
 * after another was killed does not fail with "table full". Only the
 * server frees an entry: it alone can re-queue the dead worker's task. */
static int take_entry(fshm_worker_t *w)
{
    uint64_t start = 0;
    fshm__proc_stat(w->pid, &start, NULL);
    fshm_hdr_t *h = w->seg.hdr;
    struct timespec ts;
    const struct timespec *dl = fshm__deadline(&ts, (int)w->seg.cfg.heartbeat_ms + 1000);
    int32_t dead = 0;
    for (;;) {
        uint32_t freed = atomic_load(&h->entries_freed);
        if (take_free(w, start) == 0)
            return 0;
        if ((dead = dead_entry(w)) == 0)
            break;
        if (fshm__deadline_passed(dl) || server_gone(w) || !fshm__seg_owner_alive(&w->seg))
            break;
        worker_event(w);
        fshm__futex_wait(&h->entries_freed, freed, dl, true);
    }
    if (dead)
        return fshm__fail(-ENOSPC,
                          "%s: all %u worker entries are taken; the one of pid %d (gone) was "
                          "not reclaimed by the server in time",
                          w->seg.path, w->seg.cfg.max_workers, (int)dead);
    return fshm__fail(-ENOSPC, "%s: all %u worker entries are taken by live workers",
                      w->seg.path, w->seg.cfg.max_workers);
}

int fshm_worker_attach(fshm_worker_t **out, const char *name)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    fshm_worker_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->pid = getpid();
    int rc = fshm__seg_attach(&w->seg, name);
    if (rc < 0)
        goto fail_seg;
    if ((rc = take_entry(w)) < 0)
        goto fail_entry;
    rc = pthread_create(&w->hb, NULL, hb_main, w);
    if (rc != 0) {
        rc = fshm__fail(-rc, "pthread_create: %s", strerror(rc));
        atomic_store(&w->me->word, fshm__wword(w->gen, FSHM_W_FREE, 0));
        goto fail_entry;
    }
    w->hb_started = true;
    /* As in fshm_server_open(): no half-started thread at return. */
    while (!atomic_load(&w->hb_up))
        fshm__futex_wait(&w->hb_up, 0, NULL, false);
    worker_event(w);
    *out = w;
    return 0;

fail_entry:
    fshm__seg_destroy(&w->seg, false);
fail_seg:
    free(w);
    return rc;
}

/* A small answer travels inside the completion cell (status, length and
 * bytes), so the server never reads the slot line or the response buffer
 * for it; len FSHM_NOT_INLINE: the answer is in the slot only. */
static void push_completion(fshm_worker_t *w, uint32_t idx, uint32_t seq, int32_t status,
                            const void *resp, uint32_t len)
{
    uint64_t t = fshm__ticket(idx, seq);
    /* The ring has room for every slot twice, so this fails only with a
     * corrupted ring; then the server delivers the slot when it reaps us. */
    for (int i = 0; i < 1000; i++) {
        if (fshm__ring_push_msg(&w->seg.cmp, t, status, resp, len, &w->me->cmp_intent) == 0)
            break;
        sched_yield();
    }
    notify_server(w);
}

/* Writes an answer into a slot we claimed. Returns -ENOLINK if it was
 * revoked. */
static int finish(fshm_worker_t *w, uint32_t idx, uint32_t seq, int status, const void *resp,
                  size_t len)
{
    fshm_slot_t *s = &w->seg.slots[idx];
    uint64_t expect = fshm__slot_word(seq, FSHM_SLOT_CLAIMED, w->index);
    if (!atomic_compare_exchange_strong(&s->word, &expect,
                                        fshm__slot_word(seq, FSHM_SLOT_WRITING, w->index)))
        return -ENOLINK;
    /* The slot gets the answer too, even a small one: if we die before
     * the push below, the server delivers it from there. The server does
     * not read these lines otherwise, so they stay in our cache. */
    if (len)
        memcpy(fshm__slot_resp(&w->seg, idx), resp, len);
    s->resp_len = (uint32_t)len;
    s->status = status;
    atomic_store_explicit(&s->word, fshm__slot_word(seq, FSHM_SLOT_DONE, w->index),
                          memory_order_release);
    push_completion(w, idx, seq, status, resp,
                    len <= FSHM_INLINE_MAX ? (uint32_t)len : FSHM_NOT_INLINE);
    return 0;
}

/* Pops tickets until one gives us a task. 0 and the task in w, or -EAGAIN. */
static int try_take(fshm_worker_t *w)
{
    fshm_wentry_t *me = w->me;
    for (;;) {
        uint64_t t;
        if (fshm__ring_pop_msg(&w->seg.req, &t, NULL, w->inbuf, &w->task_inline, &me->req_intent,
                               &me->popped) < 0)
            return -EAGAIN;
        uint32_t idx = (uint32_t)(t >> 32), seq = (uint32_t)t;
        if (idx >= w->seg.cfg.ring_slots) {
            atomic_store(&me->popped, 0);
            continue; /* garbage */
        }
        fshm_slot_t *s = &w->seg.slots[idx];
        /* Claim with one CAS from the word a live ticket must find, without
         * loading it first: the line is in the server's cache (it wrote it
         * at submit), and a load would fetch it shared only for the CAS to
         * fetch it again exclusive, two transfers on the round trip's
         * critical path instead of one. A failed CAS means a stale ticket
         * (older dispatch, cancelled or revoked task): drop it. */
        uint64_t sw = fshm__slot_word(seq, FSHM_SLOT_QUEUED, 0);
        if (!atomic_compare_exchange_strong(&s->word, &sw,
                                            fshm__slot_word(seq, FSHM_SLOT_CLAIMED, w->index))) {
            atomic_store(&me->popped, 0);
            continue;
        }
        if (!entry_ours(w)) {
            /* We were declared dead before the claim: the server's scan may
             * have missed it. Give the task back (unless it took it first). */
            uint64_t cw = fshm__slot_word(seq, FSHM_SLOT_CLAIMED, w->index);
            if (atomic_compare_exchange_strong(&s->word, &cw,
                                               fshm__slot_word(seq, FSHM_SLOT_QUEUED, 0))) {
                /* The ring may briefly be full of stale tickets of
                 * cancelled tasks until the server compacts it. */
                for (int i = 0; i < 1000 && fshm__ring_push(&w->seg.req, t, NULL) < 0; i++)
                    sched_yield();
                fshm__evc_notify(&w->seg.hdr->work, 1);
            }
            atomic_store(&me->popped, 0);
            return -ENOLINK;
        }
        w->has_task = true;
        w->task_idx = idx;
        w->task_seq = seq;
        w->task_id = s->task_id;
        /* Plain release stores to our own entry (the server reads it only
         * when it checks workers): our claim CAS above already ordered
         * everything before it, and the entry's state stays IDLE while we
         * run; "busy" is current_task != 0 (a CAS of the entry word twice
         * per task bought nothing). */
        atomic_store_explicit(&me->current_task, w->task_id, memory_order_release);
        atomic_store_explicit(&me->popped, 0, memory_order_release);
        return 0;
    }
}

static bool work_ready(void *arg)
{
    fshm_worker_t *w = arg;
    return fshm__ring_ready(&w->seg.req) || server_gone(w) || atomic_load(&w->interrupted) ||
           atomic_load(&w->evicted);
}

void fshm_worker_interrupt(fshm_worker_t *w)
{
    if (!w)
        return;
    atomic_store(&w->interrupted, 1);
    /* We cannot wake only our own sleeper on the shared word: wake all;
     * the other workers re-check and sleep again. */
    fshm__evc_broadcast(&w->seg.hdr->work);
}

int fshm_worker_next(fshm_worker_t *w, uint64_t *task_id, const void **req, size_t *len,
                     int timeout_ms)
{
    if (!w || !task_id || !req || !len)
        return -EINVAL;
    if (w->has_task)
        return -EBUSY;
    struct timespec ts;
    const struct timespec *dl = fshm__deadline(&ts, timeout_ms);
    fshm_evc_t *work = &w->seg.hdr->work;

    for (;;) {
        /* Load first: an exchange on every pass of the wait loop would
         * be a locked instruction for a flag that is almost never set. */
        if (atomic_load_explicit(&w->interrupted, memory_order_relaxed) &&
            atomic_exchange(&w->interrupted, 0))
            return -EINTR;
        if (server_gone(w))
            return -ESHUTDOWN;
        if (!entry_ours(w))
            return -ENOLINK;
        int rc = try_take(w);
        if (rc == 0)
            break;
        if (rc != -EAGAIN)
            return rc;
        if (timeout_ms == 0)
            return -ETIME;
        /* Spin only while the server runs on another CPU (it publishes
         * where it is while it waits for completions); asleep, nothing can
         * come until something wakes it: sleep at once. */
        fshm_peer_t peer =
            fshm__peer(atomic_load_explicit(&w->seg.hdr->srv_cpu, memory_order_relaxed));
        if (fshm__spin_peer(work_ready, w, FSHM_WORKER_SPIN_NS, peer))
            continue;
        uint32_t s = fshm__evc_prepare(work);
        if (work_ready(w)) {
            fshm__evc_cancel(work);
            continue;
        }
        /* The server spins for completions only while some worker runs on
         * another CPU: say that we sleep. */
        fshm__run_asleep(&w->me->run_cpu);
        rc = fshm__evc_commit(work, s, dl);
        fshm__run_here(&w->me->run_cpu);
        if (rc == -ETIME || fshm__deadline_passed(dl)) {
            /* A wake may have raced with the deadline: take what is there. */
            if (!server_gone(w) && entry_ours(w) && try_take(w) == 0)
                break;
            return -ETIME;
        }
    }
    /* A small request came inside its cell (already copied out, the slot's
     * request buffer is not read); a large one is in the slot. */
    uint32_t n = w->task_inline;
    if (n == FSHM_NOT_INLINE)
        n = w->seg.slots[w->task_idx].req_len;
    if (n > w->seg.cfg.payload_max) {
        /* The server wrote an impossible length: fail the task, not us. */
        fshm_worker_reply(w, w->task_id, -EPROTO, "bad request length", 18);
        return -EPROTO;
    }
    *task_id = w->task_id;
    *req = w->task_inline == FSHM_NOT_INLINE ? (const void *)fshm__slot_req(&w->seg, w->task_idx)
                                             : (const void *)w->inbuf;
    *len = n;
    return 0;
}

int fshm_worker_reply(fshm_worker_t *w, uint64_t task_id, int status, const void *resp,
                      size_t len)
{
    if (!w || !w->has_task || task_id != w->task_id || status > 0 || (!resp && len))
        return -EINVAL;
    int ret = 0;
    if (len > w->seg.cfg.payload_max) {
        status = -EMSGSIZE;
        len = 0;
        ret = -EMSGSIZE;
    }
    int rc = finish(w, w->task_idx, w->task_seq, status, resp, len);
    w->has_task = false;
    if (rc < 0)
        return rc;
    if (entry_ours(w))
        atomic_store_explicit(&w->me->current_task, 0, memory_order_release);
    /* Only we write our counters: a load and a store, no locked add. */
    _Atomic uint64_t *ctr = status == 0 ? &w->me->tasks_done : &w->me->tasks_failed;
    atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return ret;
}

void fshm_worker_detach(fshm_worker_t *w)
{
    if (!w)
        return;
    if (w->hb_started) {
        atomic_store(&w->hb_stop, 1);
        fshm__futex_wake(&w->hb_stop, 1, false);
        pthread_join(w->hb, NULL);
    }
    uint64_t ew = atomic_load(&w->me->word);
    if (fshm__ww_gen(ew) == w->gen && fshm__ww_pid(ew) == w->pid &&
        fshm__ww_state(ew) != FSHM_W_FREE) {
        /* Holding a task: leave it to the server as if we died (it queues
         * the task again). Otherwise hand the entry back ourselves. */
        uint32_t st = w->has_task ? FSHM_W_DEAD : FSHM_W_FREE;
        fshm__run_asleep(&w->me->run_cpu);
        if (st == FSHM_W_FREE)
            atomic_store(&w->me->current_task, 0);
        if (atomic_compare_exchange_strong(&w->me->word, &ew,
                                           fshm__wword(w->gen, st, st == FSHM_W_FREE ? 0 : w->pid)) &&
            st == FSHM_W_FREE) {
            /* Someone may be waiting in attach for a free entry. */
            atomic_fetch_add(&w->seg.hdr->entries_freed, 1);
            fshm__futex_wake(&w->seg.hdr->entries_freed, INT_MAX, true);
        }
        worker_event(w);
    }
    fshm__seg_destroy(&w->seg, false);
    free(w);
}

uint32_t fshm_worker_index(const fshm_worker_t *w)
{
    return w ? w->index : 0;
}

uint32_t fshm_worker_payload_max(const fshm_worker_t *w)
{
    return w ? w->seg.cfg.payload_max : 0;
}

int fshm_worker_server_died(const fshm_worker_t *w)
{
    /* A closing server sets the state first; a dead one never does, and the
     * heartbeat thread notices its owner lock is free (gone). */
    return w && atomic_load(&w->gone) &&
           atomic_load_explicit(&w->seg.hdr->state, memory_order_acquire) == FSHM_SEG_OPEN;
}
