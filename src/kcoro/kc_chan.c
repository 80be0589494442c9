/* kcoro channels: rendezvous, buffered, unlimited and conflated.
 *
 * One lock per channel guards a ring buffer and two FIFO queues of blocked
 * waiters. The hot path (buffer neither empty nor full) is lock, copy,
 * unlock. When a peer is already waiting the element goes straight to or
 * from the waiter's own memory (one copy, no buffer round trip), which is
 * also how rendezvous channels work at all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_internal.h"

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
    int open = KC_SEL_OPEN;
    return atomic_compare_exchange_strong_explicit(&w->sel->winner, &open, w->clause,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* Publishes the result of a claimed waiter and wakes its owner. The parker
 * is read first: once `done` is visible the owner may return and its stack
 * (sel, waiter) is gone; parkers themselves are never freed. */
static void complete(kc_waiter_t *w, int res)
{
    kc_sel_t *s = w->sel;
    kc_parker_t *p = s->parker;
    s->result = res;
    atomic_store_explicit(&s->done, 1, memory_order_release);
    kc__unpark(p);
}

/* Pops the first waiter of q that can still be claimed, or NULL. */
static kc_waiter_t *take_waiter(kc_wqueue_t *q)
{
    kc_waiter_t *w;
    while ((w = q->head)) {
        kc__wq_remove(q, w);
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
    memcpy(slot(ch, ch->count), src, ch->esz);
    ch->count++;
}

static void ring_pop(kc_chan_t *ch, void *dst)
{
    memcpy(dst, slot(ch, 0), ch->esz);
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

static void drop(kc_chan_t *ch, void *elem)
{
    atomic_fetch_add_explicit(&ch->dropped, 1, memory_order_relaxed);
    if (ch->undelivered)
        ch->undelivered(ch->undelivered_user, elem);
}

/* ---- core operations (lock held) -------------------------------------- */

bool kc__try_send(kc_chan_t *ch, const void *src, int *res)
{
    if (ch->closed) {
        *res = -EPIPE;
        return true;
    }
    size_t nb = elem_bytes(ch, src);
    kc_waiter_t *w = take_waiter(&ch->recvq);
    if (w) {
        /* A receiver is waiting, so the buffer is empty: hand over directly. */
        memcpy(w->buf, src, ch->esz);
        ch->sends++;
        ch->recvs++;
        ch->bytes_sent += nb;
        ch->bytes_recv += nb;
        complete(w, 0);
        *res = 0;
        return true;
    }
    switch (ch->kind) {
    case KC_RENDEZVOUS:
        return false;
    case KC_BUFFERED:
        if (ch->count == ch->cap)
            return false;
        break;
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
            drop(ch, slot(ch, 0));
            ch->count = 0;
        }
        break;
    }
    ring_push(ch, src);
    ch->sends++;
    ch->bytes_sent += nb;
    *res = 0;
    return true;
}

bool kc__try_recv(kc_chan_t *ch, void *dst, int *res)
{
    kc_waiter_t *w;
    if (ch->count) {
        ring_pop(ch, dst);
        ch->recvs++;
        ch->bytes_recv += elem_bytes(ch, dst);
        /* A slot opened: move the oldest blocked sender's element in. */
        if ((w = take_waiter(&ch->sendq))) {
            ring_push(ch, w->buf);
            ch->sends++;
            ch->bytes_sent += elem_bytes(ch, w->buf);
            complete(w, 0);
        }
        *res = 0;
        return true;
    }
    if ((w = take_waiter(&ch->sendq))) {
        size_t nb = elem_bytes(ch, w->buf);
        memcpy(dst, w->buf, ch->esz);
        ch->sends++;
        ch->recvs++;
        ch->bytes_sent += nb;
        ch->bytes_recv += nb;
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

int kc__sel_wait(kc_sel_t *sel, uint64_t deadline, const kc_cancel_t *cancel)
{
    kc_cancel_hook_t hook;
    bool hooked = false;
    int err = 0;

    if (cancel) {
        hook.parker = sel->parker;
        if (kc__cancel_hook(cancel, &hook) < 0)
            err = -ECANCELED;
        else
            hooked = true;
    }
    while (!err) {
        if (atomic_load_explicit(&sel->done, memory_order_acquire))
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
        return 1;
    int open = KC_SEL_OPEN;
    if (atomic_compare_exchange_strong_explicit(&sel->winner, &open, KC_SEL_ABORTED,
                                                memory_order_acq_rel, memory_order_acquire))
        return err;
    /* A peer claimed us before we could give up: it is copying under the
     * channel lock right now, so this wait is short. */
    while (!atomic_load_explicit(&sel->done, memory_order_acquire))
        kc__park(sel->parker, 0);
    return 1;
}

static int chan_op(kc_chan_t *ch, bool is_send, void *buf, long timeout_ms,
                   const kc_cancel_t *cancel)
{
    int res;
    if (!ch || !buf)
        return -EINVAL;
    if (cancel && kc_cancel_is_set(cancel)) {
        kc__count_fail(ch, -ECANCELED);
        return -ECANCELED;
    }
    kc__lock(&ch->lock);
    if (is_send ? kc__try_send(ch, buf, &res) : kc__try_recv(ch, buf, &res)) {
        kc__unlock(&ch->lock);
        if (res < 0)
            kc__count_fail(ch, res);
        return res;
    }
    if (timeout_ms == 0) {
        kc__unlock(&ch->lock);
        kc__count_fail(ch, -EAGAIN);
        return -EAGAIN;
    }
    kc_sel_t sel = {.winner = KC_SEL_OPEN, .done = 0, .result = 0, .parker = kc__parker_self()};
    kc_waiter_t w = {.sel = &sel, .buf = buf, .clause = 0};
    kc__wq_push(is_send ? &ch->sendq : &ch->recvq, &w);
    kc__unlock(&ch->lock);

    int r = kc__sel_wait(&sel, kc__deadline(timeout_ms), cancel);
    if (r == 1) {
        res = sel.result;
    } else {
        kc__lock(&ch->lock);
        if (w.queued)
            kc__wq_remove(is_send ? &ch->sendq : &ch->recvq, &w);
        kc__unlock(&ch->lock);
        res = r;
    }
    if (res < 0) {
        kc__count_fail(ch, res);
        /* The element was offered and will never arrive: say so. */
        if (is_send && (res == -EPIPE || res == -ECANCELED))
            drop(ch, buf);
    }
    return res;
}

/* ---- public API ------------------------------------------------------- */

int kc_chan_make(kc_chan_t **out, int kind, size_t elem_size, size_t capacity)
{
    if (!out || elem_size == 0 || elem_size > KC_ELEM_MAX)
        return -EINVAL;
    size_t cap;
    switch (kind) {
    case KC_RENDEZVOUS: cap = 0; break;
    case KC_BUFFERED:
        if (capacity == 0 || capacity > SIZE_MAX / elem_size)
            return -EINVAL;
        cap = capacity;
        break;
    case KC_UNLIMITED: cap = capacity ? capacity : 64; break;
    case KC_CONFLATED: cap = 1; break;
    default: return -EINVAL;
    }
    if (cap > SIZE_MAX / elem_size)
        return -EINVAL;
    kc_chan_t *ch = calloc(1, sizeof *ch);
    if (!ch)
        return -ENOMEM;
    if (cap) {
        ch->buf = malloc(cap * elem_size);
        if (!ch->buf) {
            free(ch);
            return -ENOMEM;
        }
    }
    ch->kind = kind;
    ch->esz = elem_size;
    ch->cap = cap;
    kc__registry_add(ch);
    *out = ch;
    return 0;
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
    while (ch->count) {
        /* Destroy is single-threaded by contract; the slot is ours. */
        void *e = slot(ch, 0);
        drop(ch, e);
        ch->head = (ch->head + 1) % ch->cap;
        ch->count--;
    }
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
        /* Receivers only wait on an empty buffer, so they are done; blocked
         * senders will never get their element in. */
        while ((w = take_waiter(&ch->recvq)))
            complete(w, -EPIPE);
        while ((w = take_waiter(&ch->sendq)))
            complete(w, -EPIPE);
    }
    kc__unlock(&ch->lock);
}

bool kc_chan_is_closed(kc_chan_t *ch)
{
    if (!ch)
        return true;
    kc__lock(&ch->lock);
    bool c = ch->closed;
    kc__unlock(&ch->lock);
    return c;
}

size_t kc_chan_len(kc_chan_t *ch)
{
    if (!ch)
        return 0;
    kc__lock(&ch->lock);
    size_t n = ch->count;
    kc__unlock(&ch->lock);
    return n;
}

size_t kc_chan_cap(kc_chan_t *ch)
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

int kc_chan_kind(const kc_chan_t *ch)
{
    return ch ? ch->kind : -EINVAL;
}

size_t kc_chan_elem_size(const kc_chan_t *ch)
{
    return ch ? ch->esz : 0;
}
