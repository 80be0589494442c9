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

static kc_wqueue_t *queue_of(kc_select_clause_t *c)
{
    return c->op == KC_SELECT_SEND ? &c->ch->sendq : &c->ch->recvq;
}

/* Tries the clauses in `order` on locked channels; only buffered ones when
 * notify_only. Returns the index of the completed clause or -1. */
static int try_clauses(kc_select_clause_t *cl, size_t n, const uint8_t *order, bool notify_only)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        int res;
        if (!cl[i].ch || (notify_only && !kc__is_notify_chan(cl[i].ch)))
            continue;
        bool ok = cl[i].op == KC_SELECT_SEND ? kc__try_send(cl[i].ch, cl[i].buf, &res)
                                             : kc__try_recv(cl[i].ch, cl[i].buf, &res);
        if (ok) {
            cl[i].result = res;
            return (int)i;
        }
    }
    return -1;
}

/* Unlinks still-queued waiters and uncounts their buffered registrations
 * (locks held). */
static void unregister(kc_select_clause_t *cl, size_t n, kc_waiter_t *w)
{
    for (size_t i = 0; i < n; i++) {
        if (!cl[i].ch)
            continue;
        if (!w[i].queued)
            continue; /* unlinked, and uncounted, by a peer (take_waiter) */
        kc__wq_remove(queue_of(&cl[i]), &w[i]);
        if (kc__is_notify_chan(cl[i].ch))
            kc__waiters_add(cl[i].ch, cl[i].op == KC_SELECT_SEND, -1);
    }
}

/* A buffered clause's peer operation is landing (see kc__buf_landing). */
static bool landing(const kc_select_clause_t *cl, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cl[i].ch && kc__is_notify_chan(cl[i].ch) &&
            kc__buf_landing(cl[i].ch, cl[i].op == KC_SELECT_SEND))
            return true;
    return false;
}

/* A send clause that met a closed channel hands its element to the
 * undelivered callback, as kc_chan_send does (no channel lock held here). */
static int finish(kc_select_clause_t *cl, int win)
{
    if (cl[win].op == KC_SELECT_SEND && cl[win].result == -EPIPE)
        kc__drop(cl[win].ch, cl[win].buf);
    return win;
}

static int select_rounds(kc_select_clause_t *cl, size_t n, const uint8_t *order, kc_chan_t **chs,
                         size_t nch, long timeout_ms, uint64_t deadline, const kc_cancel_t *cancel,
                         int *notified);

int kc_select(kc_select_clause_t *cl, size_t n, int mode, long timeout_ms,
              const kc_cancel_t *cancel)
{
    kc_chan_t *chs[KC_SELECT_MAX];
    uint8_t order[KC_SELECT_MAX];

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
    int notified = -1; /* clause whose buffered channel woke us to retry */
    int r = select_rounds(cl, n, order, chs, nch, timeout_ms, deadline, cancel, &notified);
    /* Buffered channels wake one waiter per element (or free cell). If that
     * waiter was us and we ended up not taking it (another clause won, or we
     * gave up), the next waiter must get the wake-up, or it sleeps on a
     * non-empty (non-full) channel until some later operation. */
    if (notified >= 0 && r != notified)
        kc__pass_on(cl[notified].ch, cl[notified].op == KC_SELECT_RECV);
    return r;
}

/* The body of kc_select: rounds of try, register, wait; a round woken by a
 * buffered channel only retries. *notified is set to the clause of the last
 * such wake-up. */
static int select_rounds(kc_select_clause_t *cl, size_t n, const uint8_t *order, kc_chan_t **chs,
                         size_t nch, long timeout_ms, uint64_t deadline, const kc_cancel_t *cancel,
                         int *notified)
{
    kc_waiter_t w[KC_SELECT_MAX];
    unsigned landings = 0;
    int r, win;

retry:
    lock_all(chs, nch);
    win = try_clauses(cl, n, order, false);
    if (win >= 0 && cl[win].result == -ENOMEM) {
        /* An unlimited channel could not grow: the select fails as a whole,
         * nothing was sent or received, the caller keeps every element. */
        unlock_all(chs, nch);
        cl[win].result = 0;
        return -ENOMEM;
    }
    if (win >= 0 || timeout_ms == 0) {
        unlock_all(chs, nch);
        return win >= 0 ? finish(cl, win) : -EAGAIN;
    }

    kc_sel_t sel = {.winner = KC_SEL_OPEN, .done = KC_SEL_WAITING, .parker = kc__parker_self()};
    for (size_t i = 0; i < n; i++) {
        w[i] = (kc_waiter_t){.sel = &sel, .buf.ptr = cl[i].buf, .clause = (int)i};
        if (!cl[i].ch)
            continue;
        kc__wq_push(queue_of(&cl[i]), &w[i]);
        if (kc__is_notify_chan(cl[i].ch))
            kc__waiters_add(cl[i].ch, cl[i].op == KC_SELECT_SEND, +1);
    }
    /* Buffered channels: re-check after registering (see kc_chan.c). No
     * peer can claim our waiters meanwhile: we hold every lock involved. */
    win = try_clauses(cl, n, order, true);
    if (win >= 0) {
        unregister(cl, n, w);
        unlock_all(chs, nch);
        return finish(cl, win);
    }
    if (landing(cl, n)) {
        /* A peer's claimed operation will complete a clause but may have
         * missed our registration: retry instead of parking. */
        unregister(cl, n, w);
        unlock_all(chs, nch);
        kc__landing_pause(&landings);
        goto retry;
    }
    unlock_all(chs, nch);

    r = kc__sel_wait(&sel, deadline, cancel);

    /* Unlink the clauses that did not win (the winner was unlinked by the
     * peer that completed it). */
    lock_all(chs, nch);
    unregister(cl, n, w);
    unlock_all(chs, nch);

    if (r != 1)
        return r;
    win = atomic_load_explicit(&sel.winner, memory_order_acquire);
    if (kc__is_notify_chan(cl[win].ch)) {
        /* A buffered channel changed state: nothing was transferred, so
         * every clause is still open. Try again (a notified waiter always
         * retries once, even past its deadline; kc__park then returns
         * -ETIME at once for a thread, and after one switch, woken by its
         * due timer, for a coroutine). */
        *notified = win;
        goto retry;
    }
    cl[win].result = sel.result;
    return finish(cl, win);
}
