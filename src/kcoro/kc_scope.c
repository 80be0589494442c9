/* kcoro scopes: structured concurrency over threads and coroutines.
 * A scope owns its children: it cannot be destroyed before they end, the
 * first failing child cancels its siblings, and cancelling the scope (or
 * the token it was created under) cascades to nested scopes.
 *
 * A child spawned from a coroutine is a coroutine, from a thread a thread.
 * Every wait (for a child, for other waiters) goes through the parker, so a
 * coroutine waiting on a scope parks instead of blocking its worker. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "kc_internal.h"
#include "kc_sched.h"

struct kc_child {
    pthread_t thread;        /* runs child_main (thread children)         */
    kc_coro_t *coro;         /* runs child_main (coroutine children)      */
    kc_task_fn fn;           /* the task                                  */
    void *arg;               /* its argument                              */
    kc_scope_t *scope;       /* owner                                     */
    _Atomic int done;        /* thread children: the task has returned    */
    _Atomic(kc_parker_t *) joiner; /* thread children: parked joiner (1: ending) */
    struct kc_child *next;   /* scope's list of unjoined children         */
};

/* A parked scope_wait; linked in the scope while it waits. */
struct kc_scope_waiter {
    kc_parker_t *parker;             /* woken by wake_waiters     */
    struct kc_scope_waiter *next;    /* list link                 */
};

struct kc_scope {
    kc_cancel_t *tok;        /* children's token                        */
    pthread_mutex_t mu;      /* guards every field below (held briefly) */
    struct kc_scope_waiter *wl; /* parked waiters: woken when a child has been joined or a waiter leaves */
    struct kc_child *children; /* started, not yet taken by a joiner    */
    size_t unjoined;         /* started and not yet joined (includes those being joined) */
    unsigned waiters;        /* callers inside scope_wait (kc_scope_wait or destroy) */
    int first_err;           /* first non-zero child result             */
};

static void child_run(struct kc_child *c)
{
    kc_scope_t *s = c->scope;
    int r = c->fn(c->arg, s->tok);
    if (r != 0) {
        pthread_mutex_lock(&s->mu);
        if (!s->first_err)
            s->first_err = r;
        pthread_mutex_unlock(&s->mu);
        kc_cancel_trigger(s->tok);
    }
}

static void *child_thread(void *arg)
{
    struct kc_child *c = arg;
    child_run(c);
    /* Tell a parked joiner; it then joins the (ending) thread. */
    kc_parker_t *j = atomic_exchange(&c->joiner, (kc_parker_t *)1);
    atomic_store(&c->done, 1);
    if (j)
        kc__unpark(j);
    return NULL;
}

static void child_coro(void *arg) { child_run(arg); }

static void child_join(struct kc_child *c)
{
    if (c->coro) {
        kc_coro_join(c->coro);
        return;
    }
    /* Park until the task returned, so that pthread_join (which a coroutine
     * cannot park in) only waits for a thread that is already exiting. */
    kc_parker_t *self = kc__parker_self();
    kc_parker_t *none = NULL;
    if (atomic_compare_exchange_strong(&c->joiner, &none, self)) {
        while (!atomic_load(&c->done))
            kc__park(self, 0);
    } else {
        while (!atomic_load(&c->done))
            sched_yield(); /* ending right now */
    }
    pthread_join(c->thread, NULL);
}

int kc_scope_create(kc_scope_t **out, const kc_cancel_t *parent_cancel)
{
    if (!out)
        return -EINVAL;
    kc_scope_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int r = kc_cancel_create(&s->tok, parent_cancel);
    if (r < 0) {
        free(s);
        return r;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        kc_cancel_destroy(s->tok);
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

int kc_scope_spawn(kc_scope_t *s, kc_task_fn fn, void *arg)
{
    if (!s || !fn)
        return -EINVAL;
    if (kc_cancel_is_set(s->tok))
        return -ECANCELED;
    struct kc_child *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->scope = s;
    pthread_mutex_lock(&s->mu);
    int r;
    if (kc_self())
        r = kc_spawn(&c->coro, child_coro, c, NULL);
    else
        r = -pthread_create(&c->thread, NULL, child_thread, c);
    if (r != 0) {
        pthread_mutex_unlock(&s->mu);
        free(c);
        return r == -ENOMEM ? -ENOMEM : r;
    }
    c->next = s->children;
    s->children = c;
    s->unjoined++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void kc_scope_cancel(kc_scope_t *s)
{
    if (s)
        kc_cancel_trigger(s->tok);
}

kc_cancel_t *kc_scope_token(kc_scope_t *s)
{
    return s ? s->tok : NULL;
}

/* mu held. */
static void wake_waiters(kc_scope_t *s)
{
    for (struct kc_scope_waiter *w = s->wl; w; w = w->next)
        kc__unpark(w->parker);
}

/* mu held; returns with mu held after a wake-up (maybe spurious). */
static void park_waiter(kc_scope_t *s)
{
    struct kc_scope_waiter me = {.parker = kc__parker_self(), .next = s->wl};
    s->wl = &me;
    pthread_mutex_unlock(&s->mu);
    kc__park(me.parker, 0); /* an unpark since we linked in is never lost */
    pthread_mutex_lock(&s->mu);
    for (struct kc_scope_waiter **pp = &s->wl; *pp; pp = &(*pp)->next)
        if (*pp == &me) {
            *pp = me.next;
            break;
        }
}

/* Joins children until none is left, together with any other caller doing
 * the same: whoever takes a child off the list joins it, the others park
 * until `unjoined` reaches 0, so no waiter returns while a child another
 * waiter is joining still runs. With `last` (destroy), also waits until no
 * other caller is inside, so the scope can be freed on return. */
static int scope_wait(kc_scope_t *s, bool last)
{
    pthread_mutex_lock(&s->mu);
    s->waiters++;
    for (;;) {
        struct kc_child *list = s->children;
        if (list) {
            /* Children may spawn siblings while we join: loop until none. */
            s->children = NULL;
            pthread_mutex_unlock(&s->mu);
            size_t k = 0;
            while (list) {
                struct kc_child *next = list->next;
                child_join(list);
                free(list);
                list = next;
                k++;
            }
            pthread_mutex_lock(&s->mu);
            s->unjoined -= k;
            wake_waiters(s);
            continue;
        }
        if (s->unjoined == 0 && (!last || s->waiters == 1))
            break;
        park_waiter(s);
    }
    int r = s->first_err;
    s->waiters--;
    wake_waiters(s); /* a destroy may wait for us to leave */
    pthread_mutex_unlock(&s->mu);
    return r;
}

int kc_scope_wait(kc_scope_t *s)
{
    if (!s)
        return -EINVAL;
    return scope_wait(s, false);
}

void kc_scope_destroy(kc_scope_t *s)
{
    if (!s)
        return;
    kc_scope_cancel(s);
    scope_wait(s, true);
    kc_cancel_destroy(s->tok);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
