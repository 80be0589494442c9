/* Bounded MPMC ring with per-cell sequence numbers (see ring.h for the
 * protocol). Tuned for a handful of producers and consumers in different
 * processes: counters and cells sit on separate cache lines, the fast path is
 * one CAS and two stores, and an empty or full ring is reported at once
 * instead of waited on (waiting is the caller's business, see futex.h). */
#include "ring.h"

#include <errno.h>
#include <string.h>

size_t fshm__ring_bytes(uint32_t cap)
{
    return sizeof(fshm_ring_shared_t) + (size_t)cap * sizeof(fshm_cell_t);
}

void fshm__ring_attach(fshm_ring_t *r, void *mem, uint32_t cap)
{
    r->sh = mem;
    r->mask = (uint64_t)cap - 1;
    atomic_store_explicit(&r->known_free, UINT64_MAX, memory_order_relaxed);
    r->single_consumer = false;
}

void fshm__ring_init(fshm_ring_t *r, void *mem, uint32_t cap)
{
    fshm__ring_attach(r, mem, cap);
    atomic_init(&r->sh->enq, 0);
    atomic_init(&r->sh->deq, 0);
    /* Cell i starts as "empty, producer of position i may fill it". */
    for (uint64_t i = 0; i < cap; i++) {
        atomic_init(&r->sh->cells[i].seq, i);
        atomic_init(&r->sh->cells[i].val, 0);
        r->sh->cells[i].len = FSHM_NOT_INLINE;
        r->sh->cells[i].status = 0;
    }
    atomic_thread_fence(memory_order_release);
}

static void intent_clear(_Atomic uint64_t *intent)
{
    if (intent)
        atomic_store_explicit(intent, 0, memory_order_release);
}

/* Moves enq from pos to pos + 1 for a cell whose seq says "empty, lap of
 * pos". The intent is published before the CAS so that, if we die right
 * after it, the survivor knows which position to look at. */
static int claim_push(fshm_ring_t *r, uint64_t *pos_out, _Atomic uint64_t *intent)
{
    fshm_ring_shared_t *sh = r->sh;
    uint64_t pos = atomic_load_explicit(&sh->enq, memory_order_relaxed);

    for (;;) {
        fshm_cell_t *c = &sh->cells[pos & r->mask];
        /* A position found free earlier (see verify_next) needs no load:
         * the consumer polls this very line, so it is shared at best, and
         * a load would cost a transfer before the fill's own. */
        /* Acquire: pairs with the release in verify_next, which itself
         * acquired the consumer's hand-back of this cell. */
        uint64_t seq = pos == atomic_load_explicit(&r->known_free, memory_order_acquire)
                           ? pos
                           : atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);

        if (dif == 0) {
            /* Release: ordered before the claim by the CAS (see claim_pop). */
            if (intent)
                atomic_store_explicit(intent, pos + 1, memory_order_release);
            /* On failure pos is reloaded with the current enq. */
            if (atomic_compare_exchange_weak_explicit(&sh->enq, &pos, pos + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                *pos_out = pos;
                return 0;
            }
        } else if (dif < 0) {
            /* The consumer of the previous lap has not handed the cell back
             * (unless enq moved meanwhile: then our pos was stale). That is
             * "full" only when every cell really holds a value; otherwise
             * that consumer claimed its position and has not finished (it
             * was preempted between its CAS and its hand-back, or died
             * there): -EBUSY, try again later. Taking it for "full" made
             * the server compact a ring it could not refill. */
            uint64_t now = atomic_load_explicit(&sh->enq, memory_order_relaxed);
            if (now == pos) {
                intent_clear(intent);
                uint64_t deq = atomic_load_explicit(&sh->deq, memory_order_acquire);
                return deq <= pos && pos - deq > r->mask ? -EAGAIN : -EBUSY;
            }
            pos = now;
        } else {
            pos = atomic_load_explicit(&sh->enq, memory_order_relaxed);
        }
    }
}

/* Looks now whether the cell of position next is free for that lap, so
 * that the push that claims next need not load its seq then (see
 * fshm_ring_t.known_free). Done right after a push, while the consumer is
 * still polling the cell just filled: this line is not polled yet, and its
 * transfer (it was handed back one lap ago) is off the round trip's path.
 * A free cell stays free until the claimer of exactly that position fills
 * it: nobody else writes a cell whose seq says "empty, lap of pos" (the
 * repairs touch claimed positions only), so the knowledge cannot go stale
 * while enq has not passed next; once it has, it is never used. */
static void verify_next(fshm_ring_t *r, uint64_t next)
{
    const fshm_cell_t *c = &r->sh->cells[next & r->mask];
    if (atomic_load_explicit(&c->seq, memory_order_acquire) == next)
        atomic_store_explicit(&r->known_free, next, memory_order_release);
}

static int claim_pop(fshm_ring_t *r, uint64_t *pos_out, _Atomic uint64_t *intent)
{
    fshm_ring_shared_t *sh = r->sh;
    uint64_t pos = atomic_load_explicit(&sh->deq, memory_order_relaxed);

    for (;;) {
        fshm_cell_t *c = &sh->cells[pos & r->mask];
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));

        if (dif == 0) {
            if (r->single_consumer) {
                /* Nobody else moves deq: a store, not a locked CAS. */
                atomic_store_explicit(&sh->deq, pos + 1, memory_order_release);
                *pos_out = pos;
                return 0;
            }
            /* Release: the CAS below (a release too) orders it before the
             * claim, so a survivor that finds us dead finds the intent of
             * any claim that landed; no full fence of its own needed. */
            if (intent)
                atomic_store_explicit(intent, pos + 1, memory_order_release);
            if (atomic_compare_exchange_weak_explicit(&sh->deq, &pos, pos + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                *pos_out = pos;
                return 0;
            }
        } else if (dif < 0) {
            /* Not yet filled for this lap: empty, unless deq moved. */
            uint64_t now = atomic_load_explicit(&sh->deq, memory_order_relaxed);
            if (now == pos) {
                intent_clear(intent);
                return -EAGAIN;
            }
            pos = now;
        } else {
            pos = atomic_load_explicit(&sh->deq, memory_order_relaxed);
        }
    }
}

int fshm__ring_push_msg(fshm_ring_t *r, uint64_t val, int32_t status, const void *data,
                        uint32_t len, _Atomic uint64_t *intent)
{
    uint64_t pos;
    if (len != FSHM_NOT_INLINE && len > FSHM_INLINE_MAX)
        return -EMSGSIZE;
    int rc = claim_push(r, &pos, intent);
    if (rc < 0)
        return rc;
    fshm_cell_t *c = &r->sh->cells[pos & r->mask];
    atomic_store_explicit(&c->val, val, memory_order_relaxed);
    c->len = len;
    c->status = status;
    if (len != FSHM_NOT_INLINE && len)
        memcpy(c->data, data, len);
    /* Publishes val and the message to the consumer of this lap. */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    intent_clear(intent);
    verify_next(r, pos + 1);
    return 0;
}

int fshm__ring_push(fshm_ring_t *r, uint64_t val, _Atomic uint64_t *intent)
{
    return fshm__ring_push_msg(r, val, 0, NULL, FSHM_NOT_INLINE, intent);
}

int fshm__ring_pop_msg(fshm_ring_t *r, uint64_t *val, int32_t *status, void *buf, uint32_t *len,
                       _Atomic uint64_t *intent, _Atomic uint64_t *popped)
{
    uint64_t pos;
    int rc = claim_pop(r, &pos, intent);
    if (rc < 0)
        return rc;
    fshm_cell_t *c = &r->sh->cells[pos & r->mask];
    uint64_t v = atomic_load_explicit(&c->val, memory_order_relaxed);
    uint32_t n = c->len;
    if (n > FSHM_INLINE_MAX)
        n = FSHM_NOT_INLINE; /* includes a corrupted length */
    else if (n && buf)
        memcpy(buf, c->data, n);
    if (status)
        *status = c->status;
    if (len)
        *len = n;
    /* Record the value before the cell is reused, so that a death between
     * here and the caller's next step loses nothing. */
    if (popped)
        atomic_store_explicit(popped, v, memory_order_release);
    /* Hands the cell to the producer of the next lap. */
    atomic_store_explicit(&c->seq, pos + r->mask + 1, memory_order_release);
    intent_clear(intent);
    *val = v;
    return 0;
}

int fshm__ring_pop(fshm_ring_t *r, uint64_t *val, _Atomic uint64_t *intent,
                   _Atomic uint64_t *popped)
{
    return fshm__ring_pop_msg(r, val, NULL, NULL, NULL, intent, popped);
}

bool fshm__ring_ready(const fshm_ring_t *r)
{
    uint64_t pos = atomic_load_explicit(&r->sh->deq, memory_order_relaxed);
    const fshm_cell_t *c = &r->sh->cells[pos & r->mask];
    return atomic_load_explicit(&c->seq, memory_order_acquire) == pos + 1;
}

uint64_t fshm__ring_count(const fshm_ring_t *r)
{
    uint64_t deq = atomic_load_explicit(&r->sh->deq, memory_order_acquire);
    uint64_t enq = atomic_load_explicit(&r->sh->enq, memory_order_acquire);
    return enq > deq ? enq - deq : 0;
}

int fshm__ring_repair_pop(fshm_ring_t *r, uint64_t pos, uint64_t *val)
{
    fshm_cell_t *c = &r->sh->cells[pos & r->mask];
    if (atomic_load_explicit(&r->sh->deq, memory_order_acquire) <= pos)
        return 0; /* nobody claimed pos yet */
    if (atomic_load_explicit(&c->seq, memory_order_acquire) != pos + 1)
        return 0; /* handed back already */
    *val = atomic_load_explicit(&c->val, memory_order_relaxed);
    atomic_store_explicit(&c->seq, pos + r->mask + 1, memory_order_release);
    return 1;
}

int fshm__ring_repair_push(fshm_ring_t *r, uint64_t pos)
{
    fshm_cell_t *c = &r->sh->cells[pos & r->mask];
    if (atomic_load_explicit(&r->sh->enq, memory_order_acquire) <= pos)
        return 0;
    if (atomic_load_explicit(&c->seq, memory_order_acquire) != pos)
        return 0; /* published already */
    atomic_store_explicit(&c->val, FSHM_RING_HOLE, memory_order_relaxed);
    c->len = FSHM_NOT_INLINE;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return 1;
}

int fshm__ring_push_claim_only(fshm_ring_t *r, _Atomic uint64_t *intent)
{
    uint64_t pos;
    return claim_push(r, &pos, intent);
}

int fshm__ring_pop_claim_only(fshm_ring_t *r, _Atomic uint64_t *intent)
{
    uint64_t pos;
    return claim_pop(r, &pos, intent);
}
