/* Reclaiming the dead: a registration (pipe end or wait state) whose process
 * is gone, a zombie, or a different process under a reused pid is removed,
 * and everything that could be waiting on it is woken to look again.
 *
 * Runs at every pipe open, wait-state create, coordinate and status call,
 * and from every blocked call once per ZKPROLOGML_LIVENESS_MS, so a peer
 * blocked on a killed app learns of it within that period. */
#define _GNU_SOURCE
#include "segment.h"

#include <limits.h>

#define PID_CACHE 64 /* distinct processes remembered per scan */

typedef struct pid_cache {
    int n;                       /* entries used */
    int32_t pid[PID_CACHE];      /* process ids  */
    uint64_t start[PID_CACHE];   /* start times  */
    bool alive[PID_CACHE];       /* verdicts     */
} pid_cache_t;

static bool alive(fmon_seg_t *seg, pid_cache_t *c, int32_t pid, uint64_t start)
{
    if (pid == (int32_t)seg->pid && start == seg->start_time)
        return true;
    for (int i = 0; i < c->n; i++)
        if (c->pid[i] == pid && c->start[i] == start)
            return c->alive[i];
    bool a = fmon_proc_alive((pid_t)pid, start);
    if (c->n < PID_CACHE) {
        c->pid[c->n] = pid;
        c->start[c->n] = start;
        c->alive[c->n++] = a;
    }
    return a;
}

int fmon_reclaim_locked(fmon_seg_t *seg)
{
    pid_cache_t cache;
    cache.n = 0;
    int n = 0;
    for (uint32_t i = 0; i < FMON_MAX_REGS; i++) {
        fmon_reg_t *r = &seg->regs[i];
        if (r->kind == FMON_REG_FREE)
            continue;
        uint32_t kind = r->kind, ring = r->ring;
        bool valid = (kind == FMON_REG_PRODUCER || kind == FMON_REG_CONSUMER) &&
                     ring < ZKPROLOGML_PIPES;
        if (valid && alive(seg, &cache, r->pid, r->start_time))
            continue;
        r->kind = FMON_REG_FREE;
        if (valid) /* a corrupt entry is dropped without touching any pipe */
            fmon_pipe_unregister_locked(seg, ring, kind);
        n++;
    }
    for (uint32_t i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        fmon_wait_t *w = &seg->waits[i];
        if (!w->used || alive(seg, &cache, w->pid, w->start_time))
            continue;
        w->used = 0;
        w->pid = 0;
        atomic_store_explicit(&w->ready, 0, memory_order_relaxed);
        uint32_t shard = w->shard;
        if (shard < ZKPROLOGML_SHARDS) /* a barrier waiter counts again */
            fshm__evc_broadcast(&seg->hdr->ready[shard]);
        n++;
    }
    return n;
}

int fmon_reclaim(fmon_seg_t *seg)
{
    int rc = fmon_lock(&seg->hdr->lock);
    if (rc < 0)
        return rc;
    rc = fmon_reclaim_locked(seg);
    fmon_unlock(&seg->hdr->lock);
    return rc;
}
