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
    pthread_mutex_t mu;      /* guards children and first_err           */
    struct kc_child *children; /* started, not yet joined               */
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
    pthread_mutex_init(&s->mu, NULL);
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

int kc_scope_wait(kc_scope_t *s)
{
    if (!s)
        return -EINVAL;
    for (;;) {
        /* Children may spawn siblings while we join: loop until none. */
        pthread_mutex_lock(&s->mu);
        struct kc_child *list = s->children;
        s->children = NULL;
        pthread_mutex_unlock(&s->mu);
        if (!list)
            break;
        while (list) {
            struct kc_child *next = list->next;
            pthread_join(list->thread, NULL);
            free(list);
            list = next;
        }
    }
    pthread_mutex_lock(&s->mu);
    int r = s->first_err;
    pthread_mutex_unlock(&s->mu);
    return r;
}

void kc_scope_destroy(kc_scope_t *s)
{
    if (!s)
        return;
    kc_scope_cancel(s);
    kc_scope_wait(s);
    kc_cancel_destroy(s->tok);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
