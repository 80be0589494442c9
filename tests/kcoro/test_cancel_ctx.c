/* test_cancel_ctx: hierarchical cancellation contexts. */
#include "kt.h"

Test(cancel_ctx, fresh_tokens_are_clear_and_trigger_is_idempotent)
{
    kc_cancel_t *t = kt_token(NULL);
    cr_assert_not(kc_cancel_is_set(t));
    kc_cancel_trigger(t);
    cr_assert(kc_cancel_is_set(t));
    kc_cancel_trigger(t);
    cr_assert(kc_cancel_is_set(t));
    kc_cancel_destroy(t);
    cr_assert_not(kc_cancel_is_set(NULL));
}

Test(cancel_ctx, parent_trigger_sets_child_and_grandchild)
{
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *child = kt_token(root);
    kc_cancel_t *grand = kt_token(child);
    kc_cancel_t *other = kt_token(NULL);
    cr_assert_not(kc_cancel_is_set(child));
    cr_assert_not(kc_cancel_is_set(grand));
    kc_cancel_trigger(root);
    cr_assert(kc_cancel_is_set(root));
    cr_assert(kc_cancel_is_set(child));
    cr_assert(kc_cancel_is_set(grand));
    cr_assert_not(kc_cancel_is_set(other), "an unrelated token was set");
    kc_cancel_destroy(grand);
    kc_cancel_destroy(child);
    kc_cancel_destroy(root);
    kc_cancel_destroy(other);
}

Test(cancel_ctx, parent_trigger_wakes_recv_blocked_on_descendants)
{
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *child = kt_token(root);
    kc_cancel_t *grand = kt_token(child);
    kc_chan_t *a = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_t *b = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    pthread_t ta, tb;
    struct kt_op oa, ob;
    kt_op_start(&ta, &oa, a, KT_RECV, 0, -1, child);
    kt_op_start(&tb, &ob, b, KT_RECV, 0, -1, grand);
    kt_wait_parked(&oa.park);
    kt_wait_parked(&ob.park);
    cr_assert_not(atomic_load(&oa.park.done));
    cr_assert_not(atomic_load(&ob.park.done));
    kc_cancel_trigger(root);
    kt_join(ta, KT_PROMPT_MS);
    kt_join(tb, KT_PROMPT_MS);
    cr_assert_eq(oa.rc, -ECANCELED, "recv on child: %d", oa.rc);
    cr_assert_eq(ob.rc, -ECANCELED, "recv on grandchild: %d", ob.rc);
    kc_chan_destroy(a);
    kc_chan_destroy(b);
    kc_cancel_destroy(grand);
    kc_cancel_destroy(child);
    kc_cancel_destroy(root);
}

Test(cancel_ctx, child_trigger_does_not_reach_parent_or_siblings)
{
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *c1 = kt_token(root);
    kc_cancel_t *c2 = kt_token(root);
    kc_cancel_t *g1 = kt_token(c1);
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    /* a receiver on the parent must stay blocked */
    pthread_t t;
    struct kt_op o;
    kt_op_start(&t, &o, ch, KT_RECV, 0, 10000, root);
    kt_wait_parked(&o.park);
    kc_cancel_trigger(c1);
    cr_assert(kc_cancel_is_set(c1));
    cr_assert(kc_cancel_is_set(g1));
    cr_assert_not(kc_cancel_is_set(root));
    cr_assert_not(kc_cancel_is_set(c2));
    kt_sleep_ms(30);
    cr_assert_not(atomic_load(&o.park.done), "receiver on the parent woke with %d", o.rc);
    int v = 8;
    cr_assert_eq(kc_chan_send(ch, &v, 0), 0);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(o.rc, 0);
    cr_assert_eq(o.value, 8);
    kc_chan_destroy(ch);
    kc_cancel_destroy(g1);
    kc_cancel_destroy(c2);
    kc_cancel_destroy(c1);
    kc_cancel_destroy(root);
}

Test(cancel_ctx, child_of_triggered_parent_starts_triggered)
{
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *mid = kt_token(root);
    kc_cancel_trigger(root);
    kc_cancel_t *late = kt_token(root);
    kc_cancel_t *late_grand = kt_token(mid);
    cr_assert(kc_cancel_is_set(late));
    cr_assert(kc_cancel_is_set(late_grand));
    kc_chan_t *ch = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    int v;
    cr_assert_eq(kc_chan_recv_c(ch, &v, -1, late), -ECANCELED);
    kc_chan_destroy(ch);
    kc_cancel_destroy(late_grand);
    kc_cancel_destroy(late);
    kc_cancel_destroy(mid);
    kc_cancel_destroy(root);
}

Test(cancel_ctx, destroying_parent_leaves_children_usable)
{
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *child = kt_token(root);
    kc_cancel_t *grand = kt_token(child);
    kc_cancel_destroy(root);
    cr_assert_not(kc_cancel_is_set(child), "destroying the parent is not a trigger");
    cr_assert_not(kc_cancel_is_set(grand));
    /* the orphan still works as a root: new children, blocking, trigger */
    kc_cancel_t *grand2 = kt_token(child);
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(int), 1);
    int v;
    cr_assert_eq(kc_chan_recv_c(ch, &v, 20, grand), -ETIME);
    pthread_t t;
    struct kt_op o;
    kt_op_start(&t, &o, ch, KT_RECV, 0, -1, grand2);
    kt_wait_parked(&o.park);
    kc_cancel_trigger(child);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(o.rc, -ECANCELED);
    cr_assert(kc_cancel_is_set(grand));
    cr_assert(kc_cancel_is_set(grand2));
    kc_chan_destroy(ch);
    kc_cancel_destroy(grand2);
    kc_cancel_destroy(grand);
    kc_cancel_destroy(child);
}

Test(cancel_ctx, destroying_triggered_parent_keeps_children_set)
{
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *child = kt_token(root);
    kc_cancel_trigger(root);
    kc_cancel_destroy(root);
    cr_assert(kc_cancel_is_set(child));
    kc_cancel_destroy(child);
}

Test(cancel_ctx, destroyed_child_is_not_touched_by_parent_trigger)
{
    /* Under ASan a parent that kept a dangling child pointer is caught here. */
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t *keep = kt_token(root);
    for (int i = 0; i < 100; i++) {
        kc_cancel_t *c = kt_token(root);
        kc_cancel_t *g = kt_token(c);
        kc_cancel_destroy(i % 2 ? g : c);
        kc_cancel_destroy(i % 2 ? c : g);
    }
    kc_cancel_trigger(root);
    cr_assert(kc_cancel_is_set(keep));
    kc_cancel_destroy(keep);
    kc_cancel_destroy(root);
}

Test(cancel_ctx, many_children_all_set)
{
    enum { N = 1000 };
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t **kids = calloc(N, sizeof *kids);
    cr_assert_not_null(kids);
    for (int i = 0; i < N; i++)
        kids[i] = kt_token(i < 10 ? root : kids[i / 10]); /* a wide, deep tree */
    kc_cancel_trigger(root);
    for (int i = 0; i < N; i++)
        cr_assert(kc_cancel_is_set(kids[i]), "token %d not set", i);
    for (int i = N - 1; i >= 0; i--)
        kc_cancel_destroy(kids[i]);
    kc_cancel_destroy(root);
    free(kids);
}

struct creator {
    kc_cancel_t *parent;
    int n;
    kc_cancel_t **made;
    int failures;
};

static void *create_thread(void *arg)
{
    struct creator *c = arg;
    for (int i = 0; i < c->n; i++)
        if (kc_cancel_create(&c->made[i], c->parent) != 0) {
            c->made[i] = NULL;
            c->failures++;
        }
    return NULL;
}

Test(cancel_ctx, trigger_racing_with_child_creation_sets_every_child)
{
    for (int round = 0; round < 20; round++) {
        kc_cancel_t *root = kt_token(NULL);
        struct creator c = { .parent = root, .n = 500 };
        c.made = calloc((size_t)c.n, sizeof *c.made);
        cr_assert_not_null(c.made);
        pthread_t t;
        kt_start(&t, create_thread, &c);
        kt_sleep_ms(round % 3);
        kc_cancel_trigger(root);
        kt_join(t, KT_PROMPT_MS);
        cr_assert_eq(c.failures, 0);
        for (int i = 0; i < c.n; i++)
            cr_assert(kc_cancel_is_set(c.made[i]), "round %d: child %d missed the trigger",
                      round, i);
        for (int i = 0; i < c.n; i++)
            kc_cancel_destroy(c.made[i]);
        kc_cancel_destroy(root);
        free(c.made);
    }
}

struct churn {
    kc_cancel_t *parent;
    int n;
    int set_seen;
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->n; i++) {
        kc_cancel_t *k = NULL;
        if (kc_cancel_create(&k, c->parent) != 0)
            continue;
        c->set_seen += kc_cancel_is_set(k);
        kc_cancel_destroy(k);
    }
    return NULL;
}

Test(cancel_ctx, children_destroyed_while_parent_triggers)
{
    kc_cancel_t *root = kt_token(NULL);
    struct churn cs[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        cs[i] = (struct churn){ .parent = root, .n = 20000 / KT_SCALE };
        kt_start(&t[i], churn_thread, &cs[i]);
    }
    kt_sleep_ms(5);
    kc_cancel_trigger(root);
    for (int i = 0; i < 3; i++)
        kt_join(t[i], 30000);
    cr_assert(kc_cancel_is_set(root));
    kc_cancel_destroy(root);
}

/* ---- issue 6 item 19: trigger is iterative ------------------------------ */

/* Triggers on a thread with a small stack: a trigger that recursed once per
 * level would overflow it long before the bottom of the chain. */
#define DEEP_STACK (256u * 1024u)

static void *trigger_thread(void *arg)
{
    kc_cancel_trigger(arg);
    return NULL;
}

static void trigger_on_small_stack(kc_cancel_t *tok)
{
    pthread_attr_t at;
    pthread_t t;
    cr_assert_eq(pthread_attr_init(&at), 0);
    cr_assert_eq(pthread_attr_setstacksize(&at, DEEP_STACK), 0);
    int rc = pthread_create(&t, &at, trigger_thread, tok);
    pthread_attr_destroy(&at);
    cr_assert_eq(rc, 0, "pthread_create: %s", strerror(rc));
    kt_join(t, 60000);
}

/* The plain build walks a chain of a million tokens. Sanitized builds use a
 * tenth (TSan needs ~1 GiB and most of a minute for the full chain on a busy
 * machine): 100,000 levels still need far more than the 256 KiB stack if
 * each level took even one stack frame. */
Test(cancel_ctx, million_deep_chain_triggers_without_recursion, .timeout = 120)
{
    enum { DEPTH = 1000000 / KT_SCALE };
    kc_cancel_t **chain = malloc(DEPTH * sizeof *chain);
    cr_assert_not_null(chain);
    chain[0] = kt_token(NULL);
    for (int i = 1; i < DEPTH; i++)
        cr_assert_eq(kc_cancel_create(&chain[i], chain[i - 1]), 0, "token %d", i);
    /* A trigger in the middle sets exactly the lower half. */
    trigger_on_small_stack(chain[DEPTH / 2]);
    cr_assert(!kc_cancel_is_set(chain[DEPTH / 2 - 1]), "a trigger reached an ancestor");
    cr_assert(kc_cancel_is_set(chain[DEPTH - 1]));
    trigger_on_small_stack(chain[0]);
    for (int i = 0; i < DEPTH; i++)
        if (!kc_cancel_is_set(chain[i]))
            cr_assert_fail("token %d of the chain not set", i);
    for (int i = 0; i < DEPTH; i++)
        kc_cancel_destroy(chain[i]);
    free(chain);
}

/* The walk must visit every branch of an irregular tree, skip subtrees that
 * were already triggered, and come back up to siblings at every level. */
Test(cancel_ctx, iterative_trigger_covers_irregular_tree)
{
    enum { N = 4000 };
    kc_cancel_t *root = kt_token(NULL);
    kc_cancel_t **t = calloc(N, sizeof *t);
    cr_assert_not_null(t);
    for (int i = 0; i < N; i++) {
        /* parents chosen so that depths and fan-outs vary: chains, stars */
        kc_cancel_t *parent = i == 0 ? root : t[(i % 7 == 0) ? i - 1 : (i * 37 + 11) % i];
        t[i] = kt_token(parent);
    }
    kc_cancel_trigger(t[500]);  /* a triggered subtree somewhere inside */
    kc_cancel_trigger(t[N - 1]); /* and a triggered leaf */
    kc_cancel_t *outside = kt_token(NULL);
    kc_cancel_trigger(root);
    for (int i = 0; i < N; i++)
        cr_assert(kc_cancel_is_set(t[i]), "token %d not set", i);
    cr_assert(!kc_cancel_is_set(outside));
    for (int i = N - 1; i >= 0; i--)
        kc_cancel_destroy(t[i]);
    kc_cancel_destroy(outside);
    kc_cancel_destroy(root);
    free(t);
}
