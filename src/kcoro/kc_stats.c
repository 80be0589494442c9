/* kcoro statistics: per-channel snapshots, rates and the channel registry
 * that monitors (chanmon) walk. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "kc_internal.h"

static pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static kc_chan_t *g_reg_head;

void kc__registry_add(kc_chan_t *ch)
{
    pthread_mutex_lock(&g_reg_lock);
    ch->reg_prev = NULL;
    ch->reg_next = g_reg_head;
    if (g_reg_head)
        g_reg_head->reg_prev = ch;
    g_reg_head = ch;
    pthread_mutex_unlock(&g_reg_lock);
}

void kc__registry_remove(kc_chan_t *ch)
{
    pthread_mutex_lock(&g_reg_lock);
    if (ch->reg_prev)
        ch->reg_prev->reg_next = ch->reg_next;
    else
        g_reg_head = ch->reg_next;
    if (ch->reg_next)
        ch->reg_next->reg_prev = ch->reg_prev;
    pthread_mutex_unlock(&g_reg_lock);
}

size_t kc_chan_foreach(void (*fn)(void *user, kc_chan_t *ch), void *user)
{
    size_t n = 0;
    if (!fn)
        return 0;
    pthread_mutex_lock(&g_reg_lock);
    for (kc_chan_t *c = g_reg_head; c; c = c->reg_next, n++)
        fn(user, c);
    pthread_mutex_unlock(&g_reg_lock);
    return n;
}

void kc_chan_snapshot(const kc_chan_t *cch, kc_chan_snapshot_t *o)
{
    kc_chan_t *ch = (kc_chan_t *)cch; /* locking is not a logical change */
    if (!ch || !o)
        return;
    memset(o, 0, sizeof *o);
    kc__lock(&ch->lock);
    o->t_ns = kc_now_ns();
    o->id = ch->id;
    if (ch->kind == KC_BUFFERED) {
        /* Lock-free ring: one consistent reading of positions and bytes. */
        struct kc_counts c;
        kc__buffered_counts(ch, &c);
        o->sends = c.sends;
        o->recvs = c.recvs;
        o->bytes_sent = c.bytes_sent;
        o->bytes_recv = c.bytes_recv;
        /* The positions may be read a little apart: clamp to the bound. */
        o->len = c.sends - c.recvs < ch->cap ? c.sends - c.recvs : ch->cap;
    } else {
        /* Locked kinds count under the lock we hold: exact. */
        o->sends = ch->sends;
        o->recvs = ch->recvs;
        o->bytes_sent = ch->is_desc ? atomic_load_explicit(&ch->bytes_sent, memory_order_relaxed)
                                    : ch->sends * ch->esz;
        o->bytes_recv = ch->is_desc ? atomic_load_explicit(&ch->bytes_recv, memory_order_relaxed)
                                    : ch->recvs * ch->esz;
        o->len = ch->count;
    }
    o->closed = ch->closed;
    memcpy(o->name, ch->name, sizeof o->name);
    kc__unlock(&ch->lock);
    o->fail_again = atomic_load_explicit(&ch->fail_again, memory_order_relaxed);
    o->fail_timeout = atomic_load_explicit(&ch->fail_timeout, memory_order_relaxed);
    o->fail_canceled = atomic_load_explicit(&ch->fail_canceled, memory_order_relaxed);
    o->fail_closed = atomic_load_explicit(&ch->fail_closed, memory_order_relaxed);
    o->dropped = atomic_load_explicit(&ch->dropped, memory_order_relaxed);
    o->cap = kc_chan_cap(ch);
    o->kind = ch->kind;
}

int kc_chan_compute_rate(const kc_chan_snapshot_t *prev, const kc_chan_snapshot_t *cur,
                         kc_chan_rate_t *out)
{
    if (!prev || !cur || !out || cur->t_ns <= prev->t_ns)
        return -EINVAL;
    double secs = (double)(cur->t_ns - prev->t_ns) / 1e9;
    out->secs = secs;
    out->sends_per_sec = (double)(cur->sends - prev->sends) / secs;
    out->recvs_per_sec = (double)(cur->recvs - prev->recvs) / secs;
    out->bytes_per_sec = (double)(cur->bytes_recv - prev->bytes_recv) / secs;
    out->failures = (cur->fail_again - prev->fail_again) + (cur->fail_timeout - prev->fail_timeout) +
                    (cur->fail_canceled - prev->fail_canceled) +
                    (cur->fail_closed - prev->fail_closed);
    return 0;
}

const char *kc_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case -EAGAIN: return "would block (try again)";
    case -ETIME: return "timed out";
    case -ECANCELED: return "cancelled";
    case -EPIPE: return "channel closed";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}
