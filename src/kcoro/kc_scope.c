/* kcoro scopes: structured concurrency over threads.
 * A scope owns its children: it cannot be destroyed before they end, the
 * first failing child cancels its siblings, and cancelling the scope (or
 * the token it was created under) cascades to nested scopes. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "kc_internal.h"

struct kc_child {
    pthread_t thread;        /* runs child_main                */
    kc_task_fn fn;           /* the task                       */
    void *arg;               /* its argument                   */
    kc_scope_t *scope;       /* owner                          */
    struct kc_child *next;   /* scope's list of unjoined children */
};

struct kc_scope {
    kc_cancel_t *tok;        /* children's token                        */
    pthread_mutex_t mu;      /* guards every field below                */
    pthread_cond_t cv;       /* broadcast when a child has been joined or a waiter leaves */
    struct kc_child *children; /* started, not yet taken by a joiner    */
    size_t unjoined;         /* started and not yet joined (includes those being joined) */
    unsigned waiters;        /* threads inside scope_wait (kc_scope_wait or destroy) */
    int first_err;           /* first non-zero child result             */
};

static void *child_main(void *arg)
{
    struct kc_child *c = arg;
    kc_scope_t *s = c->scope;
    int r = c->fn(c->arg, s->tok);
    if (r != 0) {
        pthread_mutex_lock(&s->mu);
        if (!s->first_err)
            s->first_err = r;
        pthread_mutex_unlock(&s->mu);
        kc_cancel_trigger(s->tok);
    }
    return NULL;
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
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
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
    int r = pthread_create(&c->thread, NULL, child_main, c);
    if (r != 0) {
        pthread_mutex_unlock(&s->mu);
        free(c);
        return -r;
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

/* Joins children until none is left, together with any other thread doing
 * the same: whoever takes a child off the list joins it, the others wait on
 * cv until `unjoined` reaches 0, so no waiter returns while a child another
 * waiter is joining still runs. With `last` (destroy), also waits until no
 * other thread is inside, so the scope can be freed on return. */
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
                pthread_join(list->thread, NULL);
                free(list);
                list = next;
                k++;
            }
            pthread_mutex_lock(&s->mu);
            s->unjoined -= k;
            pthread_cond_broadcast(&s->cv);
            continue;
        }
        if (s->unjoined == 0 && (!last || s->waiters == 1))
            break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    int r = s->first_err;
    s->waiters--;
    pthread_cond_broadcast(&s->cv); /* a destroy may wait for us to leave */
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
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
