/* User backend pipes: a bounded FIFO of samples per pipe under one
 * owner-tid lock (plock.h: survives an owner killed while holding it), with two event counts for the sleepers (readers wait
 * for data, writers for space). Critical sections are a bounds check and a
 * 64-byte copy; the event count makes the FUTEX_WAKE system call only when
 * somebody sleeps, so a stream that never blocks makes no system call; the
 * sleeper count is read under the pipe lock (evc.h), so no fence either.
 *
 * Lock order: header lock, then a pipe lock (open, close, reclaim); the read
 * and write paths take only the pipe lock. */
#define _GNU_SOURCE
#include "evc.h"
#include "segment.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>

/* Positions come from the segment: a ring holding more than its capacity
 * (or a head past the tail) is corruption, refused before any index. */
static int positions(const fmon_pipe_t *p, uint32_t cap, uint64_t *head, uint64_t *tail)
{
    *head = p->head;
    *tail = p->tail;
    if (*tail - *head > cap)
        return fmon_fail(-EIO, "pipe positions corrupt (head %llu, tail %llu, capacity %u)",
                         (unsigned long long)*head, (unsigned long long)*tail, cap);
    return 0;
}

static void wake_all(fmon_pipe_t *p)
{
    fshm__evc_broadcast(&p->data);
    fshm__evc_broadcast(&p->space);
}

int fmon_pipe_open(fmon_seg_t *seg, uint32_t ring, bool producer, uint64_t *token)
{
    fmon_header_t *h = seg->hdr;
    int rc = fmon_lock(&h->lock);
    if (rc < 0)
        return rc;
    fmon_reclaim_locked(seg);
    uint32_t idx = FMON_MAX_REGS;
    for (uint32_t i = 0; i < FMON_MAX_REGS; i++)
        if (seg->regs[i].kind == FMON_REG_FREE) {
            idx = i;
            break;
        }
    if (idx == FMON_MAX_REGS) {
        fmon_unlock(&h->lock);
        return fmon_fail(-ENOSPC, "all %u pipe registrations in use", FMON_MAX_REGS);
    }
    fmon_pipe_t *p = &seg->pipes[ring];
    fmon_plock(&p->lock);
    if (p->readers == 0 && p->writers == 0) {
        /* Nobody holds the pipe: a new session. */
        p->head = p->tail = 0;
        p->had_reader = p->had_writer = 0;
        p->closed = 0;
        p->written = p->read = 0;
        p->producer_pid = p->consumer_pid = 0;
    }
    if (producer) {
        p->writers++;
        p->had_writer = 1;
        p->producer_pid = (int32_t)seg->pid;
    } else {
        p->readers++;
        p->had_reader = 1;
        p->consumer_pid = (int32_t)seg->pid;
    }
    fmon_punlock(&p->lock);
    fmon_reg_t *r = &seg->regs[idx];
    r->ring = ring;
    r->pid = (int32_t)seg->pid;
    r->start_time = seg->start_time;
    r->kind = producer ? FMON_REG_PRODUCER : FMON_REG_CONSUMER; /* published last */
    fmon_unlock(&h->lock);
    wake_all(p); /* a consumer arriving unblocks writers waiting for one */
    *token = idx;
    return 0;
}

void fmon_pipe_unregister_locked(fmon_seg_t *seg, uint32_t ring, uint32_t kind)
{
    fmon_pipe_t *p = &seg->pipes[ring];
    fmon_plock(&p->lock);
    if (kind == FMON_REG_PRODUCER && p->writers > 0)
        p->writers--;
    else if (kind == FMON_REG_CONSUMER && p->readers > 0)
        p->readers--;
    if ((p->had_writer && p->writers == 0) || (p->had_reader && p->readers == 0))
        p->closed = 1;
    if (p->writers == 0)
        p->producer_pid = 0;
    if (p->readers == 0)
        p->consumer_pid = 0;
    fmon_punlock(&p->lock);
    wake_all(p);
}

void fmon_pipe_close(fmon_seg_t *seg, uint32_t ring, uint64_t token)
{
    if (token >= FMON_MAX_REGS || fmon_lock(&seg->hdr->lock) < 0)
        return;
    fmon_reg_t *r = &seg->regs[token];
    uint32_t kind = r->kind;
    /* Still ours? (A registration is only ever reclaimed from a dead pid.) */
    if ((kind == FMON_REG_PRODUCER || kind == FMON_REG_CONSUMER) && r->ring == ring &&
        r->pid == (int32_t)seg->pid) {
        r->kind = FMON_REG_FREE;
        fmon_pipe_unregister_locked(seg, ring, kind);
    }
    fmon_unlock(&seg->hdr->lock);
}

/* Sleeps on e until woken, the deadline, or the liveness slice. Returns 0
 * to look again, -ETIME at the deadline, -EINTR. */
static int sleep_on(fmon_seg_t *seg, fshm_evc_t *e, uint32_t seq, const struct timespec *deadline)
{
    struct timespec slice;
    int rc = fshm__evc_commit(e, seq, fmon_slice(&slice, deadline));
    if (rc == -ETIME) {
        if (fshm__deadline_passed(deadline))
            return -ETIME;
        fmon_reclaim(seg); /* a peer may have died: look again */
        return 0;
    }
    return rc == -EINTR ? -EINTR : 0;
}

/* A blocked read or write's deadline, computed at its first sleep. */
typedef struct pipe_wait {
    struct timespec ts;              /* storage for deadline                 */
    const struct timespec *deadline; /* NULL: none yet (or forever, if set)  */
    bool have_deadline;              /* deadline computed                    */
} pipe_wait_t;

/* The blocking step shared by read and write, called with the pipe lock
 * held after the caller found it cannot proceed: unlocks and sleeps on e
 * (p->data for readers, p->space for writers). Returns 0 to look again,
 * -EAGAIN for a try (timeout 0), -ETIME at the deadline, -EINTR. */
static int pipe_wait(fmon_seg_t *seg, fmon_pipe_t *p, fshm_evc_t *e, int timeout_ms,
                     pipe_wait_t *w)
{
    if (timeout_ms == 0) {
        fmon_punlock(&p->lock);
        return -EAGAIN;
    }
    if (!w->have_deadline) {
        w->deadline = fshm__deadline(&w->ts, timeout_ms);
        w->have_deadline = true;
    }
    uint32_t seq = fshm__evc_prepare(e); /* registered under the lock the waker holds */
    fmon_punlock(&p->lock);
    return sleep_on(seg, e, seq, w->deadline);
}

int fmon_pipe_write(fmon_seg_t *seg, uint32_t ring, const struct process_sample *s, int timeout_ms)
{
    fmon_pipe_t *p = &seg->pipes[ring];
    uint32_t cap = seg->capacity[ring];
    pipe_wait_t wait = {.deadline = NULL}; /* the clock is read only once we must sleep */
    for (;;) {
        fmon_plock(&p->lock);
        uint64_t head, tail;
        int rc = positions(p, cap, &head, &tail);
        if (rc < 0 || p->closed) {
            fmon_punlock(&p->lock);
            return rc < 0 ? rc : -EPIPE;
        }
        if (p->readers > 0 && tail - head < cap) {
            seg->ring[ring][tail % cap] = *s;
            p->tail = tail + 1; /* published: the sample is whole */
            p->written++;
            bool sleepers = fmon_evc_has_sleepers(&p->data);
            fmon_punlock(&p->lock);
            if (sleepers)
                fmon_evc_wake(&p->data, 1);
            return 0;
        }
        rc = pipe_wait(seg, p, &p->space, timeout_ms, &wait);
        if (rc < 0)
            return rc;
    }
}

int fmon_pipe_read(fmon_seg_t *seg, uint32_t ring, struct process_sample *s, int timeout_ms)
{
    fmon_pipe_t *p = &seg->pipes[ring];
    uint32_t cap = seg->capacity[ring];
    pipe_wait_t wait = {.deadline = NULL}; /* the clock is read only once we must sleep */
    for (;;) {
        fmon_plock(&p->lock);
        uint64_t head, tail;
        int rc = positions(p, cap, &head, &tail);
        if (rc < 0) {
            fmon_punlock(&p->lock);
            return rc;
        }
        if (tail != head) {
            *s = seg->ring[ring][head % cap];
            p->head = head + 1;
            p->read++;
            bool sleepers = fmon_evc_has_sleepers(&p->space);
            fmon_punlock(&p->lock);
            if (sleepers)
                fmon_evc_wake(&p->space, 1);
            return 0;
        }
        if (p->closed) {
            fmon_punlock(&p->lock);
            return -EPIPE;
        }
        rc = pipe_wait(seg, p, &p->data, timeout_ms, &wait);
        if (rc < 0)
            return rc;
    }
}

int fmon_pipe_status(fmon_seg_t *seg, zkprologml_pipe_status_t *out)
{
    int rc = fmon_reclaim(seg);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < ZKPROLOGML_PIPES; i++) {
        fmon_pipe_t *p = &seg->pipes[i];
        fmon_plock(&p->lock);
        uint64_t head = p->head, tail = p->tail;
        out[i] = (zkprologml_pipe_status_t){
            .id = i,
            .prime = fmon_prime(i),
            .producer_pid = p->producer_pid,
            .consumer_pid = p->consumer_pid,
            .readers = p->readers,
            .writers = p->writers,
            .closed = p->closed,
            .capacity = seg->capacity[i],
            .count = tail - head <= seg->capacity[i] ? (uint32_t)(tail - head) : 0,
            .written = p->written,
            .read = p->read,
        };
        fmon_punlock(&p->lock);
    }
    return 0;
}
