/* User backend wait states, the shard barrier and the coordination log.
 *
 * A coordination adds one to the `coord` counter of every wait state on the
 * shard and wakes the shard's event count once (one FUTEX_WAKE for all of
 * them, and none when nobody sleeps). A waiter compares `coord` with the
 * count it has already consumed, so a coordination that came while it was
 * busy is not lost. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <limits.h>

/* The slot, if it still holds this use of it (sequence) by this process. */
static fmon_wait_t *mine(fmon_seg_t *seg, uint32_t slot, uint64_t sequence)
{
    fmon_wait_t *w = &seg->waits[slot];
    if (!w->used || w->sequence != sequence || w->pid != (int32_t)seg->pid)
        return NULL;
    return w;
}

int fmon_wait_create(fmon_seg_t *seg, uint32_t shard, uint32_t *slot, uint64_t *sequence,
                     uint32_t *seen)
{
    fmon_header_t *h = seg->hdr;
    int rc = fmon_lock(&h->lock);
    if (rc < 0)
        return rc;
    fmon_reclaim_locked(seg);
    for (uint32_t i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        fmon_wait_t *w = &seg->waits[i];
        if (w->used)
            continue;
        w->pid = (int32_t)seg->pid;
        w->start_time = seg->start_time;
        w->shard = shard;
        atomic_store_explicit(&w->ready, 0, memory_order_relaxed);
        w->sequence = ++h->next_sequence;
        w->used = 1;
        *slot = i;
        *sequence = w->sequence;
        *seen = atomic_load_explicit(&w->coord, memory_order_acquire);
        fmon_unlock(&h->lock);
        return 0;
    }
    fmon_unlock(&h->lock);
    return fmon_fail(-ENOSPC, "all %d wait states in use", ZKPROLOGML_WAIT_STATES);
}

/* The shard of our own wait state. Read without the header lock: only this
 * process writes its slot's identity (at create, before the handle exists;
 * reclaim touches it only once we are dead), so the fields are stable while
 * we hold the handle; coordinators touch only the atomics. This keeps the
 * woken side of a 256-waiter coordination off the shared lock. */
static int lookup(fmon_seg_t *seg, uint32_t slot, uint64_t sequence, uint32_t *shard)
{
    fmon_wait_t *w = mine(seg, slot, sequence);
    if (!w)
        return fmon_fail(-EIDRM, "wait state %u was reclaimed or freed", slot);
    *shard = w->shard;
    if (*shard >= ZKPROLOGML_SHARDS)
        return fmon_fail(-EIO, "wait state %u: shard %u corrupt", slot, *shard);
    return 0;
}

/* Spinning budget of a wait for coordination before it sleeps (fshm__spin
 * learns a shorter one per thread when spins keep failing). */
#define FMON_COORD_SPIN_NS 20000u

typedef struct coord_poll {
    fmon_wait_t *w; /* our wait state       */
    uint32_t seen;  /* coordinations seen   */
} coord_poll_t;

static bool coord_arrived(void *arg)
{
    coord_poll_t *p = arg;
    return atomic_load_explicit(&p->w->coord, memory_order_acquire) != p->seen;
}

int fmon_wait_for_coord(fmon_seg_t *seg, uint32_t slot, uint64_t sequence, uint32_t *seen,
                        int timeout_ms)
{
    uint32_t shard = 0;
    int rc = lookup(seg, slot, sequence, &shard);
    if (rc < 0)
        return rc;
    fmon_wait_t *w = &seg->waits[slot];
    fshm_evc_t *e = &seg->hdr->coord[shard];
    struct timespec ts;
    const struct timespec *deadline = fshm__deadline(&ts, timeout_ms);
    int spun = 0; /* spins done: once per call */
    for (;;) {
        uint32_t c = atomic_load_explicit(&w->coord, memory_order_acquire);
        if (c != *seen) {
            *seen = c;
            return 0;
        }
        if (timeout_ms == 0)
            return -EAGAIN;
        /* A coordination often follows soon after the barrier: poll the
         * counter briefly before paying a futex sleep and a wake-up. */
        if (spun < 1) {
            spun++;
            coord_poll_t poll = {.w = w, .seen = *seen};
            if (fshm__spin(coord_arrived, &poll, FMON_COORD_SPIN_NS))
                continue;
        }
        uint32_t s = fshm__evc_prepare(e);
        c = atomic_load_explicit(&w->coord, memory_order_acquire);
        if (c != *seen) {
            fshm__evc_cancel(e);
            *seen = c;
            return 0;
        }
        /* Nobody but a coordinator wakes us: no liveness slice needed. */
        rc = fshm__evc_commit(e, s, deadline);
        if (rc == -ETIME || rc == -EINTR) {
            /* One last look: a coordination may have landed just now. */
            c = atomic_load_explicit(&w->coord, memory_order_acquire);
            if (c != *seen) {
                *seen = c;
                return 0;
            }
            return rc;
        }
    }
}

int fmon_signal_ready(fmon_seg_t *seg, uint32_t slot, uint64_t sequence)
{
    uint32_t shard = 0;
    int rc = lookup(seg, slot, sequence, &shard);
    if (rc < 0)
        return rc;
    atomic_store_explicit(&seg->waits[slot].ready, 1, memory_order_release);
    fshm__evc_notify(&seg->hdr->ready[shard], INT_MAX);
    return 0;
}

void fmon_wait_free(fmon_seg_t *seg, uint32_t slot, uint64_t sequence)
{
    if (fmon_lock(&seg->hdr->lock) < 0)
        return;
    fmon_wait_t *w = mine(seg, slot, sequence);
    if (w) {
        w->used = 0;
        w->pid = 0;
        atomic_store_explicit(&w->ready, 0, memory_order_relaxed);
    }
    fmon_unlock(&seg->hdr->lock);
}

static void log_event(fmon_seg_t *seg, uint32_t shard, uint32_t count)
{
    fmon_header_t *h = seg->hdr;
    uint64_t n = ++h->log_next;
    h->log[(n - 1) % ZKPROLOGML_LOG_ENTRIES] = (zkprologml_log_entry_t){
        .seq = n,
        .timestamp_ns = fshm__now_ns(),
        .pid = (int32_t)seg->pid,
        .shard = shard,
        .count = count,
    };
}

int fmon_coordinate_shard(fmon_seg_t *seg, uint32_t shard)
{
    fmon_header_t *h = seg->hdr;
    int rc = fmon_lock(&h->lock);
    if (rc < 0)
        return rc;
    fmon_reclaim_locked(seg); /* dead apps are not counted */
    int n = 0;
    for (uint32_t i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        fmon_wait_t *w = &seg->waits[i];
        if (!w->used || w->shard != shard)
            continue;
        atomic_store_explicit(&w->ready, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->coord, 1, memory_order_release);
        n++;
    }
    log_event(seg, shard, (uint32_t)n);
    fmon_unlock(&h->lock);
    if (n > 0)
        fshm__evc_notify(&h->coord[shard], INT_MAX);
    return n;
}

/* Wait states on the shard that are ready (header lock held). */
static uint32_t count_ready(fmon_seg_t *seg, uint32_t shard)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        fmon_wait_t *w = &seg->waits[i];
        if (w->used && w->shard == shard && atomic_load_explicit(&w->ready, memory_order_acquire))
            n++;
    }
    return n;
}

int fmon_wait_ready(fmon_seg_t *seg, uint32_t shard, uint32_t n, int timeout_ms)
{
    fshm_evc_t *e = &seg->hdr->ready[shard];
    struct timespec ts;
    const struct timespec *deadline = fshm__deadline(&ts, timeout_ms);
    for (;;) {
        uint32_t s = fshm__evc_prepare(e);
        int rc = fmon_lock(&seg->hdr->lock);
        if (rc < 0) {
            fshm__evc_cancel(e);
            return rc;
        }
        uint32_t ready = count_ready(seg, shard);
        if (ready >= n && fmon_reclaim_locked(seg) > 0)
            ready = count_ready(seg, shard); /* a ready app that died does not count */
        fmon_unlock(&seg->hdr->lock);
        if (ready >= n) {
            fshm__evc_cancel(e);
            return (int)ready;
        }
        if (timeout_ms == 0) {
            fshm__evc_cancel(e);
            return -EAGAIN;
        }
        struct timespec slice;
        rc = fshm__evc_commit(e, s, fmon_slice(&slice, deadline));
        if (rc == -EINTR)
            return rc;
        if (rc == -ETIME) {
            if (fshm__deadline_passed(deadline))
                return -ETIME;
            fmon_reclaim(seg); /* a ready app that died no longer counts */
        }
    }
}

int fmon_wait_status(fmon_seg_t *seg, zkprologml_wait_status_t *out)
{
    int rc = fmon_lock(&seg->hdr->lock);
    if (rc < 0)
        return rc;
    fmon_reclaim_locked(seg);
    int used = 0;
    for (uint32_t i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        fmon_wait_t *w = &seg->waits[i];
        out[i] = (zkprologml_wait_status_t){
            .id = i,
            .in_use = w->used ? 1 : 0,
            .pid = w->used ? w->pid : 0,
            .shard = w->used ? w->shard : 0,
            .sequence = w->used ? w->sequence : 0,
            .ready = w->used ? atomic_load_explicit(&w->ready, memory_order_relaxed) : 0,
        };
        used += w->used ? 1 : 0;
    }
    fmon_unlock(&seg->hdr->lock);
    return used;
}

int fmon_log_read(fmon_seg_t *seg, zkprologml_log_entry_t *out, size_t n)
{
    int rc = fmon_lock(&seg->hdr->lock);
    if (rc < 0)
        return rc;
    uint64_t last = seg->hdr->log_next;
    uint64_t avail = last < ZKPROLOGML_LOG_ENTRIES ? last : ZKPROLOGML_LOG_ENTRIES;
    if (avail > n)
        avail = n;
    for (uint64_t i = 0; i < avail; i++) {
        uint64_t k = last - avail + i; /* 0-based entry number */
        out[i] = seg->hdr->log[k % ZKPROLOGML_LOG_ENTRIES];
    }
    fmon_unlock(&seg->hdr->lock);
    return (int)avail;
}
