/* kcoro select: wait for the first of several send/receive clauses.
 *
 * All involved channels are locked in address order (so two selects over the
 * same channels cannot deadlock), every clause is tried once, and if none is
 * ready one waiter per clause is queued, all sharing one kc_sel_t. A peer
 * completes exactly one of them by winning the CAS on sel->winner; the
 * others become unclaimable and are unlinked when the selector returns.
 */
#include <errno.h>
#include <stdlib.h>

#include "kc_internal.h"

/* Per-thread xorshift: unbiased selection needs cheap, not strong, random. */
static __thread uint64_t t_rng;

static uint32_t rng_next(void)
{
    uint64_t x = t_rng;
    if (!x)
        x = kc_now_ns() ^ (uint64_t)(uintptr_t)&t_rng ^ 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t_rng = x;
    return (uint32_t)(x >> 32);
}

static void lock_all(kc_chan_t **chs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kc__lock(&chs[i]->lock);
}

static void unlock_all(kc_chan_t **chs, size_t n)
{
    for (size_t i = n; i-- > 0;)
        kc__unlock(&chs[i]->lock);
}

/* Distinct channels of the clauses, sorted by address. */
static size_t lock_order(const kc_select_clause_t *cl, size_t n, kc_chan_t **out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        kc_chan_t *c = cl[i].ch;
        if (!c)
            continue;
        size_t j = m;
        while (j > 0 && (uintptr_t)out[j - 1] > (uintptr_t)c)
            j--;
        if (j > 0 && out[j - 1] == c)
            continue;
        for (size_t k = m; k > j; k--)
            out[k] = out[k - 1];
        out[j] = c;
        m++;
    }
    return m;
}

int kc_select(kc_select_clause_t *cl, size_t n, int mode, long timeout_ms,
              const kc_cancel_t *cancel)
{
    kc_chan_t *chs[KC_SELECT_MAX];
    uint8_t order[KC_SELECT_MAX];
    kc_waiter_t w[KC_SELECT_MAX];

    if (!cl || n == 0 || n > KC_SELECT_MAX)
        return -EINVAL;
    if (mode != KC_SELECT_BIASED && mode != KC_SELECT_UNBIASED)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (cl[i].op != KC_SELECT_RECV && cl[i].op != KC_SELECT_SEND)
            return -EINVAL;
        if (cl[i].ch && !cl[i].buf)
            return -EINVAL;
        cl[i].result = 0;
    }
    if (cancel && kc_cancel_is_set(cancel))
        return -ECANCELED;

    for (size_t i = 0; i < n; i++)
        order[i] = (uint8_t)i;
    if (mode == KC_SELECT_UNBIASED) {
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = rng_next() % (i + 1);
            uint8_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    uint64_t deadline = kc__deadline(timeout_ms);
    size_t nch = lock_order(cl, n, chs);

    lock_all(chs, nch);
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        int res;
        if (!cl[i].ch)
            continue;
        bool ok = cl[i].op == KC_SELECT_SEND ? kc__try_send(cl[i].ch, cl[i].buf, &res)
                                             : kc__try_recv(cl[i].ch, cl[i].buf, &res);
        if (ok) {
            unlock_all(chs, nch);
            cl[i].result = res;
            return (int)i;
        }
    }
    if (timeout_ms == 0) {
        unlock_all(chs, nch);
        return -EAGAIN;
    }

    kc_sel_t sel = {.winner = KC_SEL_OPEN, .done = 0, .result = 0, .parker = kc__parker_self()};
    for (size_t i = 0; i < n; i++) {
        w[i] = (kc_waiter_t){.sel = &sel, .buf = cl[i].buf, .clause = (int)i};
        if (cl[i].ch)
            kc__wq_push(cl[i].op == KC_SELECT_SEND ? &cl[i].ch->sendq : &cl[i].ch->recvq, &w[i]);
    }
    unlock_all(chs, nch);

    int r = kc__sel_wait(&sel, deadline, cancel);

    /* Unlink the clauses that did not win (the winner was unlinked by the
     * peer that completed it). */
    lock_all(chs, nch);
    for (size_t i = 0; i < n; i++)
        if (w[i].queued)
            kc__wq_remove(cl[i].op == KC_SELECT_SEND ? &cl[i].ch->sendq : &cl[i].ch->recvq,
                          &w[i]);
    unlock_all(chs, nch);

    if (r != 1)
        return r;
    int win = atomic_load_explicit(&sel.winner, memory_order_acquire);
    cl[win].result = sel.result;
    return win;
}
