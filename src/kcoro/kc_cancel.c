/* kcoro cancellation tokens with parent/child contexts.
 *
 * The tree shape (parent, children) changes rarely and is guarded by one
 * global lock; each token's list of blocked operations has its own lock so
 * a trigger wakes waiters without touching unrelated tokens. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "kc_internal.h"

struct kc_cancel {
    _Atomic bool set;             /* triggered (itself or via an ancestor)   */
    pthread_mutex_t mu;           /* guards hooks                            */
    kc_cancel_hook_t *hooks;      /* blocked operations to wake              */
    struct kc_cancel *parent;     /* guarded by g_tree                       */
    struct kc_cancel *children;   /* first child, guarded by g_tree          */
    struct kc_cancel *sib_next;   /* sibling links, guarded by g_tree        */
    struct kc_cancel *sib_prev;
};

static pthread_mutex_t g_tree = PTHREAD_MUTEX_INITIALIZER;

int kc_cancel_create(kc_cancel_t **out, const kc_cancel_t *cparent)
{
    if (!out)
        return -EINVAL;
    kc_cancel_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return -ENOMEM;
    }
    /* The tree links are internal state; a const token can gain children. */
    kc_cancel_t *parent = (kc_cancel_t *)cparent;
    if (parent) {
        pthread_mutex_lock(&g_tree);
        t->parent = parent;
        t->sib_next = parent->children;
        if (parent->children)
            parent->children->sib_prev = t;
        parent->children = t;
        /* Checked under g_tree, which trigger holds while cascading, so a
         * child is either seen by the cascade or created already set. */
        if (atomic_load(&parent->set))
            atomic_store(&t->set, true);
        pthread_mutex_unlock(&g_tree);
    }
    *out = t;
    return 0;
}

/* Sets one token and wakes its blocked operations. Returns false if it was
 * already set: then its whole subtree is set too (it was set by the same
 * cascade, or born set), so the walk skips it. */
static bool set_one(kc_cancel_t *t)
{
    if (atomic_exchange(&t->set, true))
        return false;
    pthread_mutex_lock(&t->mu);
    for (kc_cancel_hook_t *h = t->hooks; h; h = h->next)
        kc__unpark(h->parker);
    pthread_mutex_unlock(&t->mu);
    return true;
}

/* First token in the sibling list starting at t that set_one newly set. */
static kc_cancel_t *next_newly_set(kc_cancel_t *t)
{
    while (t && !set_one(t))
        t = t->sib_next;
    return t;
}

/* Sets root and its subtree (g_tree held). A pre-order walk over the tree's
 * own links (first child, next sibling, parent) in constant stack: a chain
 * of a million tokens must not overflow it. */
static void trigger_locked(kc_cancel_t *root)
{
    if (!set_one(root))
        return;
    kc_cancel_t *t = root;
    for (;;) {
        kc_cancel_t *down = next_newly_set(t->children);
        if (down) {
            t = down;
            continue;
        }
        /* t's subtree is done: go to the next sibling, else climb. */
        for (;;) {
            if (t == root)
                return;
            kc_cancel_t *side = next_newly_set(t->sib_next);
            if (side) {
                t = side;
                break;
            }
            t = t->parent;
        }
    }
}

void kc_cancel_trigger(kc_cancel_t *tok)
{
    if (!tok)
        return;
    pthread_mutex_lock(&g_tree);
    trigger_locked(tok);
    pthread_mutex_unlock(&g_tree);
}

bool kc_cancel_is_set(const kc_cancel_t *tok)
{
    return tok && atomic_load_explicit(&tok->set, memory_order_acquire);
}

void kc_cancel_destroy(kc_cancel_t *tok)
{
    if (!tok)
        return;
    pthread_mutex_lock(&g_tree);
    kc_cancel_t *p = tok->parent;
    if (p) {
        if (tok->sib_prev)
            tok->sib_prev->sib_next = tok->sib_next;
        else
            p->children = tok->sib_next;
        if (tok->sib_next)
            tok->sib_next->sib_prev = tok->sib_prev;
    }
    for (kc_cancel_t *c = tok->children, *next; c; c = next) {
        next = c->sib_next;
        c->parent = NULL;
        c->sib_next = c->sib_prev = NULL;
    }
    pthread_mutex_unlock(&g_tree);
    pthread_mutex_destroy(&tok->mu);
    free(tok);
}

int kc__cancel_hook(const kc_cancel_t *ctok, kc_cancel_hook_t *h)
{
    kc_cancel_t *tok = (kc_cancel_t *)ctok; /* hooks are internal, mutable state */
    pthread_mutex_lock(&tok->mu);
    /* Checked under mu, which trigger takes after setting the flag: either
     * we see the flag or trigger sees our hook. */
    if (atomic_load(&tok->set)) {
        pthread_mutex_unlock(&tok->mu);
        return -ECANCELED;
    }
    h->prev = NULL;
    h->next = tok->hooks;
    if (tok->hooks)
        tok->hooks->prev = h;
    tok->hooks = h;
    pthread_mutex_unlock(&tok->mu);
    return 0;
}

void kc__cancel_unhook(const kc_cancel_t *ctok, kc_cancel_hook_t *h)
{
    kc_cancel_t *tok = (kc_cancel_t *)ctok;
    pthread_mutex_lock(&tok->mu);
    if (h->prev)
        h->prev->next = h->next;
    else
        tok->hooks = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&tok->mu);
}
