/* Server side of the worker table: finding dead workers and cleaning up
 * after them.
 *
 * A worker is dead when its process is gone (or a zombie, or its pid now
 * belongs to another process: /proc start time differs). That check comes
 * first and is exact. A process that exists is declared dead only when it
 * is stuck: its heartbeat (written by a helper thread in the worker,
 * independent of the handler) is older than max(4 periods,
 * FSHM_STALE_FLOOR_MS) and that heartbeat thread is not runnable (a thread
 * in state R is merely waiting for a CPU on a loaded machine; a stopped or
 * frozen process is stuck). Cleaning up: every slot the worker owns
 * is queued again (or failed once attempts are used up, or delivered if the
 * answer was already written); a ticket it had popped but not claimed is
 * queued again; ring cells it left half-done are repaired once they stayed
 * wedged for a heartbeat period. Scanning the slot array happens only here,
 * once per dead worker, never on the delivery path. */
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

int fshm__srv_check_workers(fshm_server_t *srv);

static void add_repair(fshm_server_t *srv, uint8_t cmp, uint64_t pos, uint64_t now)
{
    for (uint32_t i = 0; i < srv->nrepairs; i++)
        if (srv->repairs[i].cmp == cmp && srv->repairs[i].pos == pos)
            return;
    if (srv->nrepairs == srv->max_repairs)
        return; /* only with many simultaneous deaths; a later death records it again */
    srv->repairs[srv->nrepairs++] = (fshm_repair_t){.cmp = cmp, .pos = pos, .first_ms = now};
}

/* A ticket that left the request ring without being claimed: queue it again
 * if the slot still waits for exactly that dispatch. */
static void recover_ticket(fshm_server_t *srv, uint64_t ticket)
{
    uint32_t idx = (uint32_t)(ticket >> 32), seq = (uint32_t)ticket;
    if (ticket == FSHM_RING_HOLE || idx >= srv->seg.cfg.ring_slots)
        return;
    fshm_task_t *t = &srv->tasks[idx];
    if (!t->busy || t->seq != seq)
        return;
    uint64_t w = atomic_load(&srv->seg.slots[idx].word);
    if (fshm__sw_seq(w) == seq && fshm__sw_state(w) == FSHM_SLOT_QUEUED)
        fshm__srv_requeue(srv, idx, w);
}

static void run_repairs(fshm_server_t *srv, uint64_t now)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < srv->nrepairs; i++) {
        fshm_repair_t r = srv->repairs[i];
        if (now - r.first_ms < srv->seg.cfg.heartbeat_ms) {
            srv->repairs[keep++] = r;
            continue;
        }
        if (r.cmp) {
            fshm__ring_repair_push(&srv->seg.cmp, r.pos);
        } else {
            uint64_t ticket;
            if (fshm__ring_repair_pop(&srv->seg.req, r.pos, &ticket))
                recover_ticket(srv, ticket);
        }
    }
    srv->nrepairs = keep;
}

/* Cleans up after dead entry i. Returns true when the entry could be freed;
 * false while a still-running process (declared dead for a stale heartbeat)
 * may be writing an answer or be inside a ring operation. */
static bool reclaim(fshm_server_t *srv, uint32_t i, uint64_t w, uint64_t now)
{
    fshm_wentry_t *e = &srv->seg.workers[i];
    int32_t pid = fshm__ww_pid(w);
    bool alive = pid > 0 && fshm__proc_alive(pid, atomic_load(&e->start_time));
    bool pending = false;

    uint64_t popped = atomic_load(&e->popped);
    if (popped)
        recover_ticket(srv, popped);

    for (uint32_t idx = 0; idx < srv->seg.cfg.ring_slots; idx++) {
        uint64_t sw = atomic_load(&srv->seg.slots[idx].word);
        uint32_t st = fshm__sw_state(sw);
        if (fshm__sw_owner(sw) != i ||
            (st != FSHM_SLOT_CLAIMED && st != FSHM_SLOT_WRITING && st != FSHM_SLOT_DONE))
            continue;
        fshm_task_t *t = &srv->tasks[idx];
        if (!t->busy || t->seq != fshm__sw_seq(sw))
            continue;
        if (st == FSHM_SLOT_DONE)
            fshm__srv_defer(srv, idx); /* its ticket may never reach the ring */
        else if (st == FSHM_SLOT_WRITING && alive)
            pending = true; /* it is copying the answer right now */
        else
            fshm__srv_requeue(srv, idx, sw);
    }

    uint64_t ri = atomic_load(&e->req_intent), ci = atomic_load(&e->cmp_intent);
    if (alive && (ri || ci))
        pending = true; /* never repair under a process that may still finish */
    if (pending)
        return false;
    if (ri)
        add_repair(srv, 0, ri - 1, now);
    if (ci)
        add_repair(srv, 1, ci - 1, now);

    atomic_store(&e->popped, 0);
    atomic_store(&e->req_intent, 0);
    atomic_store(&e->cmp_intent, 0);
    atomic_store(&e->current_task, 0);
    atomic_store(&e->heartbeat, 0);
    atomic_store(&e->hb_tid, 0);
    atomic_store(&e->run_cpu, FSHM_RUN_ASLEEP);
    atomic_store(&e->start_time, 0);
    uint64_t expect = w;
    /* Keep gen: the next worker bumps it when it takes the entry. */
    if (!atomic_compare_exchange_strong(&e->word, &expect,
                                        fshm__wword(fshm__ww_gen(w), FSHM_W_FREE, 0)))
        return false;
    /* A worker may be waiting in attach for exactly this entry. */
    fshm_hdr_t *h = srv->seg.hdr;
    atomic_fetch_add(&h->entries_freed, 1);
    fshm__futex_wake(&h->entries_freed, INT_MAX, true);
    return true;
}

/* Is the worker in entry e (word w) dead? Process first; heartbeat only
 * for a process that exists, and then only when it is stuck. */
static bool worker_dead(fshm_server_t *srv, fshm_wentry_t *e, uint64_t w, uint64_t now)
{
    int32_t pid = fshm__ww_pid(w);
    if (pid <= 0 || !fshm__proc_alive(pid, atomic_load(&e->start_time)))
        return true;
    uint64_t hb = atomic_load(&e->heartbeat);
    if (fshm__hb_gen(hb) != fshm__ww_gen(w) || fshm__hb_ms(hb) == 0)
        return false; /* not written yet by this attach: unknown, never stale */
    uint64_t beat = fshm__hb_ms(hb);
    uint64_t limit = 4ull * srv->seg.cfg.heartbeat_ms;
    if (limit < FSHM_STALE_FLOOR_MS)
        limit = FSHM_STALE_FLOOR_MS;
    if (now <= beat || now - beat <= limit)
        return false;
    /* Stale. Runnable means starved of CPU, not stuck: leave it. */
    char st = fshm__proc_thread_state(pid, (pid_t)atomic_load(&e->hb_tid));
    return st != 'R';
}

int fshm__srv_check_workers(fshm_server_t *srv)
{
    uint64_t now = fshm__now_ms();
    int reaped = 0;

    /* The coarse clock, as maybe_check_workers() reads it on every poll. */
    srv->last_check_ms = fshm__now_coarse_ms();
    srv->seen_events = atomic_load(&srv->seg.hdr->worker_events);
    uint32_t live_hi = 0;
    for (uint32_t i = 0; i < srv->seg.cfg.max_workers; i++) {
        fshm_wentry_t *e = &srv->seg.workers[i];
        uint64_t w = atomic_load(&e->word);
        uint32_t st = fshm__ww_state(w);
        if (st == FSHM_W_FREE)
            continue;
        live_hi = i + 1;
        if (st == FSHM_W_IDLE || st == FSHM_W_BUSY) {
            if (!worker_dead(srv, e, w, now))
                continue;
            int32_t pid = fshm__ww_pid(w);
            uint64_t dw = fshm__wword(fshm__ww_gen(w), FSHM_W_DEAD, pid);
            if (!atomic_compare_exchange_strong(&e->word, &w, dw))
                continue; /* it changed state meanwhile: look again next time */
            w = dw;
            reaped++;
        } else if (st != FSHM_W_DEAD) {
            continue; /* unknown state: garbage, leave it */
        }
        reclaim(srv, i, w, now);
    }
    /* fshm_server_wait() looks at the run words of entries below this. */
    srv->live_hi = live_hi;
    run_repairs(srv, now);
    /* A repaired cell (or one a slow worker finished emptying) lets
     * backlogged tickets in. */
    if (srv->bl_count)
        fshm__srv_flush(srv);
    return reaped;
}

int fshm_server_check_workers(fshm_server_t *srv)
{
    if (!srv)
        return -EINVAL;
    return fshm__srv_check_workers(srv);
}
