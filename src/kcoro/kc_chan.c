/* kcoro channels: rendezvous, buffered, unlimited and conflated.
 *
 * Two designs share the waiter queues, the lock and select:
 *
 * - Buffered channels are tuned for throughput between threads on separate
 *   cores: the buffer is a lock-free multi-producer/multi-consumer ring with
 *   a sequence number per cell, so a send or receive that neither finds the
 *   ring full nor empty touches no lock and no shared counter. Only an
 *   operation that must block takes the lock, registers (send_waiters /
 *   recv_waiters, the lengths of the waiter queues) and parks; the opposite
 *   side reads that count as it claims its ring position and then wakes one
 *   waiter. The registration and the claim are sequentially consistent on
 *   both sides (Dekker, on the positions: see lf_push), so either the
 *   waiter sees the claimed position or the peer sees the waiter.
 *   One wake-up per element (or freed cell): a woken waiter that does not
 *   use it, a select that completed another clause, passes it on to the
 *   next waiter (kc__pass_on) so nobody sleeps on a non-empty channel.
 *   A plain kc_chan_send/recv waiter is not just woken to retry: a send
 *   copies its element straight to a parked receiver (handoff_recv), and a
 *   receive that frees a cell pushes a parked sender's element for it
 *   (wake_peer), so the woken side returns at once.
 *
 * - Rendezvous, unlimited and conflated channels keep everything under the
 *   lock and hand elements over directly: a sender that finds a receiver
 *   waiting copies straight into the receiver's memory.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kc_internal.h"
#include "kc_sched.h"

/* Yields a coroutine makes to its worker's other coroutines before it
 * parks on a buffered channel (see buf_op). */
#define KC_CORO_RETRIES 4

/* Contention back-off (see buf_op): a coroutine whose buffered operation
 * lost the race for its ring position this many times steps aside for
 * KC_CONTEND_PARK_NS. */
#define KC_CONTEND_FAILS 2
#define KC_CONTEND_PARK_NS 20000
/* Pauses over which a waiting coroutine watches whether the other side's
 * ring position moves (peer_active, buf_op). */
#define KC_PEER_PAUSES 16

/* The hand-off line (see struct kc_chan): everything a locked-kind hand-off
 * touches in the channel fits the first cache line. */
_Static_assert(offsetof(struct kc_chan, cap) == KC_CACHELINE,
               "kc_chan's hand-off fields must fit its first cache line");

/* Copies one element. Most elements are a word or two: copied inline for
 * those sizes instead of through a call to the library's memcpy (which
 * costs more than the copy: a call and a size dispatch, each way of every
 * hand-off). */
static inline void copy_elem(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
    }
}

/* ---- waiter queues ---------------------------------------------------- */

void kc__wq_push(kc_wqueue_t *q, kc_waiter_t *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->queued = true;
}

void kc__wq_remove(kc_wqueue_t *q, kc_waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
}

/* Claims a waiter for completion. Fails when its owner already gave up
 * (timeout, cancel) or another clause of its select already won. */
static bool claim(kc_waiter_t *w)
{
    /* A solo waiter has no rival claimer (we unlinked it under the lock)
     * and an owner that never aborts: no CAS needed. */
    if (atomic_load_explicit(&w->sel->winner, memory_order_relaxed) == KC_SEL_SOLO) {
        atomic_store_explicit(&w->sel->winner, (int16_t)w->clause, memory_order_relaxed);
        return true;
    }
    int16_t open = KC_SEL_OPEN;
    return atomic_compare_exchange_strong_explicit(&w->sel->winner, &open, (int16_t)w->clause,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* Publishes the result of a claimed waiter and wakes its owner if it may
 * sleep. The parker is read first: once `done` is visible the owner may
 * return and its stack (sel, waiter) is gone; parkers are never freed. The
 * exchange and the owner's WAITING -> SLEEPY CAS are ordered on one word,
 * so either the owner sees DONE or we see SLEEPY and unpark. */
static void complete(kc_waiter_t *w, int res)
{
    kc_sel_t *s = w->sel;
    kc_parker_t *p = s->parker;
    s->result = (int16_t)res;
    /* For the spin policy of thread owners (coroutines never spin). */
    if (!p->coro)
        s->waker = kc__parker_self();
    /* PARKED: the owner is switched out and touches `done` no more until
     * made runnable (kc__coro_park_on, wait1): no race left, a store does.
     * The load acquires: PARKED was written by the worker that switched the
     * owner out, after it saved the owner's frame; the owner, once resumed,
     * reuses that frame (a select's next round puts a new sel at the same
     * address), and that reuse must happen after the worker's write. */
    if (atomic_load_explicit(&s->done, memory_order_acquire) == KC_SEL_PARKED) {
        atomic_store_explicit(&s->done, KC_SEL_DONE, memory_order_release);
        kc__coro_ready(p->coro);
        return;
    }
    uint32_t prev = atomic_exchange_explicit(&s->done, KC_SEL_DONE, memory_order_acq_rel);
    if (prev == KC_SEL_SLEEPY)
        kc__unpark(p);
    else if (prev == KC_SEL_PARKED)
        kc__coro_ready(p->coro); /* switched out on `done` (kc__sel_wait) */
}

/* Pops the first waiter of q (one of ch's queues) that can still be
 * claimed, or NULL. A buffered channel's waiter counts (send_waiters,
 * recv_waiters) are the lengths of its queues: whoever unlinks a waiter
 * uncounts it, so a waiter that was woken and has not run yet no longer
 * makes every operation of the other side take the lock to look for it. */
static kc_waiter_t *take_waiter(kc_chan_t *ch, kc_wqueue_t *q)
{
    kc_waiter_t *w;
    while ((w = q->head)) {
        /* The waiter's line is written next (unlink, claim, element, done):
         * fetch it for writing at once. Reading it first would move it
         * twice, shared and then exclusive, while its owner polls it. */
        kc__prefetchw(w);
        kc__wq_remove(q, w);
        if (kc__is_notify_chan(ch))
            kc__waiters_add(ch, q == &ch->sendq, -1);
        if (claim(w))
            return w;
    }
    return NULL;
}

/* ---- ring buffer ------------------------------------------------------ */

static inline size_t elem_bytes(const kc_chan_t *ch, const void *elem)
{
    return ch->is_desc ? ((const kc_zdesc *)elem)->len : ch->esz;
}

static inline unsigned char *slot(kc_chan_t *ch, size_t i)
{
    return ch->buf + ((ch->head + i) % ch->cap) * ch->esz;
}

static void ring_push(kc_chan_t *ch, const void *src)
{
    copy_elem(slot(ch, ch->count), src, ch->esz);
    ch->count++;
}

static void ring_pop(kc_chan_t *ch, void *dst)
{
    copy_elem(dst, slot(ch, 0), ch->esz);
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
}

/* Doubles an unlimited channel's ring, keeping element order. */
static int ring_grow(kc_chan_t *ch)
{
    if (ch->cap > SIZE_MAX / 2 / ch->esz)
        return -ENOMEM;
    size_t ncap = ch->cap * 2;
    unsigned char *nb = malloc(ncap * ch->esz);
    if (!nb)
        return -ENOMEM;
    for (size_t i = 0; i < ch->count; i++)
        memcpy(nb + i * ch->esz, slot(ch, i), ch->esz);
    free(ch->buf);
    ch->buf = nb;
    ch->cap = ncap;
    ch->head = 0;
    return 0;
}

/* ---- lock-free ring (buffered channels) ------------------------------- */

/* A cell holds `seq` then the element. seq == 2*pos: free for the producer
 * of position pos; seq == 2*pos + 1: filled, for the consumer of pos; the
 * consumer sets seq = 2*(pos + cap) to free it for the next lap. (Doubling
 * keeps "filled at pos" distinct from "free at pos + 1" when cap == 1.)
 * Positions are 64-bit counters and never wrap in practice.
 *
 * The word stored in cell i is seq - 2*i, i.e. relative to the cell's first
 * position, so its initial value ("free for position i") is 0: a fresh
 * zero page is a ready cell and creating a channel writes no cell at all
 * (a capacity of 2^26 used to write 1 GiB up front). cell_at returns the
 * stored word's base for pos, 2*(pos - i), and every comparison and store
 * below is against base + 0 (free), base + 1 (filled) or base + 2*cap (free
 * for the next lap): one subtraction more per operation. */
static inline _Atomic size_t *cell_at(kc_chan_t *ch, size_t pos, size_t *base)
{
    size_t i = ch->mask ? (pos & ch->mask) : (pos % ch->cap);
    *base = 2 * (pos - i);
    return (_Atomic size_t *)(ch->cells + i * ch->stride);
}

static inline void *cell_data(_Atomic size_t *seq)
{
    return (unsigned char *)seq + sizeof(size_t);
}

/* Closing sets this bit in enq_pos, the word every producer must CAS to
 * claim a cell: after close no push can start, and a push that claimed its
 * cell before is visible as enq_pos > deq_pos, so receivers wait for it
 * instead of reporting -EPIPE while an accepted element is still landing. */
#define KC_POS_CLOSED ((size_t)1 << (sizeof(size_t) * 8 - 1))

/* The waiter handshake (see the file comment) is on the positions, not
 * on the cells: a push claims its position by a sequentially consistent
 * CAS on enq_pos and then reads recv_waiters; a receiver that registers
 * (seq_cst increment of recv_waiters) then reads enq_pos. One of the two
 * sees the other: the pusher wakes a registered receiver once its element
 * is published, or the receiver sees the claimed position and retries
 * instead of parking (kc__buf_landing), since the element is landing. The same
 * holds for pops, deq_pos and senders. So the cells are published with a
 * plain release store, where a sequentially consistent store (a locked
 * exchange on x86-64, stalled until the cell's line arrives) cost about as
 * much as the CAS itself.
 *
 * Returns 1 pushed, 0 full, -EPIPE closed; on 1, *waiters is the number of
 * receivers registered when the position was claimed. *lost counts the
 * claims lost to another producer (contention, see buf_op). */
static int lf_push(kc_chan_t *ch, const void *src, uint32_t *waiters, unsigned *lost)
{
    size_t pos = atomic_load_explicit(&ch->enq_pos, memory_order_relaxed);
    size_t base;
    _Atomic size_t *seq;
    for (;;) {
        if (pos & KC_POS_CLOSED)
            return -EPIPE;
        seq = cell_at(ch, pos, &base);
        size_t s = atomic_load_explicit(seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(s - base);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&ch->enq_pos, &pos, pos + 1,
                                                      memory_order_seq_cst, memory_order_relaxed))
                break;
            ++*lost;
            KC_PROF_INC(KP_CLAIM_LOST);
        } else if (dif < 0) {
            return 0; /* full (or a consumer is just freeing the cell) */
        } else {
            pos = atomic_load_explicit(&ch->enq_pos, memory_order_relaxed);
        }
    }
    *waiters = atomic_load_explicit(&ch->recv_waiters, memory_order_seq_cst);
    copy_elem(cell_data(seq), src, ch->esz);
    /* Descriptor bytes are counted before the element can be taken, so a
     * receive can never be counted ahead of its send (see kc__buffered_counts). */
    if (ch->is_desc)
        atomic_fetch_add_explicit(&ch->bytes_sent, ((const kc_zdesc *)src)->len,
                                  memory_order_relaxed);
    atomic_store_explicit(seq, base + 1, memory_order_release);
    return 1;
}

/* As lf_push: *waiters is the number of senders registered when the
 * position was claimed, *lost counts claims lost to other consumers. */
static bool lf_pop(kc_chan_t *ch, void *dst, uint32_t *waiters, unsigned *lost)
{
    size_t pos = atomic_load_explicit(&ch->deq_pos, memory_order_relaxed);
    size_t base;
    _Atomic size_t *seq;
    for (;;) {
        seq = cell_at(ch, pos, &base);
        size_t s = atomic_load_explicit(seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(s - (base + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&ch->deq_pos, &pos, pos + 1,
                                                      memory_order_seq_cst, memory_order_relaxed))
                break;
            ++*lost;
            KC_PROF_INC(KP_CLAIM_LOST);
        } else if (dif < 0) {
            return false; /* empty (or a producer is just filling the cell) */
        } else {
            pos = atomic_load_explicit(&ch->deq_pos, memory_order_relaxed);
        }
    }
    *waiters = atomic_load_explicit(&ch->send_waiters, memory_order_seq_cst);
    copy_elem(dst, cell_data(seq), ch->esz);
    atomic_store_explicit(seq, base + 2 * ch->cap, memory_order_release);
    return true;
}

/* For a registered waiter whose attempt failed: true when a peer claimed a
 * position that will make the attempt succeed once it completes (an
 * element landing for a receiver, a cell being freed for a sender). That
 * peer may have claimed it before seeing our registration, and would then
 * not wake us: the caller retries instead of parking. */
bool kc__buf_landing(kc_chan_t *ch, bool is_send)
{
    size_t e = atomic_load_explicit(&ch->enq_pos, memory_order_seq_cst) & ~KC_POS_CLOSED;
    size_t d = atomic_load_explicit(&ch->deq_pos, memory_order_seq_cst);
    return is_send ? e - d < ch->cap : e > d;
}

/* Every successful buffered push claims exactly one position and every pop
 * one more, so the positions are the operation counts: the hot path needs
 * no counter of its own (two atomic adds per element less). Byte counts
 * follow from the fixed element size; descriptor channels, whose bytes vary,
 * keep byte counters (the send's added before its cell is published).
 *
 * A snapshot must never show more receives than sends. Every receive took
 * an element whose send had claimed its position before, so reading the
 * receive side first and the send side second can only see as many sends
 * or more; the loads are sequentially consistent so neither moves past the
 * other. A send seen in flight (position claimed, element still landing) is
 * counted, as kc_chan_len counts it. The final clamp keeps the promise even
 * where the hardware would let a relaxed update of the receive side become
 * visible first. */
void kc__buffered_counts(const kc_chan_t *ch, struct kc_counts *c)
{
    /* Hand-offs count as one send and one receive (read once for both). */
    uint64_t h = atomic_load_explicit(&ch->handed, memory_order_seq_cst);
    c->recvs = atomic_load_explicit(&ch->deq_pos, memory_order_seq_cst) + h;
    c->bytes_recv = ch->is_desc ? atomic_load_explicit(&ch->bytes_recv, memory_order_seq_cst)
                                : c->recvs * ch->esz;
    c->sends = (atomic_load_explicit(&ch->enq_pos, memory_order_seq_cst) & ~KC_POS_CLOSED) + h;
    c->bytes_sent = ch->is_desc ? atomic_load_explicit(&ch->bytes_sent, memory_order_seq_cst)
                                : c->sends * ch->esz;
    if (c->sends < c->recvs)
        c->sends = c->recvs;
    if (c->bytes_sent < c->bytes_recv)
        c->bytes_sent = c->bytes_recv;
}

void kc__waiters_add(kc_chan_t *ch, bool is_send, int delta)
{
    _Atomic uint32_t *c = is_send ? &ch->send_waiters : &ch->recv_waiters;
    if (delta > 0)
        atomic_fetch_add_explicit(c, 1, memory_order_seq_cst);
    else
        atomic_fetch_sub_explicit(c, 1, memory_order_seq_cst);
}

/* Wakes one waiter of the other side (the slow part of notify_peer, out of
 * line so that the check below stays inlined in the hot path). */
static __attribute__((noinline)) void wake_peer(kc_chan_t *ch, bool after_send, bool locked)
{
    if (!locked)
        kc__lock(&ch->lock);
    kc_waiter_t *w = take_waiter(ch, after_send ? &ch->recvq : &ch->sendq);
    KC_PROF_INC(w ? KP_WAKE : KP_WAKE_EMPTY);
    int res = 0;
    if (w && !after_send && w->handoff) {
        /* A parked sender, and room was just made: push its element for
         * it, so it returns at once instead of retrying (and maybe losing
         * the cell to another sender and parking again). Its element comes
         * after all of its earlier ones: it sends one at a time. */
        uint32_t receivers;
        unsigned lost = 0;
        if (lf_push(ch, w->buf.ptr, &receivers, &lost) == 1) {
            res = KC_BUF_HANDED;
            if (receivers) {
                kc_waiter_t *r = take_waiter(ch, &ch->recvq);
                if (r)
                    complete(r, 0);
            }
        }
    }
    if (w)
        complete(w, res);
    if (!locked)
        kc__unlock(&ch->lock);
}

/* A send that finds receivers registered: if the first one is a parked
 * kc_chan_recv and nothing is buffered or landing (so no element of ours
 * is still ahead of this one), copy the element straight into its buffer:
 * no cell is filled and drained, and the receiver does not wake up only to
 * retry (and maybe find the element taken by another receiver). Go does
 * the same. False when that does not apply: push as usual. */
static __attribute__((noinline)) bool handoff_recv(kc_chan_t *ch, const void *src, bool locked)
{
    bool ok = false;
    if (!locked)
        kc__lock(&ch->lock);
    kc_waiter_t *w;
    while (!ch->closed && (w = ch->recvq.head) && w->handoff &&
           (atomic_load_explicit(&ch->enq_pos, memory_order_seq_cst) & ~KC_POS_CLOSED) ==
               atomic_load_explicit(&ch->deq_pos, memory_order_seq_cst)) {
        kc__wq_remove(&ch->recvq, w);
        kc__waiters_add(ch, false, -1);
        if (!claim(w))
            continue; /* gave up (timeout, cancel): try the next one */
        copy_elem(w->buf.ptr, src, ch->esz);
        if (ch->is_desc) {
            size_t len = ((const kc_zdesc *)src)->len;
            atomic_fetch_add_explicit(&ch->bytes_sent, len, memory_order_relaxed);
            atomic_fetch_add_explicit(&ch->bytes_recv, len, memory_order_relaxed);
        }
        /* Only changed under the lock: no locked add needed. */
        atomic_store_explicit(&ch->handed,
                              atomic_load_explicit(&ch->handed, memory_order_relaxed) + 1,
                              memory_order_seq_cst);
        complete(w, KC_BUF_HANDED);
        KC_PROF_INC(KP_HANDOFF_RECV);
        ok = true;
        break;
    }
    if (!locked)
        kc__unlock(&ch->lock);
    return ok;
}

/* Wakes one waiter of the other side, if any registered (for pass-on;
 * pushes and pops read the count as they claim, see lf_push). */
static inline void notify_peer(kc_chan_t *ch, bool after_send, bool locked)
{
    _Atomic uint32_t *c = after_send ? &ch->recv_waiters : &ch->send_waiters;
    if (atomic_load_explicit(c, memory_order_seq_cst) != 0)
        wake_peer(ch, after_send, locked);
}

void kc__pass_on(kc_chan_t *ch, bool recv_side)
{
    size_t e = atomic_load_explicit(&ch->enq_pos, memory_order_seq_cst) & ~KC_POS_CLOSED;
    size_t d = atomic_load_explicit(&ch->deq_pos, memory_order_seq_cst);
    /* Only while the reason for the wake-up still holds: an element left
     * (or being published) for receivers, room left for senders. If it was
     * used up meanwhile, whoever used it consumed the wake-up; later pushes
     * and pops notify on their own. A spurious wake-up only costs a retry. */
    if (recv_side ? e > d : e - d < ch->cap)
        notify_peer(ch, recv_side, false);
}

/* Locked kinds count under the lock, on the line the lock already holds:
 * plain increments, no atomic read-modify-write. Bytes follow from the
 * counts for fixed-size elements; descriptors count theirs (off line 0). */
static inline void count_send(kc_chan_t *ch, const void *elem)
{
    ch->sends++;
    if (ch->is_desc)
        atomic_fetch_add_explicit(&ch->bytes_sent, elem_bytes(ch, elem), memory_order_relaxed);
}

static inline void count_recv(kc_chan_t *ch, const void *elem)
{
    ch->recvs++;
    if (ch->is_desc)
        atomic_fetch_add_explicit(&ch->bytes_recv, elem_bytes(ch, elem), memory_order_relaxed);
}

/* Non-blocking buffered operations; `locked` as for notify_peer; *lost
 * counts ring positions lost to rivals of the same side (see lf_push). */
static bool buf_try_send(kc_chan_t *ch, const void *src, int *res, bool locked, unsigned *lost)
{
    if (atomic_load_explicit(&ch->recv_waiters, memory_order_relaxed) != 0 &&
        handoff_recv(ch, src, locked)) {
        *res = 0;
        return true;
    }
    uint32_t waiters;
    int r = lf_push(ch, src, &waiters, lost);
    if (r == 0)
        return false;
    if (r < 0) {
        *res = r;
        return true;
    }
    if (waiters)
        wake_peer(ch, true, locked);
    *res = 0;
    return true;
}

/* Receive on a closed ring: drain, including pushes that claimed a cell
 * before the close and are still copying (a few nanoseconds, unless the
 * producer was preempted: then yield to it). */
static bool closed_pop(kc_chan_t *ch, void *dst, uint32_t *waiters, unsigned *lost)
{
    size_t end = atomic_load_explicit(&ch->enq_pos, memory_order_acquire) & ~KC_POS_CLOSED;
    for (unsigned i = 0;; i++) {
        if (lf_pop(ch, dst, waiters, lost))
            return true;
        if (atomic_load_explicit(&ch->deq_pos, memory_order_acquire) >= end)
            return false;
        if (i < 100)
            kc__cpu_relax();
        else
            sched_yield();
    }
}

static bool buf_try_recv(kc_chan_t *ch, void *dst, int *res, bool locked, unsigned *lost)
{
    uint32_t waiters;
    if (!lf_pop(ch, dst, &waiters, lost)) {
        if (!(atomic_load_explicit(&ch->enq_pos, memory_order_acquire) & KC_POS_CLOSED))
            return false;
        if (!closed_pop(ch, dst, &waiters, lost)) {
            *res = -EPIPE;
            return true;
        }
    }
    if (ch->is_desc) /* counts are the ring positions: see kc__buffered_counts */
        atomic_fetch_add_explicit(&ch->bytes_recv, ((const kc_zdesc *)dst)->len,
                                  memory_order_relaxed);
    if (waiters)
        wake_peer(ch, false, locked);
    *res = 0;
    return true;
}

void kc__drop(kc_chan_t *ch, void *elem)
{
    atomic_fetch_add_explicit(&ch->dropped, 1, memory_order_relaxed);
    if (ch->undelivered)
        ch->undelivered(ch->undelivered_user, elem);
}

/* ---- core operations (lock held) -------------------------------------- */

bool kc__try_send(kc_chan_t *ch, const void *src, int *res)
{
    unsigned lost = 0;
    if (ch->kind == KC_BUFFERED)
        return buf_try_send(ch, src, res, true, &lost);
    if (ch->closed) {
        *res = -EPIPE;
        return true;
    }
    kc_waiter_t *w = take_waiter(ch, &ch->recvq);
    if (w) {
        /* A receiver is waiting, so nothing is buffered: hand over directly. */
        copy_elem(kc__wbuf(w), src, ch->esz);
        count_send(ch, src);
        count_recv(ch, src);
        complete(w, 0);
        *res = 0;
        return true;
    }
    switch (ch->kind) {
    case KC_RENDEZVOUS:
        return false;
    case KC_UNLIMITED:
        if (ch->count == ch->cap) {
            int r = ring_grow(ch);
            if (r < 0) {
                *res = r;
                return true;
            }
        }
        break;
    case KC_CONFLATED:
        if (ch->count == 1) {
            /* Keep only the newest: the old element is dropped, visibly. */
            kc__drop(ch, slot(ch, 0));
            ch->count = 0;
        }
        break;
    }
    ring_push(ch, src);
    count_send(ch, src);
    *res = 0;
    return true;
}

bool kc__try_recv(kc_chan_t *ch, void *dst, int *res)
{
    unsigned lost = 0;
    if (ch->kind == KC_BUFFERED)
        return buf_try_recv(ch, dst, res, true, &lost);
    if (ch->count) {
        /* Unlimited and conflated senders never block: no one to refill. */
        ring_pop(ch, dst);
        count_recv(ch, dst);
        *res = 0;
        return true;
    }
    kc_waiter_t *w = take_waiter(ch, &ch->sendq);
    if (w) {
        copy_elem(dst, kc__wbuf(w), ch->esz);
        count_send(ch, dst);
        count_recv(ch, dst);
        complete(w, 0);
        *res = 0;
        return true;
    }
    if (ch->closed) {
        *res = -EPIPE;
        return true;
    }
    return false;
}

void kc__count_fail(kc_chan_t *ch, int err)
{
    _Atomic uint64_t *c;
    switch (err) {
    case -EAGAIN: c = &ch->fail_again; break;
    case -ETIME: c = &ch->fail_timeout; break;
    case -ECANCELED: c = &ch->fail_canceled; break;
    case -EPIPE: c = &ch->fail_closed; break;
    default: return;
    }
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- waiting ---------------------------------------------------------- */

static bool sel_done(kc_sel_t *sel)
{
    return atomic_load_explicit(&sel->done, memory_order_acquire) == KC_SEL_DONE;
}

/* The thread that completed us is the likeliest to complete our next wait:
 * the spin policy watches whether it runs (see kc__spin_begin). */
static int sel_completed(kc_sel_t *sel)
{
    kc_parker_t *self = sel->parker;
    if (!self->coro && self->peer != sel->waker)
        self->peer = sel->waker;
    return 1;
}

int kc__sel_wait(kc_sel_t *sel, uint64_t deadline, const kc_cancel_t *cancel)
{
    kc_cancel_hook_t hook;
    bool hooked = false;
    int err = 0;

    if (sel->parker->coro && !deadline && !cancel) {
        /* A coroutine that cannot time out or be cancelled: nothing but
         * the completer can end this wait, so switch out on `done` itself
         * (the completer makes us runnable) instead of on the parker. */
        while (atomic_load_explicit(&sel->done, memory_order_acquire) != KC_SEL_DONE)
            kc__coro_park_on(&sel->done, KC_SEL_WAITING, KC_SEL_PARKED);
        return sel_completed(sel);
    }

    /* Spin on `done` while the peer runs on another CPU (kc_sync.h). */
    if (kc__spin_until(sel->parker, &sel->done, KC_SEL_DONE, deadline))
        return sel_completed(sel);
    /* From here on the completer must unpark us. */
    uint32_t w = KC_SEL_WAITING;
    atomic_compare_exchange_strong_explicit(&sel->done, &w, KC_SEL_SLEEPY, memory_order_acq_rel,
                                            memory_order_acquire);
    if (cancel) {
        hook.parker = sel->parker;
        if (kc__cancel_hook(cancel, &hook) < 0)
            err = -ECANCELED;
        else
            hooked = true;
    }
    while (!err) {
        if (sel_done(sel))
            break;
        if (cancel && kc_cancel_is_set(cancel)) {
            err = -ECANCELED;
            break;
        }
        if (kc__park(sel->parker, deadline) == -ETIME)
            err = -ETIME;
    }
    if (hooked)
        kc__cancel_unhook(cancel, &hook);
    if (!err)
        return sel_completed(sel);
    int16_t open = KC_SEL_OPEN;
    if (atomic_compare_exchange_strong_explicit(&sel->winner, &open, KC_SEL_ABORTED,
                                                memory_order_acq_rel, memory_order_acquire))
        return err;
    /* A peer claimed us before we could give up: it is copying under the
     * channel lock right now, so this wait is short (done is SLEEPY, so
     * the peer unparks us). */
    while (!sel_done(sel))
        kc__park(sel->parker, 0);
    return sel_completed(sel);
}

/* Waits for a single operation's waiter, queued under ch->lock (held on
 * entry, released here). Returns as kc__sel_wait. A coroutine that cannot
 * time out or be cancelled parks with the lock still held and its worker
 * releases it once the coroutine is switched out (Go's gopark with an
 * unlock function): the completer, under the lock, then always finds it
 * PARKED, stores DONE and readies it, with no race to settle. */
static int wait1(kc_chan_t *ch, kc_wait1_t *wt, uint64_t deadline, const kc_cancel_t *cancel)
{
    kc_sel_t *sel = &wt->sel;
    if (sel->parker->coro && !deadline && !cancel) {
        atomic_store_explicit(&sel->done, KC_SEL_PARKED, memory_order_relaxed);
        kc__coro_park_unlock(&ch->lock);
        /* Only the completer readies us, after storing DONE. */
        if (atomic_load_explicit(&sel->done, memory_order_acquire) != KC_SEL_DONE) {
            fputs("kcoro: coroutine resumed before its channel wait completed\n", stderr);
            abort();
        }
        return 1;
    }
    kc__unlock(&ch->lock);
    return kc__sel_wait(sel, deadline, cancel);
}

/* Waits for a peer to complete the push or pop it claimed (kc__buf_landing):
 * a few nanoseconds, unless that peer's thread was preempted in between;
 * then let it run. */
void kc__landing_pause(unsigned *n)
{
    KC_PROF_INC(KP_LANDING);
    if (++*n < 64) {
        kc__cpu_relax();
    } else if (kc__coro_current()) {
        kc_yield();
    } else {
        sched_yield();
    }
}

/* A coroutine whose operation lost its ring position to rivals of the same
 * side (other producers, or other consumers) KC_CONTEND_FAILS times is
 * racing coroutines on another worker for the same cache lines: the
 * position word and the cells move between the cores at every operation.
 * On a VM such a transfer costs ~100-200 ns, so two workers working one
 * channel at once ran 4x4 at 150-250 ns per element, against ~25 ns when
 * one worker carried the traffic (the bimodal "slow mode", docs/kcoro.md).
 * The loser steps aside: its operation is complete, it parks for
 * KC_CONTEND_PARK_NS (a timer wakes it; it is registered nowhere, so
 * nothing is delayed but itself), its worker runs its other coroutines,
 * which back off too while the race goes on, and the other worker carries
 * the traffic alone at single-core speed until they return. Go gets the
 * same effect from its channel lock, whose losers sleep in the kernel.
 * Threads do not back off (their spin policy decides), and one worker
 * never races itself (coroutines are not preempted). */
static __attribute__((noinline)) void contention_backoff(void)
{
    if (!kc__coro_current())
        return;
    KC_PROF_INC(KP_BACKOFF);
    kc__park(kc__parker_self(), kc_now_ns() + KC_CONTEND_PARK_NS);
}

/* True when the other side of a buffered channel is working it right now
 * from another CPU: its ring position (deq_pos for a sender, enq_pos for a
 * receiver) moves within KC_PEER_PAUSES pauses. */
static bool peer_active(kc_chan_t *ch, bool is_send)
{
    _Atomic size_t *pos = is_send ? &ch->deq_pos : &ch->enq_pos;
    size_t before = atomic_load_explicit(pos, memory_order_relaxed);
    for (int i = 0; i < KC_PEER_PAUSES; i++)
        kc__cpu_relax();
    return atomic_load_explicit(pos, memory_order_relaxed) != before;
}

/* One non-blocking attempt of buf_op's operation (see buf_try_send). */
static inline bool buf_try(kc_chan_t *ch, bool is_send, void *buf, int *res, bool locked,
                           unsigned *lost)
{
    return is_send ? buf_try_send(ch, buf, res, locked, lost)
                   : buf_try_recv(ch, buf, res, locked, lost);
}

/* Buffered send/recv: lock-free attempt, then register-retry-park loops.
 * A notified waiter always retries once, even past its deadline or after a
 * cancel, so a wake-up meant for it is never lost. */
static int buf_op(kc_chan_t *ch, bool is_send, void *buf, long timeout_ms,
                  const kc_cancel_t *cancel)
{
    int res;
    unsigned lost = 0;
    bool done = buf_try(ch, is_send, buf, &res, false, &lost);
    if (done) {
        if (res == 0 && lost >= KC_CONTEND_FAILS)
            contention_backoff();
        goto out;
    }
    if (timeout_ms == 0) {
        res = -EAGAIN;
        goto out;
    }
    /* The peer is usually a few hundred nanoseconds away from making room
     * or data; registering and parking costs the peer a lock and a wake-up
     * per element, so poll first, as the spin policy allows (pausing while
     * the peer runs elsewhere, yielding to it when it waits for our CPU). */
    kc_parker_t *self = kc__parker_self();
    uint64_t deadline = kc__deadline(timeout_ms);
    kc_spinner_t sp;
    if (kc__spin_begin(&sp, self, deadline)) {
        while (!(done = buf_try(ch, is_send, buf, &res, false, &lost)) &&
               kc__spin_next(&sp))
            ;
        kc__spin_end(&sp, done);
        if (done)
            goto out;
    }
    /* A coroutine does not spin (it would hold its worker), but the peer
     * it waits for often sits in the same worker's queue: let it run
     * first, a few times, before registering as a waiter (which would make
     * every operation of the other side take the lock to wake us). */
    int yields = 0;
    for (; yields < KC_CORO_RETRIES && kc__coro_yield_if_busy(); yields++) {
        KC_PROF_INC(KP_YIELD_BUSY);
        done = buf_try(ch, is_send, buf, &res, false, &lost);
        if (done)
            goto out;
    }
    /* Alone on its worker (nothing to yield to), with the peer working the
     * ring from another CPU right now: registering would make that peer
     * take the lock and wake us for about every element, the woken
     * coroutine would be readied on the peer's worker and stolen back by
     * ours, and we would trail the peer element by element, pulling each
     * cell's line across (the 1xC "slow mode": 170-280 ns per element,
     * against ~30 when the traffic stays on one side). Step aside once
     * instead, on a timer: the peer fills (or drains) the ring in bulk
     * meanwhile, and we then take (or make room for) many elements in a
     * row. A peer that is not running leaves the position still: we
     * register at once as before, no latency added. */
    if (yields == 0 && kc__coro_current() && peer_active(ch, is_send)) {
        uint64_t until = kc_now_ns() + KC_CONTEND_PARK_NS;
        if (deadline && deadline < until)
            until = deadline;
        KC_PROF_INC(KP_STEP_ASIDE);
        kc__park(kc__parker_self(), until);
        done = buf_try(ch, is_send, buf, &res, false, &lost);
        if (done)
            goto out;
    }
    kc_wqueue_t *q = is_send ? &ch->sendq : &ch->recvq;
    unsigned landings = 0;
    for (;;) {
        /* Only woken to retry: the waiter carries no element. */
        kc_wait1_t wt = {.sel = {.winner = deadline || cancel ? KC_SEL_OPEN : KC_SEL_SOLO,
                                 .done = KC_SEL_WAITING,
                                 .parker = self}};
        kc_waiter_t *w = &wt.w;
        w->sel = &wt.sel;
        w->handoff = true;
        w->buf.ptr = buf;
        kc__lock(&ch->lock);
        kc__waiters_add(ch, is_send, +1);
        done = buf_try(ch, is_send, buf, &res, true, &lost);
        if (done || kc__buf_landing(ch, is_send)) {
            kc__waiters_add(ch, is_send, -1);
            kc__unlock(&ch->lock);
            if (done)
                goto out;
            kc__landing_pause(&landings);
            continue;
        }
        kc__wq_push(q, w);
        KC_PROF_INC(KP_BUF_PARK);
        int r = wait1(ch, &wt, deadline, cancel);

        /* Completed (r == 1): the peer that claimed it unlinked and
         * uncounted it first (take_waiter). Else (timeout, cancel) it may
         * still be queued: unlink and uncount it here. */
        if (r != 1) {
            kc__lock(&ch->lock);
            if (w->queued) {
                kc__wq_remove(q, w);
                kc__waiters_add(ch, is_send, -1);
            }
            kc__unlock(&ch->lock);
        }
        if (r != 1) {
            res = r; /* timed out or cancelled without being notified */
            goto out;
        }
        if (wt.sel.result == KC_BUF_HANDED) {
            res = 0; /* a peer moved our element (see wake_peer, handoff_recv) */
            goto out;
        }
        KC_PROF_INC(KP_RETRY_AFTER_WAKE);
        done = buf_try(ch, is_send, buf, &res, false, &lost);
        if (done)
            goto out;
    }
out:
    if (res < 0) {
        kc__count_fail(ch, res);
        if (is_send && res == -EPIPE) /* see kc_undelivered_fn */
            kc__drop(ch, buf);
    }
    return res;
}

static int chan_op(kc_chan_t *ch, bool is_send, void *buf, long timeout_ms,
                   const kc_cancel_t *cancel)
{
    int res;
    if (!ch || !buf)
        return -EINVAL;
    if (cancel && kc_cancel_is_set(cancel)) {
        kc__count_fail(ch, -ECANCELED); /* the caller keeps a send's element */
        return -ECANCELED;
    }
    if (ch->kind == KC_BUFFERED)
        return buf_op(ch, is_send, buf, timeout_ms, cancel);
    kc__lock(&ch->lock);
    if (is_send ? kc__try_send(ch, buf, &res) : kc__try_recv(ch, buf, &res)) {
        kc__unlock(&ch->lock);
        if (res < 0) {
            kc__count_fail(ch, res);
            if (is_send && res == -EPIPE)
                kc__drop(ch, buf);
        }
        return res;
    }
    if (timeout_ms == 0) {
        kc__unlock(&ch->lock);
        kc__count_fail(ch, -EAGAIN);
        return -EAGAIN;
    }
    /* One line holds the whole wait (kc_wait1_t); a small element travels
     * in it, so neither side touches the other's buffer. */
    uint64_t deadline = kc__deadline(timeout_ms);
    kc_wait1_t wt = {.sel = {.winner = deadline || cancel ? KC_SEL_OPEN : KC_SEL_SOLO,
                             .done = KC_SEL_WAITING,
                             .parker = kc__parker_self()}};
    kc_waiter_t *w = &wt.w;
    w->sel = &wt.sel;
    w->inl = ch->esz <= KC_INLINE_MAX;
    if (!w->inl)
        w->buf.ptr = buf;
    else if (is_send)
        copy_elem(w->buf.bytes, buf, ch->esz);
    kc__wq_push(is_send ? &ch->sendq : &ch->recvq, w);
    int r = wait1(ch, &wt, deadline, cancel);
    if (r == 1) {
        res = wt.sel.result;
        if (res == 0 && !is_send && w->inl)
            copy_elem(buf, w->buf.bytes, ch->esz);
    } else {
        kc__lock(&ch->lock);
        if (w->queued)
            kc__wq_remove(is_send ? &ch->sendq : &ch->recvq, w);
        kc__unlock(&ch->lock);
        res = r;
    }
    if (res < 0) {
        kc__count_fail(ch, res);
        /* Refused by a closed channel: say so (see kc_undelivered_fn). */
        if (is_send && res == -EPIPE)
            kc__drop(ch, buf);
    }
    return res;
}

/* ---- public API ------------------------------------------------------- */

/* Cells start zeroed, which the encoding reads as "free" (see cell_at).
 * Large rings are mapped straight from the kernel so that untouched cells
 * cost no memory and no time: pages appear as the first lap reaches them.
 * Small ones come from calloc (no page of their own). */
#define KC_CELLS_MMAP_MIN ((size_t)64 << 10)

static int cells_alloc(kc_chan_t *ch, size_t bytes)
{
    if (bytes >= KC_CELLS_MMAP_MIN) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -ENOMEM;
        ch->cells = p;
        ch->cells_mapped = bytes;
        return 0;
    }
    ch->cells = calloc(1, bytes);
    return ch->cells ? 0 : -ENOMEM;
}

static void cells_free(kc_chan_t *ch)
{
    if (ch->cells_mapped)
        munmap(ch->cells, ch->cells_mapped);
    else
        free(ch->cells);
}

int kc_chan_make(kc_chan_t **out, int kind, size_t elem_size, size_t capacity)
{
    if (!out || elem_size == 0 || elem_size > KC_ELEM_MAX)
        return -EINVAL;
    size_t cap;
    switch (kind) {
    case KC_RENDEZVOUS: cap = 0; break;
    case KC_BUFFERED:
        if (capacity == 0)
            return -EINVAL;
        cap = capacity;
        break;
    case KC_UNLIMITED: cap = capacity ? capacity : 64; break;
    case KC_CONFLATED: cap = 1; break;
    default: return -EINVAL;
    }
    /* Cells keep the sequence word aligned for every element size. */
    size_t stride = (sizeof(size_t) + elem_size + 7) & ~(size_t)7;
    if (cap && cap > SIZE_MAX / stride)
        return -EINVAL;
    /* Aligned: the hot counters sit on their own cache lines. */
    kc_chan_t *ch = aligned_alloc(KC_CACHELINE, (sizeof *ch + KC_CACHELINE - 1) & ~(size_t)(KC_CACHELINE - 1));
    if (!ch)
        return -ENOMEM;
    memset(ch, 0, sizeof *ch);
    ch->kind = kind;
    ch->esz = elem_size;
    ch->cap = cap;
    if (kind == KC_BUFFERED) {
        ch->stride = stride;
        ch->mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
        if (cells_alloc(ch, cap * stride) < 0)
            goto fail_alloc;
    } else if (cap) {
        ch->buf = malloc(cap * elem_size);
        if (!ch->buf)
            goto fail_alloc;
    }
    static _Atomic uint64_t next_id = 1;
    ch->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    kc__registry_add(ch);
    *out = ch;
    return 0;

fail_alloc:
    free(ch);
    return -ENOMEM;
}

int kc_chan_make_desc(kc_chan_t **out, int kind, size_t capacity)
{
    int r = kc_chan_make(out, kind, sizeof(kc_zdesc), capacity);
    if (r == 0)
        (*out)->is_desc = true;
    return r;
}

void kc_chan_destroy(kc_chan_t *ch)
{
    if (!ch)
        return;
    kc__registry_remove(ch);
    /* Destroy is single-threaded by contract: what is left is dropped. */
    if (ch->kind == KC_BUFFERED) {
        unsigned char tmp[256];
        void *e = ch->esz <= sizeof tmp ? tmp : malloc(ch->esz);
        uint32_t waiters;
        unsigned lost = 0;
        while (e && lf_pop(ch, e, &waiters, &lost))
            kc__drop(ch, e);
        if (e != tmp)
            free(e);
    }
    while (ch->count) {
        kc__drop(ch, slot(ch, 0));
        ch->head = (ch->head + 1) % ch->cap;
        ch->count--;
    }
    cells_free(ch);
    free(ch->buf);
    free(ch);
}

void kc_chan_set_undelivered(kc_chan_t *ch, kc_undelivered_fn fn, void *user)
{
    if (!ch)
        return;
    kc__lock(&ch->lock);
    ch->undelivered = fn;
    ch->undelivered_user = user;
    kc__unlock(&ch->lock);
}

void kc_chan_set_name(kc_chan_t *ch, const char *name)
{
    if (!ch)
        return;
    kc__lock(&ch->lock);
    snprintf(ch->name, sizeof ch->name, "%s", name ? name : "");
    kc__unlock(&ch->lock);
}

int kc_chan_send(kc_chan_t *ch, const void *msg, long timeout_ms)
{
    return chan_op(ch, true, (void *)msg, timeout_ms, NULL);
}

int kc_chan_recv(kc_chan_t *ch, void *out, long timeout_ms)
{
    return chan_op(ch, false, out, timeout_ms, NULL);
}

int kc_chan_send_c(kc_chan_t *ch, const void *msg, long timeout_ms, const kc_cancel_t *cancel)
{
    return chan_op(ch, true, (void *)msg, timeout_ms, cancel);
}

int kc_chan_recv_c(kc_chan_t *ch, void *out, long timeout_ms, const kc_cancel_t *cancel)
{
    return chan_op(ch, false, out, timeout_ms, cancel);
}

int kc_chan_send_desc_c(kc_chan_t *ch, const kc_zdesc *d, long timeout_ms, const kc_cancel_t *c)
{
    if (!ch || !ch->is_desc)
        return -EINVAL;
    return chan_op(ch, true, (void *)d, timeout_ms, c);
}

int kc_chan_recv_desc_c(kc_chan_t *ch, kc_zdesc *d, long timeout_ms, const kc_cancel_t *c)
{
    if (!ch || !ch->is_desc)
        return -EINVAL;
    return chan_op(ch, false, d, timeout_ms, c);
}

int kc_chan_send_desc(kc_chan_t *ch, const kc_zdesc *d, long timeout_ms)
{
    return kc_chan_send_desc_c(ch, d, timeout_ms, NULL);
}

int kc_chan_recv_desc(kc_chan_t *ch, kc_zdesc *d, long timeout_ms)
{
    return kc_chan_recv_desc_c(ch, d, timeout_ms, NULL);
}

void kc_chan_close(kc_chan_t *ch)
{
    kc_waiter_t *w;
    if (!ch)
        return;
    kc__lock(&ch->lock);
    if (!ch->closed) {
        ch->closed = true;
        if (ch->kind == KC_BUFFERED)
            atomic_fetch_or_explicit(&ch->enq_pos, KC_POS_CLOSED, memory_order_seq_cst);
        /* Locked kinds: receivers only wait on an empty buffer, so they are
         * done, and blocked senders never get their element in. Buffered
         * waiters are only notified: they retry, drain, then see -EPIPE. */
        while ((w = take_waiter(ch, &ch->recvq)))
            complete(w, -EPIPE);
        while ((w = take_waiter(ch, &ch->sendq)))
            complete(w, -EPIPE);
    }
    kc__unlock(&ch->lock);
}

bool kc_chan_is_closed(const kc_chan_t *cch)
{
    kc_chan_t *ch = (kc_chan_t *)cch; /* locking is not a logical change */
    if (!ch)
        return true;
    kc__lock(&ch->lock);
    bool c = ch->closed;
    kc__unlock(&ch->lock);
    return c;
}

size_t kc_chan_len(const kc_chan_t *cch)
{
    kc_chan_t *ch = (kc_chan_t *)cch; /* locking is not a logical change */
    if (!ch)
        return 0;
    if (ch->kind == KC_BUFFERED) {
        /* Racy by nature under concurrent use; exact when quiescent. */
        size_t d = atomic_load_explicit(&ch->deq_pos, memory_order_acquire);
        size_t e = atomic_load_explicit(&ch->enq_pos, memory_order_acquire) & ~KC_POS_CLOSED;
        size_t n = e > d ? e - d : 0;
        return n < ch->cap ? n : ch->cap; /* read apart: keep within the bound */
    }
    kc__lock(&ch->lock);
    size_t n = ch->count;
    kc__unlock(&ch->lock);
    return n;
}

size_t kc_chan_cap(const kc_chan_t *ch)
{
    if (!ch)
        return 0;
    switch (ch->kind) {
    case KC_RENDEZVOUS: return 0;
    case KC_CONFLATED: return 1;
    case KC_UNLIMITED: return SIZE_MAX;
    default: return ch->cap;
    }
}

uint64_t kc_chan_id(const kc_chan_t *ch)
{
    return ch ? ch->id : 0;
}

int kc_chan_kind(const kc_chan_t *ch)
{
    return ch ? ch->kind : -EINVAL;
}

size_t kc_chan_elem_size(const kc_chan_t *ch)
{
    return ch ? ch->esz : 0;
}
